// Builders the lib tests share, so that each test writes out only what it is about: a backend as the core lists
// it, a recorded retrieval candidate and retrieval, a run's start, a run's events as the store keeps them, an
// approval a run waits on, and a promise the test settles by hand. Each builds a typical value; a patch changes it.

import type { BackendView, RecordedCandidate, RunEvent, StoredEvent, UserRequest } from "./bindings";

/** A remote backend as `list_backends` shows it. */
export function backendView(name: string, patch: Partial<BackendView> = {}): BackendView {
  return {
    name,
    kind: "remote",
    base_url: "http://127.0.0.1:8080/v1",
    model: "smollm2",
    key: "not_set",
    key_message: null,
    is_default: false,
    timeout_secs: 60,
    max_retries: 2,
    fallback: [],
    context_window: 4096,
    ...patch,
  };
}

/** The built-in local backend, the default. */
export const localBackend = backendView("local", {
  kind: "local",
  base_url: null,
  key: "not_needed",
  is_default: true,
  model: "SmolLM2-135M",
});

/** A candidate of a run's memory retrieval, as the run recorded it. */
export function recordedCandidate(
  item_id: number,
  decision: RecordedCandidate["decision"],
  patch: Partial<RecordedCandidate> = {},
): RecordedCandidate {
  return {
    item_id,
    kind: "fact",
    source: "chat",
    provenance: "user",
    text: `memory ${item_id}`,
    bm25: 3.2,
    bm25_rank: 1,
    cosine: 0.61,
    vector_rank: 2,
    fused: 0.03,
    tokens: 12,
    decision,
    reason: `because ${decision}`,
    ...patch,
  };
}

export type RunStartedEvent = Extract<RunEvent, { kind: "RunStarted" }>;

/** The first event of a chat run on the scripted backend; `patch` makes it another. */
export function runStarted(input: string, patch: Partial<RunStartedEvent> = {}): RunStartedEvent {
  return {
    kind: "RunStarted",
    conversation_id: 5,
    input,
    backend: "scripted",
    members: ["scripted"],
    model: "script",
    max_steps: 8,
    settings: { max_tokens: 64, temperature: 0.7, top_p: null, top_k: null, repeat_penalty: 1.1, seed: 1 },
    mode: "chat",
    limits: null,
    tools: [],
    auto_approve: [],
    ...patch,
  };
}

/** A run's memory retrieval of "what bread do I bake?", as the run recorded it, with these candidates. */
export function memoryRetrieved(candidates: RecordedCandidate[]): Extract<RunEvent, { kind: "MemoryRetrieved" }> {
  return {
    kind: "MemoryRetrieved",
    query: "what bread do I bake?",
    threshold: 0.35,
    token_budget: 1_024,
    tokens_used: 24,
    duration_ms: 18,
    candidates,
  };
}

/** A run's events as the store keeps them: numbered in order, a millisecond apart. */
export function stored(events: RunEvent[], run_id = 3): StoredEvent[] {
  return events.map((event, seq) => ({ run_id, seq, at_ms: 1_000 + seq, event }));
}

/** What run 9 waits on when its model asks to write a note: the user's approval. */
export const writeApproval: Extract<UserRequest, { type: "approval" }> = {
  type: "approval",
  run_id: 9,
  call_id: "c1",
  tool: "files_write",
  arguments: { path: "notes/todo.txt", content: "buy milk" },
  effect: "write",
  reason: "files_write can change things (Write); the user decides",
};

/** A promise with its resolve and reject, to settle when the test says. */
export function deferred<T>() {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
