import { beforeEach, describe, expect, it, vi } from "vitest";
import type {
  ImportProgress,
  ImportReport,
  MemoryItem,
  MemoryPage,
  MemoryQuery,
  Retrieval,
  RetrievalCandidate,
} from "./bindings";
import { deferred } from "./fixtures";

// The store talks to the core only through ./api; `fake` below plays the core's side, over a list of items it
// makes up on demand, so that a list of 100,000 costs nothing to set up.
const core = vi.hoisted(() => ({
  listMemory: vi.fn(),
  listMemorySources: vi.fn(async () => ["chat", "/docs/bread.md"]),
  searchMemory: vi.fn(),
  addMemory: vi.fn(),
  editMemory: vi.fn(),
  pinMemory: vi.fn(),
  deleteMemory: vi.fn(),
  undeleteMemory: vi.fn(),
  importDocuments: vi.fn(),
  cancelImport: vi.fn(async () => true),
  memoryItemRuns: vi.fn(),
}));
vi.mock("./api", () => core);

const { MemoryStore, PAGE_SIZE } = await import("./memory.svelte");
const { finalProgress, parsePaths, progressBar, progressLabel } = await import("./documents.svelte");

function item(id: number, patch: Partial<MemoryItem> = {}): MemoryItem {
  return {
    id,
    kind: "note",
    text: `memory ${id}`,
    source: "chat",
    provenance: "user",
    pinned: false,
    created_ms: 1_700_000_000_000 + id,
    updated_ms: 1_700_000_000_000 + id,
    deleted: false,
    document_id: null,
    embedding_model: "all-MiniLM-L6-v2",
    ...patch,
  };
}

/** A core with `count` items, newest (highest id) first; `changed` items override the made-up ones. */
function fakeCore(count: number) {
  const changed = new Map<number, MemoryItem>();
  const get = (id: number) => changed.get(id) ?? item(id);
  const matching = (q: MemoryQuery): { total: number; ids: (from: number, to: number) => number[] } => {
    if (changed.size === 0 && q.kind === null && q.source === null) {
      // Nothing is filtered out: row i is item count - i, without a walk over all of them.
      return {
        total: count,
        ids: (from, to) => Array.from({ length: Math.max(0, Math.min(to, count) - from) }, (_, i) => count - from - i),
      };
    }
    const ids: number[] = [];
    for (let id = count; id >= 1; id -= 1) {
      const it = get(id);
      if (it.deleted && !q.include_deleted) continue;
      if (q.kind !== null && it.kind !== q.kind) continue;
      if (q.source !== null && it.source !== q.source) continue;
      ids.push(id);
    }
    return { total: ids.length, ids: (from, to) => ids.slice(from, to) };
  };
  core.listMemory.mockImplementation(async (q: MemoryQuery): Promise<MemoryPage> => {
    const { total, ids } = matching(q);
    return { items: ids(q.offset, q.offset + q.limit).map(get), total, offset: q.offset };
  });
  core.editMemory.mockImplementation(async (id: number, text: string) => {
    changed.set(id, { ...get(id), text, updated_ms: get(id).updated_ms + 1 });
    return get(id);
  });
  core.pinMemory.mockImplementation(async (id: number, pinned: boolean) => {
    changed.set(id, { ...get(id), pinned });
    return get(id);
  });
  core.deleteMemory.mockImplementation(async (id: number) => {
    changed.set(id, { ...get(id), deleted: true });
    return get(id);
  });
  core.undeleteMemory.mockImplementation(async (id: number) => {
    changed.set(id, { ...get(id), deleted: false });
    return get(id);
  });
  return { get };
}

/** A store over a core of `count` items, opened as the view opens it. */
async function opened(count: number) {
  fakeCore(count);
  const memory = new MemoryStore();
  await memory.open();
  return memory;
}

/** Lets every settled promise's continuations run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
}

beforeEach(() => {
  vi.clearAllMocks();
});

describe("the memory list", () => {
  it("reads the first page and the sources when opened", async () => {
    const memory = await opened(250);
    expect(memory.list.total).toBe(250);
    expect(memory.list.at(0)?.id).toBe(250);
    expect(memory.list.at(100)).toBeUndefined(); // Not on screen, so not read.
    expect(memory.sources).toEqual(["chat", "/docs/bread.md"]);
    expect(core.listMemory).toHaveBeenCalledWith({
      kind: null,
      source: null,
      include_deleted: false,
      offset: 0,
      limit: PAGE_SIZE,
    });
  });

  it("reads only the pages on screen, anywhere in 100,000 items", async () => {
    const memory = await opened(100_000);
    core.listMemory.mockClear();

    memory.list.show({ start: 54_990, end: 55_020 });
    await settle();
    expect(core.listMemory.mock.calls.map(([q]) => q.offset).sort()).toEqual([54_900, 55_000]);
    expect(memory.list.at(55_000)?.id).toBe(100_000 - 55_000);
    expect(memory.list.at(54_990)?.id).toBe(100_000 - 54_990);
  });

  it("skips the pages a fast scroll passed before their turn came", async () => {
    const memory = await opened(100_000);
    const answered = core.listMemory.getMockImplementation()!;
    const pending: { offset: number; answer: () => void }[] = [];
    core.listMemory.mockImplementation((q: MemoryQuery) => {
      const d = deferred<MemoryPage>();
      pending.push({ offset: q.offset, answer: () => void answered(q).then(d.resolve) });
      return d.promise;
    });

    // The scrollbar is dragged from the top to the bottom: three ranges before any page comes back.
    memory.list.show({ start: 1_000, end: 1_020 });
    memory.list.show({ start: 50_000, end: 50_020 });
    memory.list.show({ start: 99_980, end: 100_000 });
    expect(pending.map((p) => p.offset)).toEqual([1_000, 50_000]); // Two requests at most in flight.

    for (const p of pending.splice(0)) p.answer();
    await settle();
    expect(pending.map((p) => p.offset)).toEqual([99_900]); // Only the page now on screen is read next.
    pending[0]!.answer();
    await settle();
    expect(memory.list.at(99_999)?.id).toBe(1);
  });

  it("keeps a bounded number of pages however far the user scrolls", async () => {
    const memory = await opened(100_000);
    for (let start = 0; start < 100_000; start += 1_000) {
      memory.list.show({ start, end: start + 20 });
      await settle();
    }
    expect(memory.list.loadedPages.length).toBeLessThanOrEqual(40);
    expect(memory.list.loadedPages).toContain(990);
  });

  it("drops a page read under the old filters when they change", async () => {
    const memory = await opened(300);
    const answered = core.listMemory.getMockImplementation()!;
    const slow = deferred<void>();
    core.listMemory.mockImplementation(async (q: MemoryQuery) => {
      if (q.kind === null) await slow.promise;
      return q.kind === null ? answered(q) : { items: [item(7, { kind: "fact" })], total: 1, offset: 0 };
    });

    memory.list.show({ start: 100, end: 120 }); // An unfiltered read, still in flight...
    memory.setFilters({ kind: "fact" }); // ...when the filter changes.
    await settle();
    slow.resolve();
    await settle();

    expect(memory.list.total).toBe(1);
    expect(memory.list.at(0)?.id).toBe(7);
    expect(memory.list.at(100)).toBeUndefined();
    expect(core.listMemory).toHaveBeenLastCalledWith(expect.objectContaining({ kind: "fact", offset: 0 }));
  });

  it("passes every filter to the core and starts again from the top", async () => {
    const memory = await opened(10);
    const key = memory.listKey;
    memory.setFilters({ source: "/docs/bread.md", includeDeleted: true });
    await settle();
    expect(core.listMemory).toHaveBeenLastCalledWith({
      kind: null,
      source: "/docs/bread.md",
      include_deleted: true,
      offset: 0,
      limit: PAGE_SIZE,
    });
    expect(memory.listKey).toBe(key + 1);
  });

  it("stops reading after a failure and shows it as a typed error", async () => {
    core.listMemory.mockRejectedValue({ kind: "store", message: "The database is locked.", hint: null });
    const memory = new MemoryStore();
    await memory.open();
    expect(memory.list.error).toEqual({ kind: "store", message: "The database is locked.", hint: null });
    memory.list.show({ start: 0, end: 20 });
    expect(core.listMemory).toHaveBeenCalledTimes(1);
  });
});

describe("editing, pinning, deleting", () => {
  /** A store over five items, opened, that has just saved `draft` (or the unchanged text) as row `row`'s edit. */
  async function edited(draft: string | null, row = 0) {
    const memory = await opened(5);
    memory.startEdit(memory.list.at(row)!);
    if (draft !== null) memory.editing!.draft = draft;
    await memory.saveEdit();
    return memory;
  }

  it("saves an edit in place and closes the editor", async () => {
    const memory = await edited("  My dog is called Pixel and she is a beagle\n");
    expect(core.editMemory).toHaveBeenCalledWith(5, "My dog is called Pixel and she is a beagle");
    expect(memory.list.at(0)?.text).toBe("My dog is called Pixel and she is a beagle");
    expect(memory.editing).toBeNull();
    expect(core.listMemory).toHaveBeenCalledTimes(1); // Swapped in, not re-read.
  });

  it("does not ask the core to re-embed an unchanged text", async () => {
    const memory = await edited(null, 1);
    expect(core.editMemory).not.toHaveBeenCalled();
    expect(memory.editing).toBeNull();
  });

  it("keeps the editor and the draft when the core refuses the edit", async () => {
    const refusal = { kind: "invalid_input", message: "The text is too long.", hint: "Import it as a document." };
    core.editMemory.mockRejectedValueOnce(refusal);
    const memory = await edited("x".repeat(10));
    expect(memory.error).toEqual(refusal);
    expect(memory.editing).toEqual({ id: 5, draft: "x".repeat(10) });
  });

  it("refuses an empty text without a round trip", async () => {
    const memory = await edited("   ");
    expect(core.editMemory).not.toHaveBeenCalled();
    expect(memory.error?.kind).toBe("invalid_input");
  });

  it("toggles a pin", async () => {
    const memory = await opened(5);
    await memory.togglePin(memory.list.at(2)!);
    expect(core.pinMemory).toHaveBeenCalledWith(3, true);
    expect(memory.list.at(2)?.pinned).toBe(true);
    expect(core.listMemory).toHaveBeenCalledTimes(2); // Pinned items come first: the order may have changed.
  });

  it("deletes, offers the undo, and restores", async () => {
    const memory = await opened(5);
    await memory.remove(memory.list.at(0)!);
    expect(core.deleteMemory).toHaveBeenCalledWith(5);
    expect(memory.undo?.id).toBe(5);
    expect(memory.list.total).toBe(4);
    expect(memory.list.at(0)?.id).toBe(4);

    await memory.undoDelete();
    expect(core.undeleteMemory).toHaveBeenCalledWith(5);
    expect(memory.undo).toBeNull();
    expect(memory.list.total).toBe(5);
    expect(memory.list.at(0)).toMatchObject({ id: 5, deleted: false });
  });

  it("keeps a deleted item on screen, marked, when deleted items are shown", async () => {
    fakeCore(5);
    const memory = new MemoryStore();
    memory.setFilters({ includeDeleted: true });
    await settle();
    await memory.remove(memory.list.at(0)!);
    expect(memory.list.at(0)).toMatchObject({ id: 5, deleted: true });
    expect(memory.list.total).toBe(5);
  });

  it("adds an item and reads the list again", async () => {
    const memory = await opened(2);
    core.addMemory.mockResolvedValue(item(3, { kind: "fact", text: "Tea, no sugar" }));
    memory.addKind = "fact";
    memory.addText = " Tea, no sugar ";
    await memory.add();
    expect(core.addMemory).toHaveBeenCalledWith("fact", "Tea, no sugar");
    expect(memory.addText).toBe("");
    expect(core.listMemory).toHaveBeenCalledTimes(2);
    expect(core.listMemorySources).toHaveBeenCalledTimes(2);
  });
});

function candidate(id: number, patch: Partial<RetrievalCandidate> = {}): RetrievalCandidate {
  return {
    item: item(id),
    bm25: 3.2,
    bm25_rank: 1,
    cosine: 0.81,
    vector_rank: 2,
    fused: 0.0325,
    tokens: 12,
    decision: "kept",
    reason: "fused score 0.0325 ≥ threshold 0.01",
    ...patch,
  };
}

function retrieval(query: string): Retrieval {
  const kept = candidate(1);
  const dropped = candidate(2, { bm25: null, bm25_rank: null, decision: "below_threshold", reason: "fused 0.004 < 0.01" });
  return {
    query,
    limit: 10,
    threshold: 0.01,
    token_budget: 512,
    tokens_used: 12,
    duration_ms: 7,
    hits: [kept],
    candidates: [kept, dropped],
  };
}

describe("search", () => {
  it("shows the hits and the dropped candidates with their reasons", async () => {
    const memory = new MemoryStore();
    core.searchMemory.mockImplementation(async (q: string) => retrieval(q));
    memory.searchText = "  sourdough ";
    await memory.search();
    expect(core.searchMemory).toHaveBeenCalledWith("sourdough", 10);
    expect(memory.retrieval?.hits.map((h) => h.item.id)).toEqual([1]);
    expect(memory.dropped.map((c) => [c.item.id, c.decision])).toEqual([[2, "below_threshold"]]);
    expect(memory.searchShown).toBe(true);

    memory.clearSearch();
    expect(memory.retrieval).toBeNull();
    expect(memory.searchShown).toBe(false);
  });

  it("keeps the answer to the latest query only", async () => {
    const memory = new MemoryStore();
    const first = deferred<Retrieval>();
    core.searchMemory.mockReturnValueOnce(first.promise).mockResolvedValueOnce(retrieval("bread"));
    memory.searchText = "bicycle";
    const slow = memory.search();
    memory.searchText = "bread";
    await memory.search();
    first.resolve(retrieval("bicycle"));
    await slow;
    expect(memory.retrieval?.query).toBe("bread");
    expect(memory.searching).toBe(false);
  });

  it("shows a failed search as a typed error", async () => {
    const memory = new MemoryStore();
    core.searchMemory.mockRejectedValue("command search_memory not found");
    memory.searchText = "bread";
    await memory.search();
    expect(memory.searchError).toEqual({ kind: "internal", message: "command search_memory not found", hint: null });
  });
});

describe("the runs that used an item", () => {
  it("lists them, and says why when it cannot", async () => {
    const memory = new MemoryStore();
    const run = {
      id: 9,
      conversation_id: 2,
      status: "answered" as const,
      input: "what is my dog called?",
      started_ms: 1,
      finished_ms: 2,
      prompt_tokens: 30,
      completion_tokens: 4,
    };
    core.memoryItemRuns.mockResolvedValueOnce([run]).mockRejectedValueOnce({
      kind: "not_found",
      message: "Memory item 4 does not exist.",
      hint: null,
    });
    await memory.showRuns(item(3));
    expect(core.memoryItemRuns).toHaveBeenCalledWith(3);
    expect(memory.runs).toEqual({ item: item(3), runs: [run], error: null });
    await memory.showRuns(item(4));
    expect(memory.runs?.error?.kind).toBe("not_found");
    memory.closeRuns();
    expect(memory.runs).toBeNull();
  });
});

describe("document import", () => {
  const progress = (files_done: number, chunks_done: number): ImportProgress => ({
    stage: "embedding",
    file: `/docs/${files_done}.md`,
    files_done,
    files_total: 3,
    chunks_done,
    chunks_total: 9,
  });
  const report: ImportReport = {
    files_seen: 3,
    documents_added: 3,
    documents_skipped: 0,
    chunks_added: 9,
    cancelled: false,
    errors: [],
    chunks_pending: 0,
  };

  it("shows progress while it runs and leaves the full bar and the report after", async () => {
    fakeCore(0);
    const memory = new MemoryStore();
    const done = deferred<ImportReport>();
    let send: (p: ImportProgress) => void = () => {};
    core.importDocuments.mockImplementation((_paths: string[], onProgress: (p: ImportProgress) => void) => {
      send = onProgress;
      return done.promise;
    });

    memory.documents.paths = "/tmp/docs, /tmp/more.md";
    const importing = memory.documents.start();
    expect(core.importDocuments).toHaveBeenCalledWith(["/tmp/docs", "/tmp/more.md"], expect.any(Function));
    expect(memory.documents.state).toBe("running");
    send(progress(1, 3));
    expect(memory.documents.progress).toMatchObject({ files_done: 1, chunks_done: 3 });

    done.resolve(report);
    await importing;
    send(progress(2, 6)); // Channel messages may trail the reply.

    expect(memory.documents.state).toBe("done");
    expect(memory.documents.report).toEqual(report);
    expect(memory.documents.progress).toMatchObject({ stage: "done", files_done: 3, files_total: 3, chunks_done: 9 });
    await settle();
    expect(core.listMemory).toHaveBeenCalled(); // The new chunks are in the list.
    expect(core.listMemorySources).toHaveBeenCalled();

    memory.documents.dismiss();
    expect(memory.documents.state).toBe("idle");
    expect(memory.documents.progress).toBeNull();
  });

  it("asks the core to cancel and shows the cancelled report", async () => {
    fakeCore(0);
    const memory = new MemoryStore();
    const done = deferred<ImportReport>();
    core.importDocuments.mockImplementation((_paths: string[], onProgress: (p: ImportProgress) => void) => {
      onProgress(progress(1, 3));
      return done.promise;
    });
    memory.documents.paths = "/tmp/docs";
    const importing = memory.documents.start();
    await memory.documents.cancel();
    expect(core.cancelImport).toHaveBeenCalledTimes(1);
    expect(memory.documents.cancelling).toBe(true);
    done.resolve({ ...report, documents_added: 1, chunks_added: 3, cancelled: true });
    await importing;
    expect(memory.documents.state).toBe("cancelled");
    expect(memory.documents.progress).toMatchObject({ stage: "cancelled", files_done: 1, files_total: 3 });
  });

  it("refuses to start without a path", async () => {
    const memory = new MemoryStore();
    memory.documents.paths = " , , ";
    await memory.documents.start();
    expect(core.importDocuments).not.toHaveBeenCalled();
    expect(memory.documents.state).toBe("failed");
    expect(memory.documents.error?.kind).toBe("invalid_input");
  });

  it("shows a rejected import as a typed error and still reads the list again", async () => {
    fakeCore(0);
    const memory = new MemoryStore();
    core.importDocuments.mockRejectedValue({ kind: "not_found", message: "No such folder: /nope", hint: null });
    memory.documents.paths = "/nope";
    await memory.documents.start();
    expect(memory.documents.state).toBe("failed");
    expect(memory.documents.error?.message).toBe("No such folder: /nope");
    await settle();
    expect(core.listMemory).toHaveBeenCalled();
  });

  it("splits paths on lines, else on commas", () => {
    expect(parsePaths("/a, /b ,/a,,")).toEqual(["/a", "/b"]);
    expect(parsePaths("/notes, 2024.md\n /b\r\n\n")).toEqual(["/notes, 2024.md", "/b"]);
    expect(parsePaths("   ")).toEqual([]);
  });

  it("fills the bar for a finished import even when the last progress trailed", () => {
    expect(finalProgress(null, report)).toMatchObject({ files_done: 3, files_total: 3, chunks_done: 9, chunks_total: 9 });
  });

  it("draws an indeterminate bar until the core has counted the files, then files done of files total", () => {
    expect(progressBar(null, "running")).toBeNull();
    expect(progressBar(progress(1, 3), "running")).toEqual({ value: 1, max: 3 });
    expect(progressBar(finalProgress(null, report), "done")).toEqual({ value: 3, max: 3 });
    expect(progressBar(null, "done")).toEqual({ value: 1, max: 1 });
    // A single file's embedding moves the bar by chunks.
    const single = { ...progress(0, 300), files_total: 1, chunks_total: 1200 };
    expect(progressBar(single, "running")).toEqual({ value: 300, max: 1200 });
    expect(progressBar({ ...single, stage: "storing" }, "running")).toEqual({ value: 0, max: 1 });
  });

  it("says what the import is doing, then what it did", () => {
    expect(progressLabel(null, "running")).toBe("Starting the import…");
    expect(progressLabel(progress(1, 3), "running")).toBe("embedding 1.md — 1 of 3 files · 3 / 9 chunks");
    expect(progressLabel(finalProgress(null, report), "done")).toBe("Imported 3 of 3 files · 9 / 9 chunks");
  });
});
