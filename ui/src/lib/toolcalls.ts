// A run's tool calls for the inspector, one per call id: what the model asked for, the policy's decision, the
// user's approval, every attempt with its latency and result, the retries and the alternatives, gathered from
// the run's events, and whether the guard withheld its output from the model. A pure function of the stored
// log: the inspector re-reads the log and calls it again.

import type { Effect, PolicyDecision, StoredEvent, ToolError, ToolOutcome } from "./bindings";
import { formatDuration, type Tone } from "./format";

export type ToolAttempt = {
  attempt: number;
  /** The tool this attempt ran (an alternative may have replaced the one first asked for). */
  tool: string;
  seq: number;
  /** ToolReturned's `duration_ms`; null while the attempt has not returned (in flight, or Keel stopped in it). */
  durationMs: number | null;
  result: ToolOutcome | null;
};

export type ToolCallStatus = "ok" | "error" | "denied" | "refused" | "loop" | "waiting" | "running" | "unknown" | "pending";

export type ToolCallGroup = {
  callId: string;
  /** The tool the model asked for. */
  tool: string;
  /** The arguments as the model gave them (the first event that carries them). */
  arguments: unknown;
  effect: Effect | null;
  idempotent: boolean | null;
  /** Whether the tool's output is untrusted text (it read files or memory, fetched, or is an MCP tool). */
  untrustedOutput: boolean | null;
  /** The guard found the output to read as a prompt injection and withheld it from the model. */
  quarantine: { explanation: string; score: number; seq: number } | null;
  /** The first event of the call, to order the calls. */
  firstSeq: number;
  policy: { decision: PolicyDecision; reason: string; seq: number }[];
  approval: { reason: string; seq: number } | null;
  /** The user's answer to the approval request. */
  answer: { approved: boolean; note: string | null; seq: number } | null;
  attempts: ToolAttempt[];
  retries: { nextAttempt: number; delayMs: number; reason: string; seq: number }[];
  alternatives: { from: string; to: string; reason: string; seq: number }[];
  /** Errors handed back to the model as the call's result. */
  reported: ToolError[];
  /** How many times the model had already made the same call, when the run caught it repeating itself. */
  loopTimes: number | null;
  /** Keel stopped inside this call and cannot tell whether it took effect. */
  outcomeUnknown: boolean;
  status: ToolCallStatus;
  /** The sum of the attempts' latencies; null when no attempt returned. */
  totalMs: number | null;
};

function group(groups: Map<string, ToolCallGroup>, callId: string, tool: string, seq: number): ToolCallGroup {
  let g = groups.get(callId);
  if (!g) {
    g = {
      callId,
      tool,
      arguments: undefined,
      effect: null,
      idempotent: null,
      untrustedOutput: null,
      quarantine: null,
      firstSeq: seq,
      policy: [],
      approval: null,
      answer: null,
      attempts: [],
      retries: [],
      alternatives: [],
      reported: [],
      loopTimes: null,
      outcomeUnknown: false,
      status: "pending",
      totalMs: null,
    };
    groups.set(callId, g);
  }
  return g;
}

function withArguments(g: ToolCallGroup, args: unknown): void {
  if (g.arguments === undefined) g.arguments = args;
}

/** The run's tool calls in the order the model asked for them, each with everything that happened to it. */
export function toolCalls(events: readonly StoredEvent[]): ToolCallGroup[] {
  const groups = new Map<string, ToolCallGroup>();
  const sorted = [...events].sort((a, b) => a.seq - b.seq);
  for (const { seq, event: e } of sorted) {
    switch (e.kind) {
      case "ActionParsed":
        if (e.action.type === "tool_call") withArguments(group(groups, e.action.call_id, e.action.tool, seq), e.action.arguments);
        break;
      case "PolicyChecked": {
        const g = group(groups, e.call_id, e.tool, seq);
        g.effect = e.effect;
        g.policy.push({ decision: e.decision, reason: e.reason, seq });
        break;
      }
      case "ApprovalRequested": {
        const g = group(groups, e.call_id, e.tool, seq);
        withArguments(g, e.arguments);
        g.effect = e.effect;
        g.approval = { reason: e.reason, seq };
        g.answer = null; // A new request (after an interruption) waits for a new answer.
        break;
      }
      case "UserAnswered": {
        const a = e.answer;
        if (a.type === "reply") break;
        const g = groups.get(a.call_id);
        if (g) g.answer = { approved: a.type === "approve", note: a.type === "deny" ? a.note : null, seq };
        break;
      }
      case "ToolCalled": {
        const g = group(groups, e.call_id, e.tool, seq);
        withArguments(g, e.arguments);
        g.effect = e.effect;
        g.idempotent = e.idempotent;
        g.untrustedOutput = e.untrusted_output;
        g.attempts.push({ attempt: e.attempt, tool: e.tool, seq, durationMs: null, result: null });
        break;
      }
      case "ToolReturned": {
        const g = group(groups, e.call_id, e.tool, seq);
        const attempt = [...g.attempts].reverse().find((a) => a.attempt === e.attempt && a.result === null);
        if (attempt) {
          attempt.durationMs = e.duration_ms;
          attempt.result = e.result;
        } else {
          g.attempts.push({ attempt: e.attempt, tool: e.tool, seq, durationMs: e.duration_ms, result: e.result });
        }
        break;
      }
      case "RetryScheduled":
        group(groups, e.call_id, e.tool, seq).retries.push({
          nextAttempt: e.next_attempt,
          delayMs: e.delay_ms,
          reason: e.reason,
          seq,
        });
        break;
      case "AlternativeChosen":
        group(groups, e.call_id, e.from, seq).alternatives.push({ from: e.from, to: e.to, reason: e.reason, seq });
        break;
      case "ErrorReported":
        group(groups, e.call_id, e.tool, seq).reported.push(e.error);
        break;
      case "LoopDetected": {
        const g = group(groups, e.call_id, e.tool, seq);
        withArguments(g, e.arguments);
        g.loopTimes = e.times;
        break;
      }
      case "OutcomeUnknown":
        group(groups, e.call_id, e.tool, seq).outcomeUnknown = true;
        break;
      case "InputChecked": {
        // `tool:<call id>` names a tool's output; the call has been gathered by then (its ToolReturned came first).
        const g = e.origin.startsWith("tool:") ? groups.get(e.origin.slice("tool:".length)) : undefined;
        if (g && e.action === "quarantine") g.quarantine = { explanation: e.explanation, score: e.score, seq };
        break;
      }
      default:
        break;
    }
  }
  const calls = [...groups.values()].sort((a, b) => a.firstSeq - b.firstSeq);
  for (const g of calls) {
    g.status = callStatus(g);
    const returned = g.attempts.filter((a) => a.durationMs !== null);
    g.totalMs = returned.length === 0 ? null : returned.reduce((sum, a) => sum + (a.durationMs ?? 0), 0);
  }
  return calls;
}

function callStatus(g: ToolCallGroup): ToolCallStatus {
  const last = g.attempts.at(-1);
  if (last?.result?.status === "ok") return "ok";
  if (g.answer && !g.answer.approved) return "denied";
  if (g.policy.at(-1)?.decision === "refuse") return "refused";
  if (g.loopTimes !== null && g.attempts.length === 0) return "loop";
  if (g.approval && !g.answer) return "waiting";
  if (g.outcomeUnknown && last?.result === null) return "unknown";
  if (last?.result?.status === "err" || g.reported.length > 0) return "error";
  if (last && last.result === null) return "running";
  return "pending";
}

/** `2 attempts`. */
export function attemptsLabel(n: number): string {
  return `${n} ${n === 1 ? "attempt" : "attempts"}`;
}

/** The latency of a call or attempt, `–` when it never returned. */
export function latencyLabel(ms: number | null): string {
  return ms === null ? "–" : formatDuration(ms);
}

const statusLabels: Record<ToolCallStatus, string> = {
  ok: "ok",
  error: "failed",
  denied: "denied by you",
  refused: "refused by policy",
  loop: "repeated call stopped",
  waiting: "waiting for your approval",
  running: "did not return",
  unknown: "outcome unknown",
  pending: "not run",
};

export function callStatusLabel(status: ToolCallStatus): string {
  return statusLabels[status];
}

/** A call's status tag's colour: it worked, it went wrong, or it waits on or was stopped by someone. */
export function callStatusTone(status: ToolCallStatus): Tone | null {
  if (status === "ok") return "ok";
  if (status === "error" || status === "refused" || status === "unknown") return "bad";
  return status === "denied" || status === "loop" || status === "waiting" ? "warn" : null;
}

/** What a tool error says, without its class. */
export function toolErrorMessage(error: ToolError): string {
  switch (error.class) {
    case "unknown_tool":
      return `there is no tool named ${error.name}`;
    case "invalid_arguments":
    case "schema_drift":
      return error.errors.join("; ");
    case "timeout":
      return `no result after ${formatDuration(error.after_ms)}`;
    case "transient":
      return error.retry_after_ms === null
        ? error.message
        : `${error.message} (retry after ${formatDuration(error.retry_after_ms)})`;
    case "refused":
      return error.reason;
    case "failed":
      return error.message;
    case "cancelled":
      return "cancelled";
  }
}

/** `timeout: no result after 5.00 s`: the error's class and its message. */
export function toolErrorLabel(error: ToolError): string {
  return `${error.class.replace("_", " ")}: ${toolErrorMessage(error)}`;
}

/** Pretty JSON for arguments and results; `undefined` (never given) shows as nothing rather than throwing. */
export function prettyJson(value: unknown): string {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** The result of a call as the inspector shows it: the value's JSON, the error, or why it never ran. */
export function callResultText(g: ToolCallGroup): string {
  const last = g.attempts.at(-1);
  if (last?.result?.status === "ok") return prettyJson(last.result.value);
  if (last?.result?.status === "err") return toolErrorLabel(last.result.error);
  const reported = g.reported.at(-1);
  if (reported) return toolErrorLabel(reported);
  return `not run: ${callStatusLabel(g.status)}`;
}
