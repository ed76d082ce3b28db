// A window onto a long list the core holds, read a page at a time as the user scrolls. It owns the cache of
// pages (keyed by page index, so by offset), which pages the screen wants, and the requests in flight; the core
// owns the list itself, and `total` is whatever it last said.
//
// Fast scrolling over 100,000 rows must not queue a request for every page it passes, so at most
// `maxInFlight` requests run at once and each finished one starts the next page the screen *now* wants:
// pages scrolled past before their turn are never fetched. The cache holds at most `maxPages` pages and lets go
// of the ones farthest from the screen.
//
// Every reload starts a new generation; an answer from an older one is dropped, so a slow page read under the
// old filters can never land in the new list.

import { SvelteMap } from "svelte/reactivity";
import type { AppError } from "./bindings";
import { toAppError } from "./errors";
import { pagesInRange, pagesToEvict, type RowRange } from "./windowing";

export type Page<T> = { items: T[]; total: number };
export type PageReader<T> = (offset: number, limit: number) => Promise<Page<T>>;

export type PagedOptions = { pageSize?: number; maxPages?: number; maxInFlight?: number };

export class PagedList<T> {
  /** The number of rows, as the core last reported it; null before its first answer. */
  total = $state<number | null>(null);
  /** Why the last read failed; reading stops until `refresh` or `reset`. */
  error = $state<AppError | null>(null);
  readonly pageSize: number;

  #read: PageReader<T>;
  #maxPages: number;
  #maxInFlight: number;
  #pages = new SvelteMap<number, readonly T[]>();
  #wanted: number[] = [];
  #generation = 0;
  #inFlight = new Set<number>();

  constructor(read: PageReader<T>, { pageSize = 100, maxPages = 40, maxInFlight = 2 }: PagedOptions = {}) {
    this.#read = read;
    this.pageSize = pageSize;
    this.#maxPages = maxPages;
    this.#maxInFlight = maxInFlight;
  }

  /** The row at `index`, or undefined while its page is not loaded. */
  at(index: number): T | undefined {
    return this.#pages.get(Math.floor(index / this.pageSize))?.[index % this.pageSize];
  }

  /** The loaded page indices, in no particular order (for tests and diagnostics). */
  get loadedPages(): number[] {
    return [...this.#pages.keys()];
  }

  /** Says which rows are on screen: fetches the pages they need and lets go of far-away ones. */
  show(range: RowRange): void {
    this.#wanted = pagesInRange(range, this.pageSize);
    this.#evict();
    this.#pump();
  }

  #evict(): void {
    for (const page of pagesToEvict(this.#pages.keys(), this.#wanted, this.#maxPages)) this.#pages.delete(page);
  }

  /**
   * Reads the pages on screen again, after a change to the list. The old rows stay on screen until the new
   * ones arrive, so an edit or a delete does not flash the list empty.
   */
  refresh(): Promise<void> {
    return this.#reload(this.#wanted.length > 0 ? [...this.#wanted] : [0]);
  }

  /** Forgets everything and reads the first page: for a new query, whose rows have nothing to do with the old. */
  reset(): Promise<void> {
    this.#pages.clear();
    this.total = null;
    this.#wanted = [0];
    return this.#reload([0]);
  }

  /** Replaces the first cached row that `matches` (an item changed in place). */
  replace(matches: (row: T) => boolean, next: T): boolean {
    for (const [page, rows] of this.#pages) {
      const i = rows.findIndex(matches);
      if (i >= 0) {
        const copy = [...rows];
        copy[i] = next;
        this.#pages.set(page, copy);
        return true;
      }
    }
    return false;
  }

  /** The first cached row that `matches`. */
  find(matches: (row: T) => boolean): T | undefined {
    for (const rows of this.#pages.values()) {
      const found = rows.find(matches);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  async #reload(pages: number[]): Promise<void> {
    const generation = ++this.#generation;
    const inFlight = new Set(pages);
    this.#inFlight = inFlight;
    this.error = null;
    let results: Page<T>[];
    try {
      results = await Promise.all(pages.map((page) => this.#read(page * this.pageSize, this.pageSize)));
    } catch (e) {
      if (generation === this.#generation) this.error = toAppError(e);
      return;
    }
    if (generation !== this.#generation) return;
    this.#pages.clear();
    results.forEach((result, i) => this.#pages.set(pages[i]!, result.items));
    this.total = results[results.length - 1]!.total;
    inFlight.clear();
    this.#pump();
  }

  #pump(): void {
    if (this.error) return;
    const generation = this.#generation;
    const inFlight = this.#inFlight;
    for (const page of this.#wanted) {
      if (inFlight.size >= this.#maxInFlight) return;
      if (this.#pages.has(page) || inFlight.has(page)) continue;
      if (this.total !== null && page * this.pageSize >= this.total) continue;
      inFlight.add(page);
      void this.#load(page, generation, inFlight);
    }
  }

  async #load(page: number, generation: number, inFlight: Set<number>): Promise<void> {
    try {
      const result = await this.#read(page * this.pageSize, this.pageSize);
      if (generation !== this.#generation) return;
      this.#pages.set(page, result.items);
      this.total = result.total;
      this.#evict();
    } catch (e) {
      if (generation === this.#generation) this.error = toAppError(e);
    } finally {
      inFlight.delete(page);
      if (generation === this.#generation) this.#pump();
    }
  }
}
