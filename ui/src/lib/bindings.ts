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
export type RunEvent = { "kind": "RunStarted", conversation_id: number, input: string, backend: string, model: string, max_steps: number, settings: GenerationSettings, } | { "kind": "MemorySaved", item_id: number, memory_kind: MemoryKind, text: string, provenance: string, } | { "kind": "MemoryRetrieved", query: string, threshold: number, token_budget: number, tokens_used: number, duration_ms: number, candidates: Array<RecordedCandidate>, } | { "kind": "MemoryUnavailable", reason: string, } | { "kind": "ModelCalled", step: number, backend: string, prompt_tokens: number, 
/**
 * How many chat messages went into the window.
 */
messages: number, 
/**
 * How many of the oldest messages were left out to fit the window (whole messages, never cut).
 */
dropped_messages: number, 
/**
 * Memory items in the window's memory section (0: the window has no memory section).
 */
memory_items: number, } | { "kind": "ModelReplied", step: number, text: string, prompt_tokens: number, completion_tokens: number, duration_ms: number, ttft_ms: number | null, stop: StopReason, } | { "kind": "RunFinished", outcome: RunOutcome, answer: string | null, duration_ms: number, prompt_tokens: number, completion_tokens: number, };
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
export type MemoryKind = "fact" | "preference" | "note" | "episode" | "document_chunk";
export type MemoryItem = { id: number, kind: MemoryKind, text: string, 
/**
 * Where it came from: `chat`, the path of an imported file, `cli`, `desktop`, `import`.
 */
source: string, 
/**
 * Who vouches for it: `user` (typed by the user), `document`, `assistant`, `tool`, `web`.
 */
provenance: string, pinned: boolean, created_ms: number, updated_ms: number, deleted: boolean, document_id: number | null, embedding_model: string | null, };
export type MemoryQuery = { kind: MemoryKind | null, source: string | null, include_deleted: boolean, offset: number, limit: number, };
export type MemoryPage = { items: Array<MemoryItem>, total: number, offset: number, };
export type CandidateDecision = "kept" | "below_threshold" | "redundant" | "over_budget" | "over_limit";
export type RetrievalCandidate = { item: MemoryItem, bm25: number | null, bm25_rank: number | null, cosine: number, vector_rank: number | null, fused: number, tokens: number, decision: CandidateDecision, reason: string, };
export type Retrieval = { query: string, limit: number, threshold: number, token_budget: number, tokens_used: number, duration_ms: number, 
/**
 * The kept candidates, in the order they go into the context.
 */
hits: Array<RetrievalCandidate>, 
/**
 * Every candidate considered, kept ones included.
 */
candidates: Array<RetrievalCandidate>, };
export type RecordedCandidate = { item_id: number, kind: MemoryKind, source: string, 
/**
 * Up to 200 characters of the item's text.
 */
text: string, bm25: number | null, bm25_rank: number | null, cosine: number, vector_rank: number | null, fused: number, tokens: number, decision: CandidateDecision, reason: string, };
export type ImportProgress = { stage: string, file: string | null, files_done: number, files_total: number, chunks_done: number, chunks_total: number, };
export type ImportError = { path: string, message: string, };
export type ImportReport = { files_seen: number, documents_added: number, 
/**
 * Documents whose content was already imported (same sha256).
 */
documents_skipped: number, chunks_added: number, cancelled: boolean, errors: Array<ImportError>, };
