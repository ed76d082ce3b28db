import { describe, expect, it } from "vitest";
import type { RunDetail, StoredEvent } from "./bindings";
import { hintParts, toAppError } from "./errors";
import { formatDuration } from "./format";
import { runDuration, stepRows } from "./steps";

const settings = { max_tokens: 64, temperature: 0.7, top_p: null, top_k: null, repeat_penalty: 1.1, seed: 1 };

// A plain two-step run as the core records it, deliberately out of order to check the sort by seq.
const events: StoredEvent[] = [
  {
    run_id: 7,
    seq: 2,
    at_ms: 1_000_050,
    event: {
      kind: "ModelReplied",
      step: 1,
      text: "Paris.",
      prompt_tokens: 30,
      completion_tokens: 4,
      duration_ms: 900,
      ttft_ms: 120,
      stop: "eos",
    },
  },
  {
    run_id: 7,
    seq: 0,
    at_ms: 1_000_000,
    event: {
      kind: "RunStarted",
      conversation_id: 3,
      input: "capital of France?",
      backend: "local",
      model: "smollm2",
      max_steps: 4,
      settings,
    },
  },
  {
    run_id: 7,
    seq: 1,
    at_ms: 1_000_010,
    event: { kind: "ModelCalled", step: 1, backend: "local", prompt_tokens: 30, messages: 2, dropped_messages: 0 },
  },
  {
    run_id: 7,
    seq: 3,
    at_ms: 1_000_060,
    event: {
      kind: "RunFinished",
      outcome: { status: "answered" },
      answer: "Paris.",
      duration_ms: 1_000,
      prompt_tokens: 30,
      completion_tokens: 4,
    },
  },
];

describe("stepRows", () => {
  const rows = stepRows(events);

  it("orders steps by sequence number", () => {
    expect(rows.map((r) => r.kind)).toEqual(["RunStarted", "ModelCalled", "ModelReplied", "RunFinished"]);
  });

  it("uses the event's own duration, else the gap to the next event", () => {
    expect(rows.map((r) => [r.durationMs, r.durationFrom])).toEqual([
      [10, "gap"],
      [40, "gap"],
      [900, "event"],
      [1_000, "event"],
    ]);
  });

  it("shows tokens only where the event has them", () => {
    expect(rows.map((r) => [r.promptTokens, r.completionTokens])).toEqual([
      [null, null],
      [30, null],
      [30, 4],
      [30, 4],
    ]);
  });

  it("keeps the full payload as pretty JSON", () => {
    expect(JSON.parse(rows[2]!.payload)).toEqual(events[0]);
    expect(rows[2]!.payload).toContain('\n  "seq": 2');
  });

  it("gives the last event without a duration none", () => {
    const [last] = stepRows([events[1]!]);
    expect(last!.durationMs).toBeNull();
    expect(last!.durationFrom).toBeNull();
  });
});

describe("runDuration", () => {
  const run = {
    id: 7,
    conversation_id: 3,
    status: "answered" as const,
    input: "capital of France?",
    started_ms: 1_000_000,
    finished_ms: 1_002_000,
    prompt_tokens: 30,
    completion_tokens: 4,
  };

  it("prefers RunFinished's duration", () => {
    expect(runDuration({ run, events } satisfies RunDetail)).toBe(1_000);
  });

  it("falls back to the run's stamps, and to null while it runs", () => {
    expect(runDuration({ run, events: [] })).toBe(2_000);
    expect(runDuration({ run: { ...run, finished_ms: null }, events: [] })).toBeNull();
  });
});

describe("hintParts", () => {
  it("marks backticked commands as code", () => {
    expect(hintParts("run `keel models fetch` first")).toEqual([
      { text: "run ", code: false },
      { text: "keel models fetch", code: true },
      { text: " first", code: false },
    ]);
  });

  it("leaves an unclosed backtick as text", () => {
    expect(hintParts("a `b")).toEqual([{ text: "a `b", code: false }]);
  });
});

describe("toAppError", () => {
  it("keeps a typed error and wraps anything else", () => {
    expect(toAppError({ kind: "model_missing", message: "m", hint: "h" })).toEqual({
      kind: "model_missing",
      message: "m",
      hint: "h",
    });
    expect(toAppError("command send_message not found")).toEqual({
      kind: "internal",
      message: "command send_message not found",
      hint: null,
    });
  });
});

describe("formatDuration", () => {
  it("scales its unit", () => {
    expect([formatDuration(840), formatDuration(2_345), formatDuration(65_000)]).toEqual(["840 ms", "2.35 s", "1 min 05 s"]);
  });
});
