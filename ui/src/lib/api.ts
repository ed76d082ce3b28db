// Typed wrappers around the desktop shell's commands (src-tauri/src/commands.rs). This is the only module
// that calls `invoke`; argument names are camelCase here and snake_case on the Rust side (Tauri maps them).
// Every wrapper rejects with an `AppError`, never with a raw value.

import { Channel, invoke, isTauri } from "@tauri-apps/api/core";
import type {
  AgentReport,
  AppStatus,
  EvalProgress,
  SavedTestCase,
  TestCaseRequest,
  BackendProfile,
  BackendTest,
  BackendView,
  ConversationDetail,
  ConversationSummary,
  DownloadProgress,
  ImportProgress,
  ImportReport,
  LoadProgress,
  MemoryItem,
  MemoryKind,
  MemoryPage,
  MemoryQuery,
  ModelInfo,
  ModelList,
  ModelStatus,
  Retrieval,
  RunDetail,
  RunOptions,
  RunSummary,
  ToolSpec,
  TurnEvent,
  TurnResult,
  UserAnswer,
  UserRequest,
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

/**
 * Invokes `command`. Arguments that hold a channel are given as a function, so that the channel is made inside
 * the same check and error conversion as the call (making one needs the shell too).
 */
async function call<T>(command: string, args?: Record<string, unknown> | (() => Record<string, unknown>)): Promise<T> {
  try {
    requireShell();
    return await invoke<T>(command, typeof args === "function" ? args() : args);
  } catch (e) {
    throw toAppError(e);
  }
}

/** A channel whose handler is set before it is handed to the core, so no message is missed. */
function channel<T>(onMessage: (message: T) => void): Channel<T> {
  const ch = new Channel<T>();
  ch.onmessage = onMessage;
  return ch;
}

/** The app's data folder and the local model's status (which `loadModel` then loads). */
export function status(): Promise<AppStatus> {
  return call("status");
}

export function loadModel(onProgress: (progress: LoadProgress) => void): Promise<ModelStatus> {
  return call("load_model", () => ({ onProgress: channel(onProgress) }));
}

export function listConversations(): Promise<ConversationSummary[]> {
  return call("list_conversations");
}

export function getConversation(id: number): Promise<ConversationDetail> {
  return call("get_conversation", { id });
}

/**
 * Runs one turn. `options` null lets the core choose the run's mode from the message (a task that needs tools
 * gets ReAct) with the default limits, approval policy and backend; every field of `options` has a default in
 * the core too, so `{ backend }` alone picks the backend and leaves the rest as they would be. The result has
 * `waiting` set (and no outcome) when the run paused for the user; `answerRun` continues it.
 */
export function sendMessage(
  conversationId: number | null,
  text: string,
  onEvent: (event: TurnEvent) => void,
  options: Partial<RunOptions> | null = null,
): Promise<TurnResult> {
  return call("send_message", () => ({ conversationId, text, options, onEvent: channel(onEvent) }));
}

/** Approves or denies the call a paused run waits on, or replies to its question, and streams the rest of the run. */
export function answerRun(runId: number, answer: UserAnswer, onEvent: (event: TurnEvent) => void): Promise<TurnResult> {
  return call("answer_run", () => ({ runId, answer, onEvent: channel(onEvent) }));
}

/** Continues, from its log, a run Keel stopped in the middle of (status `interrupted`). */
export function resumeRun(runId: number, onEvent: (event: TurnEvent) => void): Promise<TurnResult> {
  return call("resume_run", () => ({ runId, onEvent: channel(onEvent) }));
}

/** What a paused run waits for (asked again after a restart), or null when it waits for nothing. */
export function runWaiting(runId: number): Promise<UserRequest | null> {
  return call("run_waiting", { runId });
}

/** The tools runs are offered, with their schemas and effects. */
export function listTools(): Promise<ToolSpec[]> {
  return call("list_tools");
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

// Memory (issue 3). Items are soft-deleted: `deleteMemory` marks one deleted and `undeleteMemory` is its undo.

/** One page of the items matching the query's filters, with the count of all of them. */
export function listMemory(query: MemoryQuery): Promise<MemoryPage> {
  return call("list_memory", { query });
}

/** The distinct sources of the stored items, for the source filter. */
export function listMemorySources(): Promise<string[]> {
  return call("list_memory_sources");
}

export function searchMemory(query: string, limit: number): Promise<Retrieval> {
  return call("search_memory", { query, limit });
}

export function addMemory(kind: MemoryKind, text: string): Promise<MemoryItem> {
  return call("add_memory", { kind, text });
}

/** Replaces an item's text; the core re-embeds and re-indexes that item only. */
export function editMemory(id: number, text: string): Promise<MemoryItem> {
  return call("edit_memory", { id, text });
}

export function pinMemory(id: number, pinned: boolean): Promise<MemoryItem> {
  return call("pin_memory", { id, pinned });
}

export function deleteMemory(id: number): Promise<MemoryItem> {
  return call("delete_memory", { id });
}

export function undeleteMemory(id: number): Promise<MemoryItem> {
  return call("undelete_memory", { id });
}

/** Imports files and folders as documents; resolves with the report, also when cancelled. */
export function importDocuments(paths: string[], onProgress: (progress: ImportProgress) => void): Promise<ImportReport> {
  return call("import_documents", () => ({ paths, onProgress: channel(onProgress) }));
}

/** Asks the import under way to stop (its report then says `cancelled`); false when none was running. */
export function cancelImport(): Promise<boolean> {
  return call("cancel_import");
}

/** The runs whose retrieval used the item. */
export function memoryItemRuns(id: number): Promise<RunSummary[]> {
  return call("memory_item_runs", { id });
}

/** Whether a short summary of each conversation (an episode) is saved to memory after every answer. */
export function memoryEpisodes(): Promise<boolean> {
  return call("memory_episodes");
}

export function setMemoryEpisodes(on: boolean): Promise<boolean> {
  return call("set_memory_episodes", { on });
}

// Models and backends (the backends issue). A backend is a profile runs can use: the embedded local model, or a
// remote OpenAI-compatible server. Its key goes to the OS keyring through `setKey` and never comes back: the
// views say only whether one is set.

/** Every backend, the built-in `local` one included. */
export function listBackends(): Promise<BackendView[]> {
  return call("list_backends");
}

/** Adds a remote profile, or replaces the one with the same name. */
export function saveBackend(profile: BackendProfile): Promise<BackendView> {
  return call("save_backend", { profile });
}

export function removeBackend(name: string): Promise<void> {
  return call("remove_backend", { name });
}

/** The backend runs use when they name none. */
export function setDefaultBackend(name: string): Promise<void> {
  return call("set_default_backend", { name });
}

/** Connects, lists the server's models and checks that the profile's model is among them. */
export function testBackend(name: string): Promise<BackendTest> {
  return call("test_backend", { name });
}

/** Stores the key in the OS keyring. The caller must not keep `key` once this returns. */
export function setKey(name: string, key: string): Promise<BackendView> {
  return call("set_key", { name, key });
}

export function removeKey(name: string): Promise<BackendView> {
  return call("remove_key", { name });
}

/** The model files Keel knows, and the ones it could not read. */
export function listModels(): Promise<ModelList> {
  return call("list_models");
}

/** Adds a GGUF file already on disk. */
export function addModel(path: string): Promise<ModelInfo> {
  return call("add_model", { path });
}

/**
 * Downloads a GGUF file, resuming a part left by an earlier attempt; `sha256`, when given, is checked at the end.
 * Rejects when cancelled (`cancelDownload`).
 */
export function downloadModel(
  url: string,
  sha256: string | null,
  name: string | null,
  onProgress: (progress: DownloadProgress) => void,
): Promise<ModelInfo> {
  return call("download_model", () => ({ url, sha256, name, onProgress: channel(onProgress) }));
}

export function cancelDownload(): Promise<void> {
  return call("cancel_download");
}

/** Makes the local backend run this model (it loads on the next turn that needs it). */
export function useModel(name: string): Promise<ModelStatus> {
  return call("use_model", { name });
}

export function deleteModel(name: string): Promise<void> {
  return call("delete_model", { name });
}

/** Appends a task made from a run (what a right answer contains, or the tool it should use) to the user's suite. */
export function saveTestCase(request: TestCaseRequest): Promise<SavedTestCase> {
  return call("save_test_case", { request });
}

/** Runs a suite (`"mine"`: the user's own test cases); the report keeps each attempt's runs for the Inspector. */
export function evaluateTasks(suite: string, onProgress: (progress: EvalProgress) => void, repeat = 1): Promise<AgentReport> {
  return call("evaluate_tasks", () => ({ suite, repeat, onProgress: channel(onProgress) }));
}
