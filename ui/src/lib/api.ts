// Typed wrappers around the desktop shell's commands (src-tauri/src/commands.rs). This is the only module
// that calls `invoke`; argument names are camelCase here and snake_case on the Rust side (Tauri maps them).
// Every wrapper rejects with an `AppError`, never with a raw value.

import { Channel, invoke, isTauri } from "@tauri-apps/api/core";
import type {
  AppStatus,
  ConversationDetail,
  ConversationSummary,
  LoadProgress,
  ModelStatus,
  RunDetail,
  RunSummary,
  TurnEvent,
  TurnResult,
} from "./bindings";
import { toAppError } from "./errors";

function requireShell(): void {
  if (!isTauri()) {
    throw {
      kind: "no_shell",
      message: "This page is not running inside the Keel desktop app, so it cannot reach the core.",
      hint: "Start the desktop app (the keel-desktop binary) instead of opening the page in a browser.",
    };
  }
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    requireShell();
    return await invoke<T>(command, args);
  } catch (e) {
    throw toAppError(e);
  }
}

/** A channel whose handler is set before it is handed to the core, so no message is missed. */
function channel<T>(onMessage: (message: T) => void): Channel<T> {
  requireShell();
  const ch = new Channel<T>();
  ch.onmessage = onMessage;
  return ch;
}

export function appStatus(): Promise<AppStatus> {
  return call("app_status");
}

export async function loadModel(onProgress: (progress: LoadProgress) => void): Promise<ModelStatus> {
  try {
    return await call("load_model", { onProgress: channel(onProgress) });
  } catch (e) {
    throw toAppError(e);
  }
}

export function listConversations(): Promise<ConversationSummary[]> {
  return call("list_conversations");
}

export function getConversation(id: number): Promise<ConversationDetail> {
  return call("get_conversation", { id });
}

export async function sendMessage(
  conversationId: number | null,
  text: string,
  onEvent: (event: TurnEvent) => void,
): Promise<TurnResult> {
  try {
    return await call("send_message", { conversationId, text, onEvent: channel(onEvent) });
  } catch (e) {
    throw toAppError(e);
  }
}

export function cancelRun(runId: number): Promise<boolean> {
  return call("cancel_run", { runId });
}

export function getRun(runId: number): Promise<RunDetail> {
  return call("get_run", { runId });
}

export function listRuns(limit: number): Promise<RunSummary[]> {
  return call("list_runs", { limit });
}
