import { describe, expect, it } from "vitest";
import type { RunEvent } from "./bindings";
import { stored } from "./fixtures";
import { guardRuns, quarantinedOutput } from "./guard.fixtures";
import { toolRuns } from "./toolcalls.fixtures";
import {
  attemptsLabel,
  callResultText,
  callStatusLabel,
  latencyLabel,
  prettyJson,
  toolCalls,
  toolErrorLabel,
  toolErrorMessage,
} from "./toolcalls";

const note = { path: "notes/todo.txt", content: "buy milk" };

describe("toolCalls", () => {
  it("gathers an approved write: policy, approval, one attempt with its latency and result", () => {
    const [call, ...rest] = toolCalls(stored(toolRuns.approvedWrite));
    expect(rest).toEqual([]);
    expect(call).toMatchObject({
      callId: "c1",
      tool: "files_write",
      arguments: note,
      effect: "write",
      idempotent: true,
      status: "ok",
      totalMs: 12,
      answer: { approved: true, note: null },
    });
    expect(call!.policy.map((p) => p.decision)).toEqual(["needs_approval"]);
    expect(call!.approval?.reason).toBe("files_write can change things (Write); the user decides");
    expect(call!.attempts).toEqual([
      { attempt: 1, tool: "files_write", seq: 6, durationMs: 12, result: { status: "ok", value: { path: "notes/todo.txt", bytes: 8, created: true } } },
    ]);
    expect(callResultText(call!)).toBe(prettyJson({ path: "notes/todo.txt", bytes: 8, created: true }));
  });

  it("keeps the calls apart by call id, in the order they were asked for, whatever the events' order", () => {
    const events = stored(toolRuns.retriedThenAlternative);
    const calls = toolCalls([...events].reverse());
    expect(calls.map((c) => [c.callId, c.tool, c.status])).toEqual([
      ["c1", "http_fetch", "ok"],
      ["c2", "clock", "ok"],
    ]);
  });

  it("counts every attempt, the retries with their delays and the alternative chosen", () => {
    const [fetch] = toolCalls(stored(toolRuns.retriedThenAlternative));
    expect(fetch!.attempts.map((a) => [a.attempt, a.tool, a.durationMs, a.result?.status])).toEqual([
      [1, "http_fetch", 5_000, "err"],
      [2, "http_fetch", 40, "err"],
      [3, "mirror_fetch", 30, "ok"],
    ]);
    expect(fetch!.retries.map((r) => [r.nextAttempt, r.delayMs])).toEqual([[2, 250]]);
    expect(fetch!.alternatives.map((a) => [a.from, a.to])).toEqual([["http_fetch", "mirror_fetch"]]);
    expect(fetch!.totalMs).toBe(5_070);
    expect(attemptsLabel(fetch!.attempts.length)).toBe("3 attempts");
    expect(latencyLabel(fetch!.totalMs)).toBe("5.07 s");
  });

  it("marks a denied call, which never ran", () => {
    const [call] = toolCalls(stored(toolRuns.deniedWrite));
    expect(call!.status).toBe("denied");
    expect(call!.answer).toMatchObject({ approved: false, note: "not now" });
    expect(call!.attempts).toEqual([]);
    expect(call!.totalMs).toBeNull();
    expect(callResultText(call!)).toBe("not run: denied by you");
    expect(latencyLabel(call!.totalMs)).toBe("–");
  });

  it("marks a call that waits for approval, and one whose outcome is unknown after a crash", () => {
    expect(toolCalls(stored(toolRuns.deniedWrite.slice(0, 3)))[0]!.status).toBe("waiting");
    const [crashed] = toolCalls(stored(toolRuns.crashedWrite));
    expect(crashed!.outcomeUnknown).toBe(true);
    expect(crashed!.attempts.map((a) => a.result)).toEqual([null]);
    expect(crashed!.status).toBe("waiting"); // Keel asks again whether to run it.
    expect(crashed!.answer).toBeNull();
  });

  it("gives a failed call the error the model was told", () => {
    const [call] = toolCalls(
      stored([
        { kind: "ActionParsed", step: 1, action: { type: "tool_call", call_id: "c1", tool: "nope", arguments: {} } },
        { kind: "ErrorReported", call_id: "c1", tool: "nope", error: { class: "unknown_tool", name: "nope" } },
      ]),
    );
    expect(call!.status).toBe("error");
    expect(callResultText(call!)).toBe("unknown tool: there is no tool named nope");
  });

  it("marks a repeated call that was stopped", () => {
    const [call] = toolCalls(stored([{ kind: "LoopDetected", call_id: "c4", tool: "clock", arguments: { tz: "UTC" }, times: 2 }]));
    expect([call!.status, call!.loopTimes, call!.arguments]).toEqual(["loop", 2, { tz: "UTC" }]);
  });

  it("finds nothing in a chat run", () => {
    expect(toolCalls(stored([{ kind: "RunCancelled", reason: "stopped by the user" }]))).toEqual([]);
  });
});

describe("labels", () => {
  it("names attempts in the singular and plural", () => {
    expect([attemptsLabel(0), attemptsLabel(1), attemptsLabel(2)]).toEqual(["0 attempts", "1 attempt", "2 attempts"]);
  });

  it("says what each error class means", () => {
    expect(toolErrorLabel({ class: "timeout", tool: "t", after_ms: 30_000 })).toBe("timeout: no result after 30.00 s");
    expect(toolErrorLabel({ class: "invalid_arguments", tool: "t", errors: ["path is required", "x is not allowed"] })).toBe(
      "invalid arguments: path is required; x is not allowed",
    );
    expect(toolErrorMessage({ class: "transient", tool: "t", message: "503", retry_after_ms: 2_000 })).toBe(
      "503 (retry after 2.00 s)",
    );
    expect(toolErrorLabel({ class: "schema_drift", tool: "t", errors: ["bytes is missing"] })).toBe("schema drift: bytes is missing");
    expect(toolErrorLabel({ class: "cancelled", tool: "t" })).toBe("cancelled: cancelled");
  });

  it("has a label for every status", () => {
    expect(callStatusLabel("waiting")).toBe("waiting for your approval");
    expect(callStatusLabel("unknown")).toBe("outcome unknown");
  });

  it("prints arguments exactly, as indented JSON", () => {
    expect(prettyJson(note)).toBe('{\n  "path": "notes/todo.txt",\n  "content": "buy milk"\n}');
    expect(prettyJson(undefined)).toBe("");
  });
});

describe("toolCalls with the guard", () => {
  it("records whether a call's output is untrusted, and when the guard withheld it", () => {
    const [read, write] = toolCalls(stored(guardRuns.taintedWrite));
    expect(read).toMatchObject({ callId: "c1", tool: "files_read", status: "ok", untrustedOutput: true });
    expect(read!.quarantine).toEqual({ explanation: quarantinedOutput.explanation, score: quarantinedOutput.score, seq: 5 });
    expect(write).toMatchObject({ callId: "c2", tool: "files_write", status: "waiting", untrustedOutput: null, quarantine: null });
    expect(write!.approval?.reason).toContain("untrusted content from the output of files_read");
  });

  it("leaves the calls of a run without checks unmarked", () => {
    const calls = toolCalls(stored(toolRuns.retriedThenAlternative));
    expect(calls.map((c) => [c.tool, c.untrustedOutput, c.quarantine])).toEqual([
      ["http_fetch", true, null],
      ["clock", false, null],
    ]);
  });
});
