import { describe, expect, it } from "vitest";
import type { RecordedCandidate, RunDetail, RunEvent, StoredEvent } from "./bindings";
import { hintParts, toAppError } from "./errors";
import { memoryRetrieved, recordedCandidate, runStarted, stored } from "./fixtures";
import { formatDuration, formatScore, tail } from "./format";
import { blockedCheck, guardRuns, quarantinedMemory, quarantinedOutput, warnedCheck } from "./guard.fixtures";
import {
  fallbackNotice,
  outcomeLabel,
  replyBackend,
  runDuration,
  splitCandidates,
  statusLabel,
  stepRows,
  stepSummary,
  stepTone,
} from "./steps";
import { fetchTimedOut } from "./toolcalls.fixtures";

/** The local model's answer to the first step, from the first backend it tried unless `fell_back` says otherwise. */
function reply(fell_back: { backend: string; error: string }[] = []): RunEvent {
  return {
    kind: "ModelReplied",
    step: 1,
    text: "Paris.",
    prompt_tokens: 30,
    cached_prompt_tokens: 26,
    completion_tokens: 4,
    duration_ms: 900,
    ttft_ms: 120,
    stop: "eos",
    answered_by: "local",
    fell_back,
  };
}

const started = runStarted("capital of France?", { conversation_id: 3, backend: "local", model: "smollm2", max_steps: 4 });

// A plain two-step run as the core records it, deliberately out of order to check the sort by seq.
const events: StoredEvent[] = [
  { run_id: 7, seq: 2, at_ms: 1_000_050, event: reply() },
  { run_id: 7, seq: 0, at_ms: 1_000_000, event: started },
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

  it("shows the prompt tokens a model reply reused from the KV cache", () => {
    expect(rows.map((r) => r.cachedTokens)).toEqual([null, null, 26, null]);
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
  const unmatched = decision === "below_threshold" ? { bm25: null, bm25_rank: null } : {};
  return recordedCandidate(item_id, decision, { fused, ...unmatched });
}

// Recorded order: the kept ones in context order, then the dropped ones by fused score.
const candidates = [
  candidate(4, "kept", 0.032),
  candidate(9, "kept", 0.03),
  candidate(2, "below_threshold", 0.016),
  candidate(7, "over_budget", 0.015),
  candidate(5, "redundant", 0.014),
];

const retrieved = memoryRetrieved(candidates);

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
    { run_id: 8, seq: 0, at_ms: 2_000_000, event: started },
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

describe("the tool and control steps", () => {
  // Each new event kind's one-line summary, as a reader scans the timeline.
  const cases: [RunEvent, string][] = [
    [
      { ...started, mode: "react", tools: ["calculator", "files_write"] },
      "smollm2 on local, ReAct with 2 tools, up to 4 steps",
    ],
    [{ kind: "ActionParsed", step: 1, action: { type: "answer", text: "Paris." } }, "step 1: answer"],
    [
      { kind: "ActionParsed", step: 1, action: { type: "tool_call", call_id: "c1", tool: "files_write", arguments: {} } },
      "step 1: call files_write (c1)",
    ],
    [
      {
        kind: "ActionParsed",
        step: 1,
        action: { type: "plan", steps: [{ type: "tool", tool: "clock", arguments: {} }, { type: "answer" }] },
      },
      "step 1: plan of 2 steps: clock → answer",
    ],
    [{ kind: "ActionParsed", step: 2, action: { type: "ask", question: "Which file?" } }, 'step 2: ask "Which file?"'],
    [
      { kind: "ActionRejected", step: 1, error: "the reply is not JSON", reprompt: true },
      "step 1: rejected (the reply is not JSON), asked again",
    ],
    [
      { kind: "ActionRejected", step: 2, error: "the reply is not JSON", reprompt: false },
      "step 2: rejected (the reply is not JSON)",
    ],
    [
      { kind: "PolicyChecked", call_id: "c1", tool: "files_write", effect: "write", decision: "needs_approval", reason: "the user decides" },
      "files_write: needs approval (the user decides)",
    ],
    [
      { kind: "ApprovalRequested", call_id: "c1", tool: "files_write", arguments: {}, effect: "write", reason: "the user decides" },
      "files_write needs your approval: the user decides",
    ],
    [{ kind: "UserAsked", question: "Which file?" }, 'asked you "Which file?"'],
    [{ kind: "UserAnswered", answer: { type: "approve", call_id: "c1" } }, "approved c1"],
    [{ kind: "UserAnswered", answer: { type: "deny", call_id: "c1", note: "not now" } }, "denied c1: not now"],
    [{ kind: "UserAnswered", answer: { type: "reply", text: "notes.txt" } }, 'replied "notes.txt"'],
    [
      { kind: "ToolCalled", call_id: "c1", tool: "files_write", arguments: {}, attempt: 2, effect: "write", idempotent: true, untrusted_output: false },
      "files_write (c1), attempt 2",
    ],
    [fetchTimedOut, "http_fetch (c1), attempt 1: timeout: no result after 5.00 s"],
    [
      { kind: "RetryScheduled", call_id: "c1", tool: "http_fetch", next_attempt: 2, delay_ms: 250, reason: "timed out" },
      "http_fetch: attempt 2 in 250 ms (timed out)",
    ],
    [
      { kind: "ErrorReported", call_id: "c1", tool: "x", error: { class: "unknown_tool", name: "x" } },
      "x: unknown tool: there is no tool named x",
    ],
    [
      { kind: "AlternativeChosen", call_id: "c1", from: "http_fetch", to: "mirror_fetch", reason: "failed twice" },
      "http_fetch → mirror_fetch (failed twice)",
    ],
    [
      { kind: "LoopDetected", call_id: "c3", tool: "clock", arguments: {}, times: 1 },
      "clock asked for again with the same arguments (1 time before)",
    ],
    [{ kind: "Verified", check: "recompute arithmetic", passed: false, detail: "2 + 2 = 5" }, "recompute arithmetic: failed (2 + 2 = 5)"],
    [
      { kind: "Routed", tool: "calculator", arguments: { expression: "2 * 3" }, confidence: 0.95, reason: "read as 2 * 3" },
      "Keel chose calculator from your message, not the model: read as 2 * 3",
    ],
    [{ kind: "LimitReached", limit: "tool calls", used: 12, max: 12 }, "tool calls limit reached: 12 of 12"],
    [{ kind: "RunCancelled", reason: "stopped by the user" }, "stopped by the user"],
    [{ kind: "RunInterrupted", reason: "Keel stopped" }, "Keel stopped"],
    [{ kind: "RunResumed", reason: "the user answered" }, "the user answered"],
    [
      { kind: "OutcomeUnknown", call_id: "c1", tool: "files_write" },
      "files_write (c1): Keel stopped during the call; whether it took effect is unknown",
    ],
  ];

  it.each(cases)("summarises %j", (event, expected) => {
    expect(stepSummary(event)).toBe(expected);
  });

  it("colours checks, failures and warnings", () => {
    expect(stepTone({ kind: "Verified", check: "c", passed: true, detail: "" })).toBe("ok");
    expect(stepTone({ kind: "Verified", check: "c", passed: false, detail: "" })).toBe("bad");
    expect(stepTone({ kind: "LimitReached", limit: "steps", used: 8, max: 8 })).toBe("warn");
    expect(stepTone({ kind: "UserAsked", question: "?" })).toBeNull();
  });

  it("reads a RunStarted stored before tools as chat", () => {
    const old = JSON.parse(
      '{"kind":"RunStarted","conversation_id":1,"input":"hi","backend":"local","model":"smollm2","max_steps":4,"settings":{}}',
    );
    expect(stepSummary(old as RunEvent)).toBe("smollm2 on local, chat, up to 4 steps");
  });

  it("gives an event kind newer than the UI a row without a summary", () => {
    const [row] = stepRows([{ run_id: 1, seq: 0, at_ms: 0, event: { kind: "FromTheFuture" } as unknown as RunEvent }]);
    expect(row!.summary).toBe("");
    expect(row!.kind).toBe("FromTheFuture");
  });
});

describe("statusLabel and outcomeLabel", () => {
  it("name every run status, the paused and interrupted ones included", () => {
    expect(
      (["running", "awaiting_user", "interrupted", "answered", "partial", "stopped", "failed"] as const).map(statusLabel),
    ).toEqual(["running", "waiting for you", "interrupted", "answered", "partial", "stopped", "failed"]);
  });

  it("says a run without an outcome waits for the user", () => {
    expect(outcomeLabel(null)).toBe("waiting for you");
    expect(outcomeLabel({ status: "failed", error: "boom", kind: "backend" })).toBe("failed: boom");
  });
});

describe("guard checks in the timeline", () => {
  it("sums up each check: the action, the text, its score and the rules", () => {
    expect(stepSummary(blockedCheck)).toBe(
      "blocked your message (score 0.99: ignore instructions, role marker, new persona, reveal prompt)",
    );
    expect(stepSummary(warnedCheck)).toBe("warned your message (score 0.60: reveal prompt)");
    expect(stepSummary(quarantinedMemory)).toBe("quarantined memory item 12 from a document (score 0.85: exfiltration url)");
  });

  it("shows a block as bad and a warning or a quarantine as a warning", () => {
    expect([blockedCheck, warnedCheck, quarantinedOutput].map(stepTone)).toEqual(["bad", "warn", "warn"]);
    expect(stepTone({ ...warnedCheck, action: "allow" })).toBeNull();
  });

  it("ends a blocked run stopped, with the guard's explanation", () => {
    const rows = stepRows(stored(guardRuns.blocked, 4));
    expect(rows.map((r) => [r.kind, r.tone])).toEqual([
      ["RunStarted", null],
      ["InputChecked", "bad"],
      ["RunFinished", "warn"],
    ]);
    expect(rows[2]!.summary).toBe(`stopped: ${blockedCheck.explanation}`);
  });

  it("counts the memories the guard withheld apart from the dropped ones", () => {
    const retrieved = guardRuns.quarantinedMemory.find((e) => e.kind === "MemoryRetrieved")!;
    expect(stepSummary(retrieved)).toBe("1 of 3 memories kept, 1 withheld as suspicious, 14/1,024 tokens");
    if (retrieved.kind !== "MemoryRetrieved") throw new Error("not a retrieval");
    const { kept, quarantined, dropped } = splitCandidates(retrieved.candidates);
    expect([kept, quarantined, dropped].map((part) => part.map((c) => c.item_id))).toEqual([[3], [12], [8]]);
  });
});

describe("the backend of a model reply", () => {
  const fellBack = reply([
    { backend: "lab-server", error: "connection refused" },
    { backend: "cloud", error: "timed out after 30 s" },
  ]);

  it("says who answered and who failed first, in order", () => {
    expect(replyBackend(fellBack)).toEqual({
      answeredBy: "local",
      fellBack: [
        { backend: "lab-server", error: "connection refused" },
        { backend: "cloud", error: "timed out after 30 s" },
      ],
    });
    expect(fallbackNotice(replyBackend(fellBack)!.fellBack, "local")).toBe(
      "Fell back: lab-server failed (connection refused), then cloud failed (timed out after 30 s); local answered instead.",
    );
    expect(fallbackNotice([{ backend: "cloud", error: "401 Unauthorized" }], null)).toBe(
      "Fell back: cloud failed (401 Unauthorized).",
    );
  });

  it("marks a reply from a fallback as a warning, and a first-choice one as ordinary", () => {
    expect(stepTone(fellBack)).toBe("warn");
    expect(stepTone(reply())).toBeNull();
  });

  it("reads a reply logged before backends had profiles as unknown, with no fallback", () => {
    const old = JSON.parse(
      '{"kind":"ModelReplied","step":1,"text":"Hi","prompt_tokens":9,"completion_tokens":1,"duration_ms":5,"ttft_ms":null,"stop":"eos"}',
    ) as RunEvent;
    expect(replyBackend(old)).toEqual({ answeredBy: null, fellBack: [] });
    expect(stepTone(old)).toBeNull();
    expect(stepSummary(old)).toBe("step 1: end of text");
  });

  it("has nothing to say about other kinds", () => {
    const called = events.find((e) => e.event.kind === "ModelCalled")!.event;
    expect(replyBackend(called)).toBeNull();
  });
});
