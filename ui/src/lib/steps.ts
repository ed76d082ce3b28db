// The inspector's timeline: one row per stored run event, with what a reader scans for (kind, local time,
// duration, tokens, a one-line summary) and the full payload for when they expand it.
//
// Durations and tokens are read from the event's fields by name rather than by a switch over kinds, so that
// event kinds the core adds later show up with theirs untouched; the one-line summary is per kind. The tool
// events are also gathered per call by `toolcalls.ts`.

import type {
  Action,
  BackendFailure,
  PolicyDecision,
  RecordedCandidate,
  RunDetail,
  RunEvent,
  RunMode,
  RunOutcome,
  RunStatus,
  StopReason,
  StoredEvent,
  UserAnswer,
} from "./bindings";
import { excerpt, formatCount, formatDuration, type Tone } from "./format";
import { checkSummary } from "./guard";
import { toolErrorLabel } from "./toolcalls";

export type MemoryRetrievedEvent = Extract<RunEvent, { kind: "MemoryRetrieved" }>;
export type MemorySavedEvent = Extract<RunEvent, { kind: "MemorySaved" }>;
export type ActionParsedEvent = Extract<RunEvent, { kind: "ActionParsed" }>;
export type ModelRepliedEvent = Extract<RunEvent, { kind: "ModelReplied" }>;

/** Which backend produced a model reply, and the ones of the fallback chain that failed before it. */
export type ReplyBackend = { answeredBy: string | null; fellBack: BackendFailure[] };

/**
 * The backend side of a step: for a model reply, who answered and who failed first; null for other kinds.
 * Replies logged before backends had profiles carry neither field, and read as unknown with no fallback.
 */
export function replyBackend(event: RunEvent): ReplyBackend | null {
  if (event.kind !== "ModelReplied") return null;
  const answeredBy = typeof event.answered_by === "string" ? event.answered_by : null;
  const fellBack = Array.isArray(event.fell_back) ? event.fell_back : [];
  return { answeredBy, fellBack };
}

/** The fallback notice's sentence: which backends failed, in order, before `answeredBy` answered. */
export function fallbackNotice(fellBack: readonly BackendFailure[], answeredBy: string | null): string {
  const failed = fellBack.map((f) => `${f.backend} failed (${f.error})`).join(", then ");
  const instead = answeredBy === null ? "" : `; ${answeredBy} answered instead`;
  return `Fell back: ${failed}${instead}.`;
}

/** How a step reads at a glance: a check that passed, a warning (a limit, a rejection), a failure. */
export type StepTone = "ok" | "warn" | "bad" | null;

export type StepRow = {
  key: string;
  seq: number;
  kind: string;
  atMs: number;
  /** The event's own `duration_ms`, else the gap to the next event; null for the last event without one. */
  durationMs: number | null;
  durationFrom: "event" | "gap" | null;
  promptTokens: number | null;
  /** Of the prompt tokens, those whose KV state the embedded model reused from an earlier call. */
  cachedTokens: number | null;
  completionTokens: number | null;
  summary: string;
  tone: StepTone;
  /** The event itself, for the views that lay a kind out (the memory steps). */
  event: RunEvent;
  payload: string;
};

function numberField(event: RunEvent, name: string): number | null {
  const value = (event as Record<string, unknown>)[name];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** How a run ended; null is a run that has not ended because it waits for the user. */
export function outcomeLabel(outcome: RunOutcome | null): string {
  if (outcome === null) return "waiting for you";
  switch (outcome.status) {
    case "answered":
      return "answered";
    case "partial":
      return `partial: ${outcome.reason}`;
    case "stopped":
      return `stopped: ${outcome.reason}`;
    case "failed":
      return `failed: ${outcome.error}`;
  }
}

/** A run's status tag's colour: answered, failed, waiting for the user, or ended short of an answer. */
export function statusTone(status: RunStatus): Tone | null {
  if (status === "answered") return "ok";
  if (status === "failed") return "bad";
  if (status === "awaiting_user") return "accent";
  return status === "running" ? null : "warn";
}

/** A run's listed status in words (the inspector's and the Memory view's status tags). */
export function statusLabel(status: RunStatus): string {
  switch (status) {
    case "running":
      return "running";
    case "awaiting_user":
      return "waiting for you";
    case "interrupted":
      return "interrupted";
    case "answered":
      return "answered";
    case "partial":
      return "partial";
    case "stopped":
      return "stopped";
    case "failed":
      return "failed";
  }
}

const modeLabels: Record<RunMode, string> = {
  chat: "chat",
  react: "ReAct",
  plan: "plan-then-execute",
};

const decisionLabels: Record<PolicyDecision, string> = {
  allow: "allowed",
  needs_approval: "needs approval",
  refuse: "refused",
};

export function decisionLabel(decision: PolicyDecision): string {
  return decisionLabels[decision];
}

/** What the model decided to do in one step. */
export function actionLabel(action: Action): string {
  switch (action.type) {
    case "answer":
      return "answer";
    case "tool_call":
      return `call ${action.tool} (${action.call_id})`;
    case "ask":
      return `ask "${excerpt(action.question, 60)}"`;
    case "plan": {
      const steps = action.steps.map((s) => (s.type === "tool" ? s.tool : "answer")).join(" → ");
      return `plan of ${plural(action.steps.length, "step", "steps")}: ${steps}`;
    }
  }
}

function answerLabel(answer: UserAnswer): string {
  switch (answer.type) {
    case "approve":
      return `approved ${answer.call_id}`;
    case "deny":
      return answer.note ? `denied ${answer.call_id}: ${answer.note}` : `denied ${answer.call_id}`;
    case "reply":
      return `replied "${excerpt(answer.text, 60)}"`;
  }
}

const stopLabels: Record<StopReason, string> = {
  eos: "end of text",
  max_tokens: "token limit",
  cancelled: "cancelled",
};

function plural(n: number, one: string, many: string): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/**
 * A retrieval's candidates split by decision, each part in the order recorded (the kept ones in the order they
 * went into the context, the dropped ones by fused score). The quarantined ones are apart: retrieval kept
 * them, then the guard withheld them from the model as likely prompt injections.
 */
export function splitCandidates(candidates: readonly RecordedCandidate[]): {
  kept: RecordedCandidate[];
  quarantined: RecordedCandidate[];
  dropped: RecordedCandidate[];
} {
  return {
    kept: candidates.filter((c) => c.decision === "kept"),
    quarantined: candidates.filter((c) => c.decision === "quarantined"),
    dropped: candidates.filter((c) => c.decision !== "kept" && c.decision !== "quarantined"),
  };
}

export function stepSummary(event: RunEvent): string {
  switch (event.kind) {
    case "RunStarted": {
      // Logs from before tools carry no mode: those runs were chat.
      const mode = event.mode ?? "chat";
      const tools = mode === "chat" ? "" : ` with ${plural(event.tools?.length ?? 0, "tool", "tools")}`;
      return `${event.model} on ${event.backend}, ${modeLabels[mode]}${tools}, up to ${event.max_steps} steps`;
    }
    case "MemorySaved":
      return `saved ${event.memory_kind.replace("_", " ")}: "${excerpt(event.text, 80)}"`;
    case "MemoryRetrieved": {
      if (event.candidates.length === 0) return `no memories found (budget ${formatCount(event.token_budget)} tokens)`;
      const tokens = `${formatCount(event.tokens_used)}/${formatCount(event.token_budget)} tokens`;
      const { kept, quarantined } = splitCandidates(event.candidates);
      const withheld = quarantined.length > 0 ? `, ${formatCount(quarantined.length)} withheld as suspicious` : "";
      return `${formatCount(kept.length)} of ${plural(event.candidates.length, "memory", "memories")} kept${withheld}, ${tokens}`;
    }
    case "InputChecked":
      return checkSummary(event);
    case "MemoryUnavailable":
      return `memory unavailable: ${event.reason}`;
    case "ModelCalled": {
      const dropped = event.dropped_messages > 0 ? `, ${event.dropped_messages} dropped` : "";
      // Events stored before memory existed have no `memory_items`.
      const memory = (event.memory_items ?? 0) > 0 ? `, ${plural(event.memory_items, "memory item", "memory items")}` : "";
      return `step ${event.step}: ${event.messages} messages${dropped}${memory}`;
    }
    case "ModelReplied": {
      const ttft = event.ttft_ms === null ? "" : `, first token after ${event.ttft_ms} ms`;
      return `step ${event.step}: ${stopLabels[event.stop]}${ttft}`;
    }
    case "ActionParsed":
      return `step ${event.step}: ${actionLabel(event.action)}`;
    case "ActionRejected":
      return `step ${event.step}: rejected (${event.error})${event.reprompt ? ", asked again" : ""}`;
    case "PolicyChecked":
      return `${event.tool}: ${decisionLabels[event.decision]} (${event.reason})`;
    case "ApprovalRequested":
      return `${event.tool} needs your approval: ${event.reason}`;
    case "UserAsked":
      return `asked you "${excerpt(event.question, 80)}"`;
    case "UserAnswered":
      return answerLabel(event.answer);
    case "ToolCalled":
      return `${event.tool} (${event.call_id}), attempt ${event.attempt}`;
    case "ToolReturned":
      return `${event.tool} (${event.call_id}), attempt ${event.attempt}: ${
        event.result.status === "ok" ? "ok" : toolErrorLabel(event.result.error)
      }`;
    case "RetryScheduled":
      return `${event.tool}: attempt ${event.next_attempt} in ${formatDuration(event.delay_ms)} (${event.reason})`;
    case "ErrorReported":
      return `${event.tool}: ${toolErrorLabel(event.error)}`;
    case "AlternativeChosen":
      return `${event.from} → ${event.to} (${event.reason})`;
    case "LoopDetected":
      return `${event.tool} asked for again with the same arguments (${plural(event.times, "time", "times")} before)`;
    case "Verified":
      return `${event.check}: ${event.passed ? "passed" : "failed"} (${event.detail})`;
    case "Routed":
      return `Keel chose ${event.tool} from your message, not the model: ${event.reason}`;
    case "LimitReached":
      return `${event.limit} limit reached: ${formatCount(event.used)} of ${formatCount(event.max)}`;
    case "RunCancelled":
    case "RunInterrupted":
    case "RunResumed":
      return event.reason;
    case "OutcomeUnknown":
      return `${event.tool} (${event.call_id}): Keel stopped during the call; whether it took effect is unknown`;
    case "RunFinished":
      return outcomeLabel(event.outcome);
  }
}

/** Whether a step is good news, a warning or a failure, for its colour; null for the ordinary ones. */
export function stepTone(event: RunEvent): StepTone {
  switch (event.kind) {
    case "Verified":
      return event.passed ? "ok" : "bad";
    case "ToolReturned":
      return event.result.status === "ok" ? "ok" : "bad";
    case "ErrorReported":
    case "OutcomeUnknown":
      return "bad";
    case "PolicyChecked":
      return event.decision === "refuse" ? "bad" : event.decision === "needs_approval" ? "warn" : null;
    case "UserAnswered":
      return event.answer.type === "deny" ? "warn" : null;
    case "InputChecked":
      return event.action === "block" ? "bad" : event.action === "allow" ? null : "warn";
    case "ModelReplied":
      // A reply that came from a fallback backend: the one the run should have used failed.
      return (replyBackend(event)?.fellBack.length ?? 0) > 0 ? "warn" : null;
    case "ActionRejected":
    case "RetryScheduled":
    case "AlternativeChosen":
    case "LoopDetected":
    case "LimitReached":
    case "RunCancelled":
    case "RunInterrupted":
    case "ApprovalRequested":
    case "MemoryUnavailable":
      return "warn";
    case "RunFinished":
      return event.outcome.status === "answered" ? "ok" : event.outcome.status === "failed" ? "bad" : "warn";
    default:
      return null;
  }
}

export function stepRows(events: readonly StoredEvent[]): StepRow[] {
  const sorted = [...events].sort((a, b) => a.seq - b.seq);
  return sorted.map((stored, i) => {
    const own = numberField(stored.event, "duration_ms");
    const next = sorted[i + 1];
    const gap = next ? Math.max(0, next.at_ms - stored.at_ms) : null;
    return {
      key: `${stored.run_id}:${stored.seq}`,
      seq: stored.seq,
      kind: stored.event.kind,
      atMs: stored.at_ms,
      durationMs: own ?? gap,
      durationFrom: own !== null ? "event" : gap !== null ? "gap" : null,
      promptTokens: numberField(stored.event, "prompt_tokens"),
      cachedTokens: numberField(stored.event, "cached_prompt_tokens"),
      completionTokens: numberField(stored.event, "completion_tokens"),
      // A kind newer than this UI has no summary (the switch covers the kinds it knows) but still its row.
      summary: stepSummary(stored.event) ?? "",
      tone: stepTone(stored.event),
      event: stored.event,
      payload: JSON.stringify(stored, null, 2),
    };
  });
}

/** The run's wall time: from RunFinished when it has one, else from the run's start and finish stamps. */
export function runDuration(detail: RunDetail): number | null {
  for (const stored of detail.events) {
    if (stored.event.kind === "RunFinished") return stored.event.duration_ms;
  }
  const { started_ms, finished_ms } = detail.run;
  return finished_ms === null ? null : Math.max(0, finished_ms - started_ms);
}
