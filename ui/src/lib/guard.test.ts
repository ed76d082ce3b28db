import { describe, expect, it } from "vitest";
import type { RunEvent } from "./bindings";
import {
  addNotice,
  checkSummary,
  guardActionLabel,
  guardScore,
  humaniseRule,
  messageBlocked,
  noNotices,
  originLabel,
  reasonsLabel,
  runNotices,
  taintParts,
  withheldSentence,
  withheldWhat,
} from "./guard";
import { blockedCheck, guardRuns, quarantinedMemory, quarantinedOutput, taintReason, warnedCheck } from "./guard.fixtures";
import { toolRuns } from "./toolcalls.fixtures";

describe("runNotices", () => {
  it("takes a blocked message's check, and nothing withheld", () => {
    const notices = runNotices(guardRuns.blocked);
    expect(notices.message).toEqual(blockedCheck);
    expect(notices.withheld).toEqual([]);
    expect(messageBlocked(notices)).toBe(true);
  });

  it("takes a flagged message's check, which was still sent", () => {
    const notices = runNotices(guardRuns.warned);
    expect(notices.message?.action).toBe("warn");
    expect(messageBlocked(notices)).toBe(false);
  });

  it("names a withheld tool output by its tool and call", () => {
    const notices = runNotices(guardRuns.taintedWrite);
    expect(notices.message).toBeNull();
    expect(notices.withheld).toEqual([{ origin: "tool:c1", what: "the output of files_read (call c1)", check: quarantinedOutput }]);
    expect(withheldSentence(notices.withheld[0]!)).toBe(
      "Keel withheld the output of files_read (call c1) from the model: it looked like a prompt injection.",
    );
  });

  it("names a withheld memory by its item", () => {
    const notices = runNotices(guardRuns.quarantinedMemory);
    expect(notices.withheld.map((w) => [w.origin, w.what])).toEqual([["memory:12", "memory item 12"]]);
  });

  it("finds nothing in a run the guard let through", () => {
    expect(runNotices(toolRuns.approvedWrite)).toMatchObject({ message: null, withheld: [] });
    expect(runNotices([])).toEqual(noNotices());
  });

  it("ignores allowed checks, and a second check of the same text", () => {
    const allowed: RunEvent = { ...warnedCheck, verdict: "allow", action: "allow", reasons: [], score: 0.1 };
    expect(runNotices([allowed]).message).toBeNull();
    expect(runNotices([quarantinedOutput, quarantinedOutput]).withheld).toHaveLength(1);
  });

  it("leaves the notices as they are for an event that adds nothing", () => {
    const notices = noNotices();
    expect(addNotice(notices, toolRuns.deniedWrite[0]!)).toBe(notices);
    expect(addNotice(notices, quarantinedMemory)).not.toBe(notices);
  });
});

describe("the guard's words", () => {
  it("humanises rule ids", () => {
    expect(humaniseRule("ignore_instructions")).toBe("ignore instructions");
    expect(humaniseRule("similar_to_known_attacks")).toBe("similar to known attacks");
    expect(humaniseRule("role_marker")).toBe("role marker");
    expect(reasonsLabel(blockedCheck.reasons)).toBe("ignore instructions, role marker, new persona, reveal prompt");
  });

  it("names the checked text", () => {
    expect(originLabel("message")).toBe("your message");
    expect(originLabel("tool:c1")).toBe("output of call c1");
    expect(originLabel("memory:12")).toBe("memory item 12");
    expect(originLabel("something-new")).toBe("something-new");
    expect(withheldWhat("tool:c7")).toBe("the output of call c7");
  });

  it("labels actions and scores", () => {
    expect(["warn", "block", "quarantine"].map((a) => guardActionLabel(a as "warn"))).toEqual(["Warned", "Blocked", "Quarantined"]);
    expect(guardScore(0.9916)).toBe("0.99");
    expect(guardScore(0.5)).toBe("0.50");
    expect(guardScore(Number.NaN)).toBe("–");
  });

  it("sums a check up in one line", () => {
    expect(checkSummary(blockedCheck)).toBe(
      "blocked your message (score 0.99: ignore instructions, role marker, new persona, reveal prompt)",
    );
    expect(checkSummary(quarantinedOutput)).toBe(
      "quarantined output of call c1 from a document (score 0.96: ignore instructions, addresses the ai)",
    );
  });
});

describe("taintParts", () => {
  it("finds the part of an approval reason that names the untrusted content", () => {
    expect(taintParts(taintReason)).toEqual({
      before: "files_write can change things (Write) and ",
      taint: "untrusted content from the output of files_read is in the context",
      after: "",
    });
    const two = taintParts(
      "files_write can change things (Write) and untrusted content from the output of files_read, the document /x/garden-notes.md is in the context",
    );
    expect(two?.taint).toBe("untrusted content from the output of files_read, the document /x/garden-notes.md is in the context");
  });

  it("has nothing to stress in an ordinary reason", () => {
    expect(taintParts("files_write can change things (Write); the user decides")).toBeNull();
  });
});
