// Generated from Keel's Rust types by tests/integration/bindings.rs; do not edit.
// Regenerate with `UPDATE_BINDINGS=1 cargo nextest run -E 'test(bindings)'`.

export type GenerationSettings = { 
/**
 * The most tokens the model may generate in one reply.
 */
max_tokens: number, temperature: number, top_p: number | null, top_k: number | null, 
/**
 * 1.0 disables it.
 */
repeat_penalty: number, seed: number, };
export type StopReason = "eos" | "max_tokens" | "cancelled";
export type RunOutcome = { "status": "answered" } | { "status": "partial", reason: string, } | { "status": "stopped", reason: string, } | { "status": "failed", error: string, };
export type RunEvent = { "kind": "RunStarted", conversation_id: number, input: string, backend: string, model: string, max_steps: number, settings: GenerationSettings, } | { "kind": "ModelCalled", step: number, backend: string, prompt_tokens: number, 
/**
 * How many chat messages went into the window.
 */
messages: number, 
/**
 * How many of the oldest messages were left out to fit the window (whole messages, never cut).
 */
dropped_messages: number, } | { "kind": "ModelReplied", step: number, text: string, prompt_tokens: number, completion_tokens: number, duration_ms: number, ttft_ms: number | null, stop: StopReason, } | { "kind": "RunFinished", outcome: RunOutcome, answer: string | null, duration_ms: number, prompt_tokens: number, completion_tokens: number, };
export type StoredEvent = { run_id: number, seq: number, at_ms: number, event: RunEvent, };
export type TurnResult = { conversation_id: number, run_id: number, 
/**
 * What the user was shown (possibly partial; empty when nothing was produced).
 */
answer: string, outcome: RunOutcome, prompt_tokens: number, completion_tokens: number, duration_ms: number, ttft_ms: number | null, };
export type TurnEvent = { "type": "started", conversation_id: number, run_id: number, } | { "type": "token", text: string, } | { "type": "step", event: StoredEvent, } | { "type": "finished", result: TurnResult, };
export type Role = "system" | "user" | "assistant";
export type Message = { id: number, conversation_id: number, role: Role, content: string, 
/**
 * The run that produced an assistant message, or that a user message started.
 */
run_id: number | null, 
/**
 * How that run ended (or `running`), so a reopened conversation shows a stopped or partial answer as such.
 */
run_status: RunStatus | null, created_ms: number, };
export type ConversationSummary = { id: number, title: string, created_ms: number, updated_ms: number, message_count: number, };
export type ConversationDetail = { conversation: ConversationSummary, messages: Array<Message>, };
export type RunStatus = "running" | "answered" | "partial" | "stopped" | "failed";
export type RunSummary = { id: number, conversation_id: number, status: RunStatus, input: string, started_ms: number, finished_ms: number | null, prompt_tokens: number, completion_tokens: number, };
export type RunDetail = { run: RunSummary, events: Array<StoredEvent>, };
export type ModelState = "missing" | "corrupt" | "not_loaded" | "loading" | "ready" | "error";
export type ModelStatus = { state: ModelState, model_id: string, file: string, message: string, hint: string | null, };
export type LoadProgress = { stage: string, done: number, total: number, };
export type AppStatus = { data_dir: string, model: ModelStatus, };
export type ErrorKind = "invalid_input" | "model_missing" | "model_corrupt" | "model_fetch" | "data_dir_read_only" | "disk_full" | "store" | "backend" | "not_found" | "internal";
export type AppError = { kind: ErrorKind, message: string, hint: string | null, };
