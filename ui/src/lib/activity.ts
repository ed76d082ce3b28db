// What a run that uses tools is doing, in a few words, for the chat while its reply is on the way. In such a run
// the model's streamed tokens are its JSON actions, not the answer, so the chat shows this line instead of them
// and the answer once the run has one.

import type { RunEvent, UserAnswer } from "./bindings";
import { formatDuration } from "./format";

/** The line an event puts under a working reply; null leaves the previous one. */
export function runActivity(event: RunEvent): string | null {
  switch (event.kind) {
    case "RunStarted":
      return (event.mode ?? "chat") === "chat" ? null : "Working on it…";
    case "ModelCalled":
      return event.step > 1 ? `Thinking (step ${event.step})…` : "Thinking…";
    case "ActionParsed":
      switch (event.action.type) {
        case "tool_call":
          return `Calling ${event.action.tool}…`;
        case "plan":
          return `Following a plan of ${event.action.steps.length} ${event.action.steps.length === 1 ? "step" : "steps"}…`;
        case "answer":
          return "Writing the answer…";
        case "ask":
          return null;
      }
      return null;
    case "ToolCalled":
      return event.attempt > 1 ? `Running ${event.tool} (attempt ${event.attempt})…` : `Running ${event.tool}…`;
    case "ToolReturned":
      return event.result.status === "ok" ? `${event.tool} done` : `${event.tool} failed (${event.result.error.class.replace("_", " ")})`;
    case "RetryScheduled":
      return `Retrying ${event.tool} in ${formatDuration(event.delay_ms)}…`;
    case "AlternativeChosen":
      return `Trying ${event.to} instead of ${event.from}…`;
    case "Verified":
      return "Checking the answer…";
    case "Routed":
      return `Using ${event.tool}…`;
    case "UserAnswered":
      return answerActivity(event.answer);
    case "RunResumed":
      return "Resuming…";
    default:
      return null;
  }
}

/** The line a reply starts with when the user has just answered a paused run. */
export function answerActivity(answer: UserAnswer): string {
  switch (answer.type) {
    case "approve":
      return "Approved; continuing…";
    case "deny":
      return "Denied; continuing without it…";
    case "reply":
      return "Continuing with your reply…";
  }
}
