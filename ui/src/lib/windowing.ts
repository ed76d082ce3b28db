// The arithmetic of a virtual list with fixed-height rows: which rows a scroll position shows, which pages of
// a paged source those rows live on, and which cached pages to let go of. Pure functions, so that the list
// component and the page cache stay thin and this is tested on its own.
//
// Row heights are fixed so that a row's position is `index * rowHeight`: no measuring, and a list of 100,000
// rows costs the same to scroll as one of 100. The tallest list this supports is bounded by the browser's
// largest element height (WebKit's layout units are 1/64 px in an int32, so about 33.5 million px), which
// `fitsInLayout` checks.

/** Rows `start` (inclusive) to `end` (exclusive). */
export type RowRange = { start: number; end: number };

export const EMPTY_RANGE: RowRange = { start: 0, end: 0 };

/** The largest element height WebKit lays out: 2^31 layout units of 1/64 px. */
export const MAX_LAYOUT_PX = 2 ** 31 / 64;

function clamp(n: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, n));
}

/**
 * The rows to render at a scroll position: those in the viewport plus `overscan` rows either side, so that a
 * scroll of a few rows shows rows that are already there.
 */
export function visibleRange(
  scrollTop: number,
  viewportHeight: number,
  rowHeight: number,
  count: number,
  overscan: number,
): RowRange {
  if (count <= 0 || rowHeight <= 0) return EMPTY_RANGE;
  const top = Math.max(0, Number.isFinite(scrollTop) ? scrollTop : 0);
  const height = Math.max(0, Number.isFinite(viewportHeight) ? viewportHeight : 0);
  // A scroll position past the end (the list just shrank) still shows the last rows.
  const first = Math.min(Math.floor(top / rowHeight), count - 1);
  const last = Math.max(first + 1, Math.ceil((top + height) / rowHeight));
  const start = clamp(first - overscan, 0, count);
  const end = clamp(last + overscan, start, count);
  return { start, end };
}

/** The page indices (page `p` holds rows `p * pageSize` up to `(p + 1) * pageSize`) that a range touches. */
export function pagesInRange(range: RowRange, pageSize: number): number[] {
  if (range.end <= range.start || pageSize <= 0) return [];
  const first = Math.floor(range.start / pageSize);
  const last = Math.floor((range.end - 1) / pageSize);
  const pages: number[] = [];
  for (let p = first; p <= last; p += 1) pages.push(p);
  return pages;
}

/**
 * The cached pages to drop so that at most `max` remain: never one of `keep`, and the farthest from them
 * first, so that scrolling back a little finds its rows still there.
 */
export function pagesToEvict(cached: Iterable<number>, keep: readonly number[], max: number): number[] {
  const kept = new Set(keep);
  const all = [...cached];
  const excess = all.length - Math.max(max, kept.size);
  if (excess <= 0) return [];
  const centre = keep.length === 0 ? 0 : (Math.min(...keep) + Math.max(...keep)) / 2;
  return all
    .filter((p) => !kept.has(p))
    .sort((a, b) => Math.abs(b - centre) - Math.abs(a - centre) || b - a)
    .slice(0, excess);
}

/** True when `count` rows of `rowHeight` px fit in one element the browser can lay out. */
export function fitsInLayout(count: number, rowHeight: number): boolean {
  return count * rowHeight <= MAX_LAYOUT_PX;
}
