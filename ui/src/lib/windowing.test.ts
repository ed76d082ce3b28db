import { describe, expect, it } from "vitest";
import { ROW_HEIGHT } from "./memory.svelte";
import { fitsInLayout, pagesInRange, pagesToEvict, visibleRange } from "./windowing";

describe("visibleRange", () => {
  // rowHeight 10, viewport 50: five rows on screen.
  const range = (scrollTop: number, count = 1_000, overscan = 2) => visibleRange(scrollTop, 50, 10, count, overscan);

  it("shows the rows in the viewport plus the overscan either side", () => {
    expect(range(0)).toEqual({ start: 0, end: 7 });
    expect(range(100)).toEqual({ start: 8, end: 17 });
    expect(range(105)).toEqual({ start: 8, end: 18 }); // Rows 10 and 15 are each half on screen.
  });

  it("stops at the ends of the list", () => {
    expect(range(9_950)).toEqual({ start: 993, end: 1_000 });
    expect(range(0, 3)).toEqual({ start: 0, end: 3 });
  });

  it("still shows the last rows when the scroll position is past a list that shrank", () => {
    expect(range(9_950, 10)).toEqual({ start: 7, end: 10 });
  });

  it("is empty for an empty list and survives nonsense input", () => {
    expect(range(0, 0)).toEqual({ start: 0, end: 0 });
    expect(visibleRange(Number.NaN, Number.NaN, 10, 100, 2)).toEqual({ start: 0, end: 3 });
    expect(visibleRange(-40, 50, 10, 100, 0)).toEqual({ start: 0, end: 5 });
    expect(visibleRange(0, 50, 0, 100, 2)).toEqual({ start: 0, end: 0 });
  });

  it("renders a bounded number of rows anywhere in 100,000", () => {
    const viewport = 800;
    const bound = Math.ceil(viewport / ROW_HEIGHT) + 1 + 2 * 6;
    for (let scrollTop = 0; scrollTop < 100_000 * ROW_HEIGHT; scrollTop += 99_991) {
      const r = visibleRange(scrollTop, viewport, ROW_HEIGHT, 100_000, 6);
      expect(r.end - r.start).toBeLessThanOrEqual(bound);
      expect(r.start * ROW_HEIGHT).toBeLessThanOrEqual(scrollTop);
      expect(r.end * ROW_HEIGHT).toBeGreaterThanOrEqual(Math.min(scrollTop + viewport, 100_000 * ROW_HEIGHT));
    }
  });
});

describe("pagesInRange", () => {
  it("lists every page the range touches", () => {
    expect(pagesInRange({ start: 0, end: 100 }, 100)).toEqual([0]);
    expect(pagesInRange({ start: 95, end: 105 }, 100)).toEqual([0, 1]);
    expect(pagesInRange({ start: 99_990, end: 100_000 }, 100)).toEqual([999]);
    expect(pagesInRange({ start: 5, end: 5 }, 100)).toEqual([]);
  });
});

describe("pagesToEvict", () => {
  it("keeps the wanted pages and drops the farthest first", () => {
    expect(pagesToEvict([0, 9, 10, 11, 90], [10], 3)).toEqual([90, 0]);
    expect(pagesToEvict([0, 1, 2, 50, 51, 90], [50, 51], 4)).toEqual([0, 1]);
  });

  it("drops nothing under the limit, and never a wanted page", () => {
    expect(pagesToEvict([1, 2], [1], 4)).toEqual([]);
    expect(pagesToEvict([1, 2, 3], [1, 2, 3], 2)).toEqual([]);
  });
});

describe("fitsInLayout", () => {
  it("fits 100,000 memory rows in one scrollable element", () => {
    expect(fitsInLayout(100_000, ROW_HEIGHT)).toBe(true);
    expect(fitsInLayout(1_000_000, ROW_HEIGHT)).toBe(false);
  });
});
