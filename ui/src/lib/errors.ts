// One shape for every failure the UI shows: the core's typed `AppError` (kind + message + hint).
// Commands reject with that object; anything else (a string from Tauri itself, a thrown `Error`) is folded
// into the same shape here so that views never inspect raw rejections.

import type { AppError, ErrorKind, FailureKind } from "./bindings";

export function isAppError(value: unknown): value is AppError {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.kind === "string" &&
    typeof v.message === "string" &&
    (v.hint === null || v.hint === undefined || typeof v.hint === "string")
  );
}

export function toAppError(value: unknown): AppError {
  if (isAppError(value)) return { kind: value.kind, message: value.message, hint: value.hint ?? null };
  if (typeof value === "string") return { kind: "internal", message: value, hint: null };
  if (value instanceof Error) return { kind: "internal", message: value.message, hint: null };
  return { kind: "internal", message: "Something went wrong.", hint: null };
}

/** What made a run fail, as the kind of error the chat shows (the CLI's exit code follows the same map). */
const FAILURE_KINDS: Record<FailureKind, { kind: ErrorKind; hint: string | null }> = {
  backend: { kind: "backend", hint: "Check the backend under Models, or pick another one for this chat." },
  crash: { kind: "internal", hint: "The run's steps in the Inspector show where; try again, or another backend." },
  tools: { kind: "tool", hint: "The Inspector shows each tool call and its error." },
  log: { kind: "store", hint: null },
};

/** A failed run's recorded failure as the error the chat shows, its kind kept. */
export function runFailure(failure: { error: string; kind: FailureKind }): AppError {
  const { kind, hint } = FAILURE_KINDS[failure.kind];
  return { kind, message: failure.error, hint };
}

/**
 * Runs `action`; if it fails, hands the failure, as an `AppError`, to `onFailure` (which keeps it for the view to
 * show). True when it worked. The stores' one try/catch, rather than one in every action.
 */
export async function attempt(
  action: () => Promise<unknown>,
  onFailure: (failure: AppError) => void,
): Promise<boolean> {
  try {
    await action();
    return true;
  } catch (e) {
    onFailure(toAppError(e));
    return false;
  }
}

/** A hint split into plain text and `code` spans, so a command like `keel models fetch` reads as one. */
export type HintPart = { text: string; code: boolean };

export function hintParts(hint: string): HintPart[] {
  const pieces = hint.split("`");
  if (pieces.length % 2 === 0) {
    // An odd number of backticks: the last one is unclosed, so it and what follows stay plain text.
    const tail = pieces.pop() ?? "";
    pieces[pieces.length - 1] += "`" + tail;
  }
  return pieces
    .map((text, i) => ({ text, code: i % 2 === 1 }))
    .filter((part) => part.text !== "");
}
