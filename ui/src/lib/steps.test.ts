import { describe, expect, it } from "vitest";
import type { RecordedCandidate, RunDetail, RunEvent, StoredEvent } from "./bindings";
import { hintParts, toAppError } from "./errors";
import { formatDuration, formatScore, tail } from "./format";
import { runDuration, splitCandidates, stepRows, stepSummary } from "./steps";

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
    event: {
      kind: "ModelCalled",
      step: 1,
      backend: "local",
      prompt_tokens: 30,
      messages: 2,
      dropped_messages: 0,
      memory_items: 0,
    },
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

function candidate(item_id: number, decision: RecordedCandidate["decision"], fused: number): RecordedCandidate {
  return {
    item_id,
    kind: "fact",
    source: "chat",
    text: `memory ${item_id}`,
    bm25: decision === "below_threshold" ? null : 3.2,
    bm25_rank: decision === "below_threshold" ? null : 1,
    cosine: 0.61,
    vector_rank: 2,
    fused,
    tokens: 12,
    decision,
    reason: decision === "kept" ? "kept" : `dropped: ${decision}`,
  };
}

// Recorded order: the kept ones in context order, then the dropped ones by fused score.
const candidates = [
  candidate(4, "kept", 0.032),
  candidate(9, "kept", 0.03),
  candidate(2, "below_threshold", 0.016),
  candidate(7, "over_budget", 0.015),
  candidate(5, "redundant", 0.014),
];

const retrieved: RunEvent = {
  kind: "MemoryRetrieved",
  query: "what bread do I bake?",
  threshold: 0.35,
  token_budget: 1_024,
  tokens_used: 24,
  duration_ms: 18,
  candidates,
};

describe("stepSummary", () => {
  it("counts the kept memories and the tokens they cost", () => {
    expect(stepSummary(retrieved)).toBe("2 of 5 memories kept, 24/1,024 tokens");
    expect(stepSummary({ ...retrieved, candidates: [candidate(1, "below_threshold", 0.01)], tokens_used: 0 })).toBe(
      "0 of 1 memory kept, 0/1,024 tokens",
    );
  });

  it("says when retrieval found nothing at all", () => {
    expect(stepSummary({ ...retrieved, candidates: [], tokens_used: 0 })).toBe("no memories found (budget 1,024 tokens)");
  });

  it("quotes what was saved, on one line and cut short", () => {
    const saved: RunEvent = {
      kind: "MemorySaved",
      item_id: 12,
      memory_kind: "fact",
      text: "my sourdough\nstarter is called Clint",
      provenance: "user",
    };
    expect(stepSummary(saved)).toBe('saved fact: "my sourdough starter is called Clint"');
    const long = stepSummary({ ...saved, memory_kind: "document_chunk", text: "x".repeat(300) });
    expect(long.startsWith('saved document chunk: "xxx')).toBe(true);
    expect(long.endsWith('…"')).toBe(true);
    expect(long.length).toBeLessThan(120);
  });

  it("gives the reason memory was unavailable", () => {
    expect(stepSummary({ kind: "MemoryUnavailable", reason: "the embedding model is missing" })).toBe(
      "memory unavailable: the embedding model is missing",
    );
  });

  it("mentions the memory section of a model call only when there is one", () => {
    const called: RunEvent = {
      kind: "ModelCalled",
      step: 1,
      backend: "local",
      prompt_tokens: 300,
      messages: 3,
      dropped_messages: 1,
      memory_items: 0,
    };
    expect(stepSummary(called)).toBe("step 1: 3 messages, 1 dropped");
    expect(stepSummary({ ...called, memory_items: 1 })).toBe("step 1: 3 messages, 1 dropped, 1 memory item");
    expect(stepSummary({ ...called, dropped_messages: 0, memory_items: 2 })).toBe("step 1: 3 messages, 2 memory items");
  });

  it("reads a model call stored before memory existed", () => {
    const old = JSON.parse('{"kind":"ModelCalled","step":1,"backend":"local","prompt_tokens":9,"messages":2,"dropped_messages":0}');
    expect(stepSummary(old as RunEvent)).toBe("step 1: 2 messages");
  });
});

describe("splitCandidates", () => {
  it("puts the kept ones first and keeps the recorded order within each part", () => {
    const shuffled = [candidates[2]!, candidates[0]!, candidates[3]!, candidates[1]!, candidates[4]!];
    const { kept, dropped } = splitCandidates(shuffled);
    expect(kept.map((c) => c.item_id)).toEqual([4, 9]);
    expect(dropped.map((c) => [c.item_id, c.decision])).toEqual([
      [2, "below_threshold"],
      [7, "over_budget"],
      [5, "redundant"],
    ]);
  });
});

describe("memory steps in the timeline", () => {
  const rows = stepRows([
    { run_id: 8, seq: 0, at_ms: 2_000_000, event: events[1]!.event },
    { run_id: 8, seq: 1, at_ms: 2_000_005, event: retrieved },
    { run_id: 8, seq: 2, at_ms: 2_000_030, event: { ...(events[2]!.event as object), memory_items: 2 } as RunEvent },
  ]);

  it("uses the retrieval's own duration and carries the event for the memory view", () => {
    expect(rows[1]!.kind).toBe("MemoryRetrieved");
    expect([rows[1]!.durationMs, rows[1]!.durationFrom]).toEqual([18, "event"]);
    expect(rows[1]!.event).toEqual(retrieved);
    expect(rows[2]!.summary).toBe("step 1: 2 messages, 2 memory items");
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

describe("formatScore", () => {
  it("keeps three significant digits whatever the scale", () => {
    expect([12.345, 0.8123, 0.032786, 0, null].map(formatScore)).toEqual(["12.3", "0.812", "0.0328", "0", "–"]);
  });
});

describe("tail", () => {
  it("keeps the end of a long path", () => {
    expect(tail("/home/me/notes/sourdough.md", 14)).toBe("…/sourdough.md");
    expect(tail("chat", 14)).toBe("chat");
  });
});
