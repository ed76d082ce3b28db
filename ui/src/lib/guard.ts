// What the core's guard (prompt-injection detection) decided about the texts that entered a run, in words: the
// Inspector's `InputChecked` steps, and the chat's notices under a flagged or blocked message and where
// untrusted text (a tool's output, a document chunk, a memory) was withheld from the model. Pure functions of
// the run's events, so that a streamed run and a reopened one read the same.

import type { GuardAction, Reason, RunEvent, Source } from "./bindings";

export type InputCheckedEvent = Extract<RunEvent, { kind: "InputChecked" }>;

/** An untrusted text withheld from the model, named for the chat ("the output of files_read (call c1)"). */
export type WithheldInput = { origin: string; what: string; check: InputCheckedEvent };

/** What the chat says about one run's checked inputs. */
export type RunNotices = {
  /** The check of the user's own message when it was not simply allowed: sent with a warning, or not sent. */
  message: InputCheckedEvent | null;
  /** The untrusted texts withheld from the model, in the order the run withheld them. */
  withheld: WithheldInput[];
  /** The tools the run called, by call id, to name a withheld output by its tool. */
  tools: Record<string, string>;
};

export function noNotices(): RunNotices {
  return { message: null, withheld: [], tools: {} };
}

/**
 * The notices with one more event of the run taken in; the same object when the event adds nothing, so that a
 * streamed run's message is only touched by the events that matter to it.
 */
export function addNotice(notices: RunNotices, event: RunEvent): RunNotices {
  switch (event.kind) {
    case "ToolCalled":
      if (notices.tools[event.call_id] === event.tool) return notices;
      return { ...notices, tools: { ...notices.tools, [event.call_id]: event.tool } };
    case "InputChecked":
      if (event.origin === "message") {
        return event.action === "warn" || event.action === "block" ? { ...notices, message: event } : notices;
      }
      if (event.action !== "quarantine" || notices.withheld.some((w) => w.origin === event.origin)) return notices;
      return {
        ...notices,
        withheld: [...notices.withheld, { origin: event.origin, what: withheldWhat(event.origin, notices.tools), check: event }],
      };
    default:
      return notices;
  }
}

/** A run's notices from its events (a reopened conversation's runs, read from the core). */
export function runNotices(events: readonly RunEvent[]): RunNotices {
  return events.reduce(addNotice, noNotices());
}

/** Whether the run's message was not sent: the guard blocked it, so the run ended before any model call. */
export function messageBlocked(notices: RunNotices): boolean {
  return notices.message?.action === "block";
}

const actionLabels: Record<GuardAction, string> = {
  allow: "Allowed",
  warn: "Warned",
  quarantine: "Quarantined",
  block: "Blocked",
};

/** The guard's action as the Inspector's badge says it: Warned, Blocked, Quarantined. */
export function guardActionLabel(action: GuardAction): string {
  return actionLabels[action] ?? action;
}

const sourceLabels: Record<Source, string> = {
  user: "you",
  system: "Keel",
  document: "a document",
  tool: "a tool",
  memory: "memory",
  web: "the web",
};

/** Where a checked text came from, after "from": "from a document". */
export function sourceLabel(source: Source): string {
  return sourceLabels[source] ?? source;
}

/** Which text was checked: "your message", "output of call c1", "memory item 12". */
export function originLabel(origin: string): string {
  if (origin === "message") return "your message";
  const [prefix, id] = splitOrigin(origin);
  if (prefix === "tool") return `output of call ${id}`;
  if (prefix === "memory") return `memory item ${id}`;
  return origin;
}

/** The withheld text in a sentence: "the output of files_read (call c1)", "memory item 12". */
export function withheldWhat(origin: string, tools: Record<string, string> = {}): string {
  const [prefix, id] = splitOrigin(origin);
  if (prefix === "tool") return tools[id] ? `the output of ${tools[id]} (call ${id})` : `the output of call ${id}`;
  return originLabel(origin);
}

/** The chat's line for a withheld text. */
export function withheldSentence(input: WithheldInput): string {
  return `Keel withheld ${input.what} from the model: it looked like a prompt injection.`;
}

function splitOrigin(origin: string): [string, string] {
  const colon = origin.indexOf(":");
  return colon < 0 ? [origin, ""] : [origin.slice(0, colon), origin.slice(colon + 1)];
}

/** A rule's id in words: `ignore_instructions` → "ignore instructions". */
export function humaniseRule(rule: string): string {
  return rule.replace(/[_-]+/g, " ").trim();
}

/** The guard's score, 0 to 1, to two decimals as the core words its explanations. */
export function guardScore(score: number): string {
  return Number.isFinite(score) ? score.toFixed(2) : "–";
}

/** The rules that matched, in words, strongest first as the core records them: "role marker, ignore instructions". */
export function reasonsLabel(reasons: readonly Reason[]): string {
  return reasons.map((r) => humaniseRule(r.rule)).join(", ");
}

/**
 * The Inspector's one-line summary of a check: "blocked your message (score 0.99: role marker, …)",
 * "quarantined output of call c1 from a document (score 0.96: …)".
 */
export function checkSummary(event: InputCheckedEvent): string {
  const from = event.origin === "message" ? "" : ` from ${sourceLabel(event.source)}`;
  const rules = event.reasons.length > 0 ? `: ${reasonsLabel(event.reasons)}` : "";
  return `${guardActionLabel(event.action).toLowerCase()} ${originLabel(event.origin)}${from} (score ${guardScore(event.score)}${rules})`;
}

/**
 * An approval reason split around the part that names the untrusted content in the run's context ("untrusted
 * content from the output of files_read, … is in the context"), so that the card can stress it; null when the
 * reason names none. The core words the taint gate's reason this way (orchestration/policy.rs `check`); it has
 * no field of its own on the request.
 */
export function taintParts(reason: string): { before: string; taint: string; after: string } | null {
  const start = reason.indexOf("untrusted content from");
  if (start < 0) return null;
  const tail = " is in the context";
  const end = reason.indexOf(tail, start);
  const stop = end < 0 ? reason.length : end + tail.length;
  return { before: reason.slice(0, start), taint: reason.slice(start, stop), after: reason.slice(stop) };
}
