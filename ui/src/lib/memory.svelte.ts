// The Memory view's state: the filters, the paged window onto the matching items, the item being edited, the
// last delete (for its undo), the search and its score breakdown, the runs that used an item, and the document
// import. The core owns the items and their order; this holds what is on screen, and re-reads the list after
// every change that can move rows (add, pin, delete, restore, import) rather than patching its own idea of it.
// An edit changes one row in place, so the returned item is swapped in without a read.
//
// Every action's failure is one `AppError`; the list, the search, the runs panel and the import each keep their
// own, so that a failed search does not hide the list's state or the other way round.

import * as api from "./api";
import type {
  AppError,
  CandidateDecision,
  MemoryItem,
  MemoryKind,
  Retrieval,
  RetrievalCandidate,
  RunSummary,
} from "./bindings";
import { DocumentImport } from "./documents.svelte";
import { attempt, toAppError } from "./errors";
import type { Tone } from "./format";
import { PagedList } from "./paged.svelte";

export const MEMORY_KINDS: readonly { kind: MemoryKind; label: string }[] = [
  { kind: "fact", label: "Fact" },
  { kind: "preference", label: "Preference" },
  { kind: "note", label: "Note" },
  { kind: "episode", label: "Episode" },
  { kind: "document_chunk", label: "Document" },
];

export function isMemoryKind(value: string): value is MemoryKind {
  return MEMORY_KINDS.some((k) => k.kind === value);
}

export function kindLabel(kind: MemoryKind): string {
  return MEMORY_KINDS.find((k) => k.kind === kind)?.label ?? kind;
}

/** A kind's tag colour, so that the kinds a list mixes tell apart at a glance; null for the plain ones. */
export function kindTone(kind: MemoryKind): Tone | null {
  return kind === "fact" ? "accent" : kind === "preference" ? "ok" : kind === "episode" ? "warn" : null;
}

const decisionLabels: Record<CandidateDecision, string> = {
  kept: "kept",
  below_threshold: "below threshold",
  redundant: "redundant",
  over_budget: "over token budget",
  over_limit: "over the limit",
  quarantined: "quarantined",
};

export function decisionLabel(decision: CandidateDecision): string {
  return decisionLabels[decision] ?? decision;
}

/** Rows per `list_memory` call. */
export const PAGE_SIZE = 100;
/** The pixel height of one row of the list; the row's CSS is laid out to fit it. */
export const ROW_HEIGHT = 72;
/** How many hits a search asks for (the core's threshold and token budget may keep fewer). */
export const SEARCH_LIMIT = 10;

export type ItemRuns = { item: MemoryItem; runs: RunSummary[] | null; error: AppError | null };

export class MemoryStore {
  kind = $state<MemoryKind | null>(null);
  source = $state<string | null>(null);
  includeDeleted = $state(false);
  /** The distinct sources, for the source filter. */
  sources = $state<string[]>([]);
  /** Changes with the filters, so that the list scrolls back to its top. */
  listKey = $state(0);
  readonly list = new PagedList<MemoryItem>((offset, limit) => this.#readPage(offset, limit), {
    pageSize: PAGE_SIZE,
  });

  /** The last failed action on an item (add, edit, pin, delete, restore). */
  error = $state<AppError | null>(null);
  /** Items with an action in flight, whose buttons wait for it. */
  busy = $state<number[]>([]);

  editing = $state<{ id: number; draft: string } | null>(null);
  saving = $state(false);

  /** The last deleted item, until it is restored or the undo bar is dismissed. */
  undo = $state<MemoryItem | null>(null);

  addKind = $state<MemoryKind>("note");
  addText = $state("");
  adding = $state(false);

  searchText = $state("");
  searching = $state(false);
  retrieval = $state<Retrieval | null>(null);
  searchError = $state<AppError | null>(null);

  runs = $state<ItemRuns | null>(null);

  readonly documents = new DocumentImport(() => void this.#changed());

  #searchRequest = 0;
  #runsRequest = 0;

  #readPage(offset: number, limit: number) {
    return api.listMemory({
      kind: this.kind,
      source: this.source,
      include_deleted: this.includeDeleted,
      offset,
      limit,
    });
  }

  /** Re-reads what the core holds; called whenever the view is shown. */
  async open(): Promise<void> {
    await Promise.all([this.list.total === null ? this.list.reset() : this.list.refresh(), this.loadSources()]);
  }

  async loadSources(): Promise<void> {
    try {
      this.sources = await api.listMemorySources();
    } catch {
      // The source filter then offers only "all sources"; the list shows its own error if the core is unwell.
    }
  }

  setFilters(filters: { kind?: MemoryKind | null; source?: string | null; includeDeleted?: boolean }): void {
    if (filters.kind !== undefined) this.kind = filters.kind;
    if (filters.source !== undefined) this.source = filters.source;
    if (filters.includeDeleted !== undefined) this.includeDeleted = filters.includeDeleted;
    this.editing = null;
    this.listKey += 1;
    void this.list.reset();
  }

  isBusy(id: number): boolean {
    return this.busy.includes(id);
  }

  async #act(id: number, action: () => Promise<void>): Promise<void> {
    if (this.isBusy(id)) return;
    this.busy.push(id);
    this.error = null;
    await attempt(action, (e) => (this.error = e));
    this.busy = this.busy.filter((b) => b !== id);
  }

  /** An item came back changed: swap it in wherever it is shown. */
  #replace(item: MemoryItem): void {
    this.list.replace((row) => row.id === item.id, item);
    if (this.retrieval) {
      const swap = (c: RetrievalCandidate) => (c.item.id === item.id ? { ...c, item } : c);
      this.retrieval = {
        ...this.retrieval,
        hits: this.retrieval.hits.map(swap),
        candidates: this.retrieval.candidates.map(swap),
      };
    }
    if (this.runs?.item.id === item.id) this.runs = { ...this.runs, item };
  }

  /** The list's membership or order may have changed: read it again, and the sources with it. */
  async #changed(): Promise<void> {
    await Promise.all([this.list.refresh(), this.loadSources()]);
  }

  async add(): Promise<void> {
    const text = this.addText.trim();
    if (text === "" || this.adding) return;
    this.adding = true;
    this.error = null;
    await attempt(
      async () => {
        await api.addMemory(this.addKind, text);
        this.addText = "";
        await this.#changed();
      },
      (e) => (this.error = e),
    );
    this.adding = false;
  }

  startEdit(item: MemoryItem): void {
    if (item.deleted) return;
    this.error = null;
    this.editing = { id: item.id, draft: item.text };
  }

  cancelEdit(): void {
    this.editing = null;
  }

  /** Saves the draft; the editor stays open with the draft when the core refuses it. */
  async saveEdit(): Promise<void> {
    const editing = this.editing;
    if (!editing || this.saving) return;
    const text = editing.draft.trim();
    if (text === "") {
      this.error = {
        kind: "invalid_input",
        message: "A memory cannot be empty.",
        hint: "Type its new text, or delete the item instead.",
      };
      return;
    }
    const current = this.list.find((row) => row.id === editing.id);
    if (current?.text === text) {
      this.editing = null; // Nothing changed: no reason to re-embed.
      return;
    }
    this.saving = true;
    this.error = null;
    await attempt(
      async () => {
        this.#replace(await api.editMemory(editing.id, text));
        if (this.editing?.id === editing.id) this.editing = null;
      },
      (e) => (this.error = e),
    );
    this.saving = false;
  }

  /** Pins or unpins; the list is read again because the core lists pinned items first. */
  togglePin(item: MemoryItem): Promise<void> {
    return this.#act(item.id, async () => {
      this.#replace(await api.pinMemory(item.id, !item.pinned));
      await this.list.refresh();
    });
  }

  remove(item: MemoryItem): Promise<void> {
    return this.#act(item.id, async () => {
      const deleted = await api.deleteMemory(item.id);
      if (this.editing?.id === item.id) this.editing = null;
      this.undo = deleted;
      this.#replace(deleted);
      if (!this.includeDeleted) await this.list.refresh();
    });
  }

  /** Restores a deleted item: the undo bar's action, and the "Restore" of a row shown with "show deleted". */
  restore(item: MemoryItem): Promise<void> {
    return this.#act(item.id, async () => {
      const restored = await api.undeleteMemory(item.id);
      if (this.undo?.id === item.id) this.undo = null;
      this.#replace(restored);
      await this.list.refresh();
    });
  }

  async undoDelete(): Promise<void> {
    if (this.undo) await this.restore(this.undo);
  }

  dismissUndo(): void {
    this.undo = null;
  }

  get searchShown(): boolean {
    return this.retrieval !== null || this.searching || this.searchError !== null;
  }

  /** The candidates the retrieval considered and dropped, each with its reason. */
  get dropped(): RetrievalCandidate[] {
    return this.retrieval?.candidates.filter((c) => c.decision !== "kept") ?? [];
  }

  async search(): Promise<void> {
    const query = this.searchText.trim();
    if (query === "") {
      this.clearSearch();
      return;
    }
    const request = ++this.#searchRequest;
    this.searching = true;
    this.searchError = null;
    try {
      const retrieval = await api.searchMemory(query, SEARCH_LIMIT);
      if (request === this.#searchRequest) this.retrieval = retrieval;
    } catch (e) {
      if (request === this.#searchRequest) {
        this.retrieval = null;
        this.searchError = toAppError(e);
      }
    } finally {
      if (request === this.#searchRequest) this.searching = false;
    }
  }

  clearSearch(): void {
    this.#searchRequest += 1;
    this.searchText = "";
    this.retrieval = null;
    this.searchError = null;
    this.searching = false;
  }

  async showRuns(item: MemoryItem): Promise<void> {
    const request = ++this.#runsRequest;
    this.runs = { item, runs: null, error: null };
    try {
      const runs = await api.memoryItemRuns(item.id);
      if (request === this.#runsRequest) this.runs = { item, runs, error: null };
    } catch (e) {
      if (request === this.#runsRequest) this.runs = { item, runs: null, error: toAppError(e) };
    }
  }

  closeRuns(): void {
    this.#runsRequest += 1;
    this.runs = null;
  }
}
