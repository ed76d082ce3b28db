// The inspector's timeline: one row per stored run event, with what a reader scans for (kind, local time,
// duration, tokens, a one-line summary) and the full payload for when they expand it.
//
// Rows are computed from the event's fields by name rather than by a switch over kinds, so that event kinds
// the core adds later (ContextAssembled, ToolCalled, ...) show up with their durations and tokens untouched.

import type { RecordedCandidate, RunDetail, RunEvent, RunOutcome, StopReason, StoredEvent } from "./bindings";
import { excerpt, formatCount } from "./format";

export type MemoryRetrievedEvent = Extract<RunEvent, { kind: "MemoryRetrieved" }>;
export type MemorySavedEvent = Extract<RunEvent, { kind: "MemorySaved" }>;

export type StepRow = {
  key: string;
  seq: number;
  kind: string;
  atMs: number;
  /** The event's own `duration_ms`, else the gap to the next event; null for the last event without one. */
  durationMs: number | null;
  durationFrom: "event" | "gap" | null;
  promptTokens: number | null;
  completionTokens: number | null;
  summary: string;
  /** The event itself, for the views that lay a kind out (the memory steps). */
  event: RunEvent;
  payload: string;
};

function numberField(event: RunEvent, name: string): number | null {
  const value = (event as Record<string, unknown>)[name];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

export function outcomeLabel(outcome: RunOutcome): string {
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
 * went into the context, the dropped ones by fused score).
 */
export function splitCandidates(candidates: readonly RecordedCandidate[]): {
  kept: RecordedCandidate[];
  dropped: RecordedCandidate[];
} {
  return {
    kept: candidates.filter((c) => c.decision === "kept"),
    dropped: candidates.filter((c) => c.decision !== "kept"),
  };
}

export function stepSummary(event: RunEvent): string {
  switch (event.kind) {
    case "RunStarted":
      return `${event.model} on ${event.backend}, up to ${event.max_steps} steps`;
    case "MemorySaved":
      return `saved ${event.memory_kind.replace("_", " ")}: "${excerpt(event.text, 80)}"`;
    case "MemoryRetrieved": {
      if (event.candidates.length === 0) return `no memories found (budget ${formatCount(event.token_budget)} tokens)`;
      const tokens = `${formatCount(event.tokens_used)}/${formatCount(event.token_budget)} tokens`;
      const kept = splitCandidates(event.candidates).kept.length;
      return `${formatCount(kept)} of ${plural(event.candidates.length, "memory", "memories")} kept, ${tokens}`;
    }
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
    case "RunFinished":
      return outcomeLabel(event.outcome);
    default:
      return "";
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
      completionTokens: numberField(stored.event, "completion_tokens"),
      summary: stepSummary(stored.event),
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
