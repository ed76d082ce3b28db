import { describe, expect, it } from "vitest";
import { answerActivity, runActivity } from "./activity";
import { toolRuns } from "./toolcalls.fixtures";

describe("runActivity", () => {
  it("follows a tool run step by step, leaving the line as it is for events that say nothing new", () => {
    expect(toolRuns.retriedThenAlternative.map(runActivity)).toEqual([
      "Calling http_fetch…",
      null,
      "Running http_fetch…",
      "http_fetch failed (timeout)",
      "Retrying http_fetch in 250 ms…",
      "Running http_fetch (attempt 2)…",
      "http_fetch failed (failed)",
      "Trying mirror_fetch instead of http_fetch…",
      "Running mirror_fetch (attempt 3)…",
      "mirror_fetch done",
      "Calling clock…",
      "Running clock…",
      "clock done",
    ]);
  });

  it("says nothing for a chat run, whose tokens are the answer itself", () => {
    const started = JSON.parse('{"kind":"RunStarted","mode":"chat"}');
    expect(runActivity(started)).toBeNull();
    expect(runActivity({ ...started, mode: "plan" })).toBe("Working on it…");
  });

  it("starts a continued run's reply from the user's answer", () => {
    expect(answerActivity({ type: "approve", call_id: "c1" })).toBe("Approved; continuing…");
    expect(answerActivity({ type: "deny", call_id: "c1", note: null })).toBe("Denied; continuing without it…");
  });
});
