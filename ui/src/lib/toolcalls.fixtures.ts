// Tool runs' event logs as the core records them, for the tests of the inspector's tool view (toolcalls.test.ts,
// inspector.test.ts). Each is the sequence of events of one run, without the store's seq and time stamps.

import type { RunEvent } from "./bindings";

const note = { path: "notes/todo.txt", content: "buy milk" };
const reason = "files_write can change things (Write); the user decides";

const asked: RunEvent[] = [
  { kind: "ActionParsed", step: 1, action: { type: "tool_call", call_id: "c1", tool: "files_write", arguments: note } },
  { kind: "PolicyChecked", call_id: "c1", tool: "files_write", effect: "write", decision: "needs_approval", reason },
  { kind: "ApprovalRequested", call_id: "c1", tool: "files_write", arguments: note, effect: "write", reason },
];

/** The first attempt of a fetch that timed out (also a step of its own in steps.test.ts). */
export const fetchTimedOut: RunEvent = {
  kind: "ToolReturned",
  call_id: "c1",
  tool: "http_fetch",
  attempt: 1,
  duration_ms: 5_000,
  result: { status: "err", error: { class: "timeout", tool: "http_fetch", after_ms: 5_000 } },
};

export const toolRuns: Record<"approvedWrite" | "deniedWrite" | "crashedWrite" | "retriedThenAlternative", RunEvent[]> = {
  approvedWrite: [
    ...asked,
    { kind: "UserAnswered", answer: { type: "approve", call_id: "c1" } },
    { kind: "RunResumed", reason: "the user answered" },
    { kind: "ModelCalled", step: 2, backend: "scripted", prompt_tokens: 10, messages: 3, dropped_messages: 0, memory_items: 0 },
    { kind: "ToolCalled", call_id: "c1", tool: "files_write", arguments: note, attempt: 1, effect: "write", idempotent: true, untrusted_output: false },
    {
      kind: "ToolReturned",
      call_id: "c1",
      tool: "files_write",
      attempt: 1,
      duration_ms: 12,
      result: { status: "ok", value: { path: "notes/todo.txt", bytes: 8, created: true } },
    },
  ],
  deniedWrite: [...asked, { kind: "UserAnswered", answer: { type: "deny", call_id: "c1", note: "not now" } }],
  crashedWrite: [
    { kind: "ActionParsed", step: 1, action: { type: "tool_call", call_id: "c1", tool: "files_write", arguments: note } },
    { kind: "ToolCalled", call_id: "c1", tool: "files_write", arguments: note, attempt: 1, effect: "write", idempotent: false, untrusted_output: false },
    { kind: "RunInterrupted", reason: "Keel stopped while this run was in flight" },
    { kind: "OutcomeUnknown", call_id: "c1", tool: "files_write" },
    {
      kind: "ApprovalRequested",
      call_id: "c1",
      tool: "files_write",
      arguments: note,
      effect: "write",
      reason: "Keel stopped during this call, so whether it took effect is unknown. Run it again?",
    },
  ],
  retriedThenAlternative: [
    {
      kind: "ActionParsed",
      step: 1,
      action: { type: "tool_call", call_id: "c1", tool: "http_fetch", arguments: { url: "https://example.com" } },
    },
    { kind: "PolicyChecked", call_id: "c1", tool: "http_fetch", effect: "external", decision: "allow", reason: "allowed by the user's policy" },
    { kind: "ToolCalled", call_id: "c1", tool: "http_fetch", arguments: { url: "https://example.com" }, attempt: 1, effect: "external", idempotent: true, untrusted_output: true },
    fetchTimedOut,
    { kind: "RetryScheduled", call_id: "c1", tool: "http_fetch", next_attempt: 2, delay_ms: 250, reason: "timed out" },
    { kind: "ToolCalled", call_id: "c1", tool: "http_fetch", arguments: { url: "https://example.com" }, attempt: 2, effect: "external", idempotent: true, untrusted_output: true },
    {
      kind: "ToolReturned",
      call_id: "c1",
      tool: "http_fetch",
      attempt: 2,
      duration_ms: 40,
      result: { status: "err", error: { class: "failed", tool: "http_fetch", message: "HTTP 500" } },
    },
    { kind: "AlternativeChosen", call_id: "c1", from: "http_fetch", to: "mirror_fetch", reason: "HTTP 500" },
    { kind: "ToolCalled", call_id: "c1", tool: "mirror_fetch", arguments: { url: "https://example.com" }, attempt: 3, effect: "external", idempotent: true, untrusted_output: true },
    {
      kind: "ToolReturned",
      call_id: "c1",
      tool: "mirror_fetch",
      attempt: 3,
      duration_ms: 30,
      result: { status: "ok", value: { status: 200, text: "Example Domain" } },
    },
    { kind: "ActionParsed", step: 2, action: { type: "tool_call", call_id: "c2", tool: "clock", arguments: {} } },
    { kind: "ToolCalled", call_id: "c2", tool: "clock", arguments: {}, attempt: 1, effect: "pure", idempotent: true, untrusted_output: false },
    { kind: "ToolReturned", call_id: "c2", tool: "clock", attempt: 1, duration_ms: 0, result: { status: "ok", value: { now: "12:00" } } },
  ],
};
