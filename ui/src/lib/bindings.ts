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
export type RunOutcome = { "status": "answered" } | { "status": "partial", reason: string, } | { "status": "stopped", reason: string, } | { "status": "failed", error: string, kind: FailureKind, };
export type FailureKind = "backend" | "crash" | "tools" | "log";
export type Limit = "steps" | "tool calls" | "tokens" | "wall time (ms)" | "replans";
export type RunEvent = { "kind": "RunStarted", conversation_id: number, input: string, 
/**
 * The backend's name as shown (a fallback chain's members joined by " → ").
 */
backend: string, 
/**
 * The backends tried in order (the chain's members; absent in older logs): a resumed run starts again
 * on the first.
 */
members: Array<string>, model: string, max_steps: number, settings: GenerationSettings, 
/**
 * How the run works (chat, ReAct, plan-then-execute); absent in logs from before tools: chat.
 */
mode: RunMode, 
/**
 * Every bound of the run; absent in older logs, where only `max_steps` applied.
 */
limits: Limits | null, 
/**
 * The tools offered to the model.
 */
tools: Array<string>, 
/**
 * Tools the user's policy lets run without asking (side-effecting ones otherwise ask).
 */
auto_approve: Array<string>, } | { "kind": "InputChecked", origin: string, source: Source, verdict: Verdict, score: number, reasons: Array<Reason>, action: GuardAction, explanation: string, } | { "kind": "MemorySaved", item_id: number, memory_kind: MemoryKind, text: string, provenance: string, } | { "kind": "MemoryRetrieved", query: string, threshold: number, token_budget: number, tokens_used: number, duration_ms: number, candidates: Array<RecordedCandidate>, } | { "kind": "MemoryUnavailable", reason: string, } | { "kind": "ModelCalled", step: number, backend: string, prompt_tokens: number, 
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
memory_items: number, } | { "kind": "ModelReplied", step: number, text: string, prompt_tokens: number, 
/**
 * Prompt tokens whose KV state was reused from an earlier call rather than computed (the embedded
 * engine's prefix cache); absent in logs from before it.
 */
cached_prompt_tokens?: number, completion_tokens: number, duration_ms: number, ttft_ms: number | null, stop: StopReason, 
/**
 * The backend that produced the reply (a fallback chain's member); absent in logs from before chains.
 */
answered_by: string | null, 
/**
 * The chain's backends that failed before it, and why.
 */
fell_back: Array<BackendFailure>, } | { "kind": "ActionParsed", step: number, action: Action, } | { "kind": "ActionRejected", step: number, error: string, reprompt: boolean, } | { "kind": "PolicyChecked", call_id: string, tool: string, effect: Effect, decision: PolicyDecision, reason: string, } | { "kind": "ApprovalRequested", call_id: string, tool: string, arguments: unknown, effect: Effect, reason: string, } | { "kind": "UserAsked", question: string, } | { "kind": "UserAnswered", answer: UserAnswer, } | { "kind": "ToolCalled", call_id: string, tool: string, arguments: unknown, attempt: number, effect: Effect, idempotent: boolean, 
/**
 * Whether what the tool returns is untrusted text (it reads files or memory, fetches, or is an MCP
 * tool); absent in older logs, where only `External` tools counted.
 */
untrusted_output: boolean, } | { "kind": "ToolReturned", call_id: string, tool: string, attempt: number, duration_ms: number, result: ToolOutcome, } | { "kind": "RetryScheduled", call_id: string, tool: string, next_attempt: number, delay_ms: number, reason: string, } | { "kind": "ErrorReported", call_id: string, tool: string, error: ToolError, } | { "kind": "AlternativeChosen", call_id: string, from: string, to: string, reason: string, } | { "kind": "LoopDetected", call_id: string, tool: string, arguments: unknown, times: number, } | { "kind": "Verified", check: string, passed: boolean, detail: string, } | { "kind": "Routed", tool: string, arguments: unknown, confidence: number, reason: string, answer?: string, then?: Then, } | { "kind": "LimitReached", limit: Limit, used: number, max: number, } | { "kind": "RunCancelled", reason: string, } | { "kind": "RunInterrupted", reason: string, } | { "kind": "RunResumed", reason: string, } | { "kind": "OutcomeUnknown", call_id: string, tool: string, } | { "kind": "RunFinished", outcome: RunOutcome, answer: string | null, duration_ms: number, prompt_tokens: number, completion_tokens: number, };
export type Action = { "type": "answer", text: string, } | { "type": "tool_call", call_id: string, tool: string, arguments: unknown, } | { "type": "ask", question: string, } | { "type": "plan", steps: Array<PlanStep>, };
export type PlanStep = { "type": "tool", tool: string, arguments: unknown, } | { "type": "answer" };
export type Then = { "step": "sum_column", words: Array<string>, };
export type PolicyDecision = "allow" | "needs_approval" | "refuse";
export type UserAnswer = { "type": "approve", call_id: string, } | { "type": "deny", call_id: string, note: string | null, } | { "type": "reply", text: string, };
export type ToolOutcome = { "status": "ok", value: unknown, } | { "status": "err", error: ToolError, };
export type ToolError = { "class": "unknown_tool", name: string, } | { "class": "invalid_arguments", tool: string, errors: Array<string>, } | { "class": "schema_drift", tool: string, errors: Array<string>, } | { "class": "timeout", tool: string, after_ms: number, } | { "class": "transient", tool: string, message: string, 
/**
 * The server's `Retry-After`, when it gave one.
 */
retry_after_ms: number | null, } | { "class": "refused", tool: string, reason: string, } | { "class": "failed", tool: string, message: string, } | { "class": "cancelled", tool: string, };
export type Effect = "pure" | "read" | "write" | "external";
export type Origin = "keel" | "document" | "memory" | "web" | "external";
export type ToolSpec = { name: string, description: string, 
/**
 * JSON Schema the arguments must satisfy.
 */
input_schema: unknown, 
/**
 * JSON Schema the result must satisfy.
 */
output_schema: unknown, effect: Effect, 
/**
 * The longest one call may take.
 */
timeout_ms: number, 
/**
 * True when calling twice with the same arguments has the same effect as once (safe to retry after a crash).
 */
idempotent: boolean, 
/**
 * Tools with the same capability can stand in for each other (an alternative when one keeps failing).
 */
capability: string | null, 
/**
 * Where its result comes from (whether it is untrusted text). Missing in a stored spec: external.
 */
origin: Origin, };
export type RetryPolicy = { 
/**
 * Attempts in all, the first included (1 means no retry).
 */
max_attempts: number, base_ms: number, 
/**
 * No computed delay exceeds this.
 */
cap_ms: number, 
/**
 * A server's `Retry-After` longer than this is not waited for: the call counts as failed.
 */
max_retry_after_ms: number, };
export type Limits = { 
/**
 * The most model calls one run may make.
 */
max_steps: number, 
/**
 * The most tool call attempts (retries included).
 */
max_tool_calls: number, 
/**
 * The most prompt + completion tokens over all model calls.
 */
max_tokens: number, 
/**
 * The most wall-clock time the run may take while active (time spent waiting for the user excluded).
 */
max_wall_ms: number, 
/**
 * No tool call may take longer than this, whatever its own timeout.
 */
tool_timeout_ms: number, 
/**
 * Plan-then-execute: how many times a failed plan may be replaced.
 */
max_replans: number, 
/**
 * Loop detection: how many times the model may ask for a call it already made (same tool, same arguments)
 * before the run stops.
 */
max_repeats: number, retry: RetryPolicy, };
export type RunMode = "chat" | "react" | "plan";
export type RunOptions = { 
/**
 * `None`: chosen from the message (a task that needs tools gets ReAct, anything else is chat).
 */
mode: RunMode | null, limits: Limits, 
/**
 * Side-effecting tools the user lets run without asking.
 */
auto_approve: Array<string>, 
/**
 * The backend profile the run uses (`None`: the default backend).
 */
backend?: string, };
export type UserRequest = { "type": "approval", run_id: number, call_id: string, tool: string, arguments: unknown, effect: Effect, reason: string, } | { "type": "question", run_id: number, question: string, };
export type StoredEvent = { run_id: number, seq: number, at_ms: number, event: RunEvent, };
export type TurnResult = { conversation_id: number, run_id: number, 
/**
 * What the user was shown (possibly partial; empty when nothing was produced).
 */
answer: string, 
/**
 * How the run ended; `None` while it waits for the user.
 */
outcome: RunOutcome | null, 
/**
 * What the run waits for, when it is paused.
 */
waiting: UserRequest | null, prompt_tokens: number, completion_tokens: number, duration_ms: number, ttft_ms: number | null, };
export type TurnEvent = { "type": "started", conversation_id: number, run_id: number, } | { "type": "token", text: string, } | { "type": "step", event: StoredEvent, } | { "type": "paused", request: UserRequest, } | { "type": "finished", result: TurnResult, };
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
export type ConversationSummary = { id: number, title: string, created_ms: number, updated_ms: number, message_count: number, 
/**
 * The backend profile its last turn asked for; `None`: the default backend.
 */
backend: string | null, };
export type ConversationDetail = { conversation: ConversationSummary, messages: Array<Message>, };
export type RunStatus = "running" | "awaiting_user" | "interrupted" | "answered" | "partial" | "stopped" | "failed";
export type RunSummary = { id: number, conversation_id: number, status: RunStatus, input: string, started_ms: number, finished_ms: number | null, prompt_tokens: number, completion_tokens: number, };
export type RunDetail = { run: RunSummary, events: Array<StoredEvent>, };
export type ModelState = "missing" | "corrupt" | "not_loaded" | "loading" | "ready" | "error";
export type ModelStatus = { state: ModelState, model_id: string, file: string, message: string, hint: string | null, };
export type LoadProgress = { stage: string, done: number, total: number, };
export type AppStatus = { data_dir: string, model: ModelStatus, };
export type ErrorKind = "invalid_input" | "model_missing" | "model_corrupt" | "model_fetch" | "data_dir_read_only" | "disk_full" | "store" | "backend" | "keyring" | "not_found" | "tool" | "internal";
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
export type CandidateDecision = "kept" | "below_threshold" | "redundant" | "over_budget" | "over_limit" | "quarantined";
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
 * Who the item's text came from (`user`, `assistant`, `document`, …); absent in older logs: `user`.
 */
provenance: string, 
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
documents_skipped: number, chunks_added: number, cancelled: boolean, errors: Array<ImportError>, 
/**
 * Chunks committed (found by their words) whose embeddings are still to be computed, after a cancel:
 * the next import computes them (or the next start, when there are at most [`OPEN_EMBED_LIMIT`]).
 */
chunks_pending: number, };
export type Source = "user" | "system" | "document" | "tool" | "memory" | "web";
export type Verdict = "allow" | "flag" | "block";
export type Reason = { rule: string, 
/**
 * The matched words (cut to 80 characters), or the nearest exemplar's similarity.
 */
evidence: string, weight: number, };
export type GuardAction = "allow" | "warn" | "quarantine" | "block";
export type BackendFailure = { backend: string, error: string, };
export type BackendKind = "local" | "remote" | "scripted";
export type KeyState = "set" | "not_set" | "unavailable" | "not_needed";
export type BackendProfile = { name: string, 
/**
 * The API root, e.g. `http://127.0.0.1:8080/v1`.
 */
base_url: string, model: string, 
/**
 * Connect and read timeout.
 */
timeout_secs: number, 
/**
 * Retries of a request that failed in a retryable way (connection, 429, 5xx).
 */
max_retries: number, 
/**
 * Backends tried in order when this one fails.
 */
fallback: Array<string>, 
/**
 * The server model's window in tokens (the API does not say); 4096 when absent.
 */
context_window?: number, };
export type BackendView = { name: string, kind: BackendKind, base_url: string | null, model: string, key: KeyState, 
/**
 * Why the key state is unavailable, and what to do.
 */
key_message: string | null, is_default: boolean, timeout_secs: number, max_retries: number, fallback: Array<string>, context_window: number, };
export type BackendTest = { name: string, ok: boolean, latency_ms: number, models: Array<string>, model_found: boolean | null, message: string, hint: string | null, };
export type ChecksumState = "verified" | "mismatch" | "unpinned" | "unchecked";
export type ModelInfo = { 
/**
 * The file name, which is also the name `delete` takes.
 */
name: string, path: string, size_bytes: number, 
/**
 * `general.architecture`, e.g. `llama`.
 */
architecture: string, 
/**
 * The weights' quantisation, e.g. `Q4_1`: the most common type, by element count, of the 2-D tensors
 * (the weight matrices; norms and biases stay F32 in every quantisation), else `general.file_type`'s name.
 */
quantisation: string, 
/**
 * `{architecture}.context_length`, in tokens.
 */
context_length: number | null, 
/**
 * The sum of the tensors' element counts.
 */
parameters: number | null, gguf_version: number, checksum: ChecksumState, 
/**
 * A model of the manifest (fetched by `keel models fetch`), not one the user added.
 */
builtin: boolean, 
/**
 * The sha256 the file is checked against: the manifest's pin, or the one recorded when the file was added.
 */
sha256: string | null, 
/**
 * The model the `local` backend runs (set by the app, which knows the choice; false here).
 */
in_use: boolean, };
export type BrokenModel = { name: string, path: string, 
/**
 * What is wrong and the fix, in one line.
 */
error: string, };
export type ModelList = { models: Array<ModelInfo>, broken: Array<BrokenModel>, };
export type DownloadProgress = { 
/**
 * The model's file name.
 */
name: string, 
/**
 * Bytes of the file on disk so far, including those an earlier attempt kept.
 */
downloaded: number, 
/**
 * The file's size, when the server said it.
 */
total: number | null, 
/**
 * Where this attempt resumed (0 when it started from the beginning).
 */
resumed_from: number, };
export type TestCaseRequest = { run_id: number, 
/**
 * Text a right answer contains (each item).
 */
answer_contains: Array<string>, 
/**
 * The tool the run should have used.
 */
expect_tool?: string, note?: string, };
export type SavedTestCase = { id: string, 
/**
 * The suite file, and the task's line in it.
 */
path: string, line: number, task: unknown, };
export type EvalProgress = { stage: string, done: number, total: number, };
export type TaskError = { 
/**
 * 1-based line number in the file.
 */
line: number, 
/**
 * The field at fault, when one is (`""` for the line as a whole).
 */
field: string, message: string, };
export type Span = { run_id: number, 
/**
 * `model` or `tool NAME`.
 */
label: string, start_ms: number, end_ms: number, ok: boolean, };
export type Attempt = { passed: boolean, 
/**
 * Why each failed expectation failed.
 */
failures: Array<string>, run_ids: number[], answer: string, tools_called: Array<string>, 
/**
 * Tool calls whose arguments reached the tool (valid against its schema) and those the contract refused.
 */
valid_calls: number, rejected_calls: number, turn_ms: number[], tokens: number, 
/**
 * A failure of the harness itself (the data dir, the backend), not of the task.
 */
error: string | null, 
/**
 * For an attacked task: whether the attacker got what they wanted.
 */
attack_succeeded: boolean | null, 
/**
 * For a task with `expect_no_fabrication`: whether the answer invented the failed tool's value.
 */
fabricated: boolean | null, 
/**
 * What Keel did about failures and how the run ended (see `judge::Observed::path`).
 */
path: Array<string>, 
/**
 * The runs' model and tool calls on a time line.
 */
spans: Array<Span>, 
/**
 * The runs themselves, with `Options::keep_runs` (else empty and left out).
 */
runs?: Array<RunDetail>, };
export type TaskReport = { id: string, category: string, line: number, attempts: Array<Attempt>, };
export type Totals = { category: string, tasks: number, attempts: number, 
/**
 * Passed attempts over all attempts.
 */
success: number, 
/**
 * Tasks whose every attempt passed, over tasks.
 */
pass_hat_k: number, 
/**
 * Tasks with at least one passed attempt, over tasks.
 */
pass_at_k: number, 
/**
 * Of the attempts whose task names the tool to use, those that used it.
 */
tool_selection_accuracy: number | null, 
/**
 * Calls valid against their schema over all calls.
 */
argument_validity: number | null, 
/**
 * Of the attempts at tasks with a fault, those that passed.
 */
recovery_rate: number | null, 
/**
 * Of the attempts at tasks with `expect_no_fabrication`, those whose answer invented the failed tool's value.
 */
fabrication_rate: number | null, latency_p50_ms: number | null, latency_p95_ms: number | null, 
/**
 * The same per step: each model call and each tool call.
 */
step_p50_ms: number | null, step_p95_ms: number | null, tokens_per_task: number, 
/**
 * Attempts where code routed the call (`Routed` in their path), and their turn latency.
 */
routed_attempts: number, routed_p50_ms: number | null, routed_p95_ms: number | null, };
export type AttackTotals = { 
/**
 * Attacked tasks (each paired with its benign task).
 */
pairs: number, 
/**
 * Passed attempts at the benign tasks paired with an attack.
 */
utility_without_attack: number, 
/**
 * Passed attempts at the attacked tasks (the user's task done despite the attack).
 */
utility_under_attack: number, 
/**
 * Attempts at attacked tasks in which the attacker's side effect or text happened.
 */
targeted_attack_success: number, };
export type AgentReport = { tasks_file: string, backend: string, repeat: number, 
/**
 * Lines that are not valid tasks; the others ran.
 */
errors: Array<TaskError>, tasks: Array<TaskReport>, categories: Array<Totals>, total: Totals, 
/**
 * AgentDojo's three numbers over the attacked tasks and their benign pairs (`None`: no attacked task ran).
 */
attacks: AttackTotals | null, };
