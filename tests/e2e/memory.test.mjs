// The Memory view through the real desktop app: a memory the user asks for in chat shows up in the list, is
// edited in place, deleted and brought back with Undo; a small folder of documents is imported with the
// progress bar on screen; and a search shows each hit's BM25, cosine and fused scores.
//
// Run through tests/e2e/run.sh (it starts Xvfb); needs KEEL_DESKTOP_BIN and the fetched models (the chat model
// and the embedding model). The selectors are the data-testids listed at the top of ui/src/components/MemoryView.svelte.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { By, Key } from "selenium-webdriver";
import { openDesktop, screenshot, sendMessage, waitForModelReady, waitForReply, waitInPage } from "./desktop.mjs";

const IMPORT_TIMEOUT = 180_000;
const REMEMBER = "remember that my dog is called Pixel";
const EDITED = "My dog is called Pixel and she is a beagle";

// Three short documents on topics far apart, so that a search for one finds that one.
const DOCUMENTS = {
  "sourdough.md":
    "# Sourdough bread\n\nA sourdough starter is flour and water fermented by wild yeast. Feed the starter every day, " +
    "and bake when it doubles in size. A long, cold proof gives the loaf its sour taste and open crumb.\n",
  "jupiter.txt":
    "Jupiter has dozens of moons. The four largest, Io, Europa, Ganymede and Callisto, were found by Galileo in 1610. " +
    "Ganymede is the largest moon in the solar system, bigger than the planet Mercury.\n",
  "bicycle.md":
    "# Bicycle maintenance\n\nOil the chain every few hundred kilometres and wipe off the excess. Check the tyre " +
    "pressure every week, and replace brake pads when the grooves are worn away.\n",
};
const SEARCH = "sourdough starter";

// Page-side helpers, run with executeScript (serialised, so they must not close over anything).

/**
 * The first loaded row whose text contains `needle`; clicks Refresh when there is none, in case the memory was
 * written after the view read the list. Errors shown by the view are returned, so that they fail the test.
 */
function findRow(needle) {
  const error = document.querySelector('[data-testid="memory-list-error"], [data-testid="memory-error"]');
  if (error) return { error: error.textContent.trim().replace(/\s+/g, " ") };
  for (const row of document.querySelectorAll('[data-testid="memory-row"][data-item-id]')) {
    const text = row.querySelector('[data-testid="memory-row-text"]')?.textContent ?? "";
    if (text.includes(needle)) {
      return {
        id: row.getAttribute("data-item-id"),
        text: text.trim(),
        kind: row.getAttribute("data-kind"),
        updatedMs: Number(row.getAttribute("data-updated-ms")),
      };
    }
  }
  const now = Date.now();
  if (!window.__lastRefresh || now - window.__lastRefresh > 2_000) {
    window.__lastRefresh = now;
    document.querySelector('[data-testid="memory-refresh"]')?.click();
  }
  return null;
}

/** The row of item `id` as the list shows it, or null when it is not in the list. */
function rowState(id) {
  const row = document.querySelector(`[data-testid="memory-row"][data-item-id="${id}"]`);
  if (!row) return null;
  return {
    text: (row.querySelector('[data-testid="memory-row-text"]')?.textContent ?? "").trim(),
    editing: row.querySelector('[data-testid="memory-edit-input"]') !== null,
    deleted: row.hasAttribute("data-deleted"),
    updatedMs: Number(row.getAttribute("data-updated-ms")),
    error: document.querySelector('[data-testid="memory-error"]')?.textContent.trim() ?? null,
  };
}

function undoBar() {
  const bar = document.querySelector('[data-testid="memory-undo-bar"]');
  return bar ? { itemId: bar.getAttribute("data-item-id"), text: bar.textContent.trim().replace(/\s+/g, " ") } : null;
}

/**
 * Records every state the import's progress element shows, and whether its <progress> bar was in it, from now
 * on. A small import can finish within a frame or two; an observer sees each state the DOM went through, where
 * polling could miss the running one.
 */
function installImportRecorder() {
  window.__importSeen = [];
  const record = () => {
    const el = document.querySelector('[data-testid="memory-import-progress"]');
    if (!el) return;
    const seen = window.__importSeen;
    const entry = {
      state: el.getAttribute("data-state"),
      bar: el.querySelector('progress[data-testid="memory-import-bar"]') !== null,
      filesDone: Number(el.getAttribute("data-files-done")),
      filesTotal: Number(el.getAttribute("data-files-total")),
    };
    const last = seen[seen.length - 1];
    if (!last || last.state !== entry.state || last.filesDone !== entry.filesDone || last.filesTotal !== entry.filesTotal) {
      seen.push(entry);
    }
  };
  window.__importObserver?.disconnect();
  window.__importObserver = new MutationObserver(record);
  window.__importObserver.observe(document.body, { subtree: true, childList: true, attributes: true });
  return true;
}

/** The import's outcome once it is over (done, cancelled or failed), with what the recorder saw. */
function importOutcome() {
  const progress = document.querySelector('[data-testid="memory-import-progress"]');
  const error = document.querySelector('[data-testid="memory-import-error"]');
  const state = progress?.getAttribute("data-state") ?? (error ? "failed" : null);
  if (!state || state === "running") return null;
  const bar = progress?.querySelector('[data-testid="memory-import-bar"]');
  const report = document.querySelector('[data-testid="memory-import-report"]');
  return {
    state,
    error: error?.textContent.trim().replace(/\s+/g, " ") ?? null,
    filesDone: Number(progress?.getAttribute("data-files-done")),
    filesTotal: Number(progress?.getAttribute("data-files-total")),
    bar: bar ? { value: bar.value, max: bar.max } : null,
    report: report
      ? {
          filesSeen: Number(report.getAttribute("data-files-seen")),
          added: Number(report.getAttribute("data-documents-added")),
          errors: Number(report.getAttribute("data-errors")),
          errorItems: [...document.querySelectorAll('[data-testid="memory-import-error-item"]')].map((e) => e.textContent),
        }
      : null,
    seen: window.__importSeen,
  };
}

/** Sets a <select> the way a user's choice does (a change event), which WebDriver clicks on options do not do reliably. */
function choose(testid, value) {
  const select = document.querySelector(`[data-testid="${testid}"]`);
  select.value = value;
  select.dispatchEvent(new Event("change", { bubbles: true }));
  return true;
}

/** The kinds of the loaded rows once the list shows some, with the list's count. */
function listedKinds() {
  const list = document.querySelector('[data-testid="memory-list"]');
  const rows = [...document.querySelectorAll('[data-testid="memory-row"][data-item-id]')];
  if (!list || rows.length === 0) return null;
  return { count: Number(list.getAttribute("data-count")), kinds: [...new Set(rows.map((r) => r.getAttribute("data-kind")))] };
}

/** The search's hits with their scores, once the search is over. */
function searchResults() {
  const results = document.querySelector('[data-testid="memory-search-results"]');
  if (!results || results.getAttribute("data-state") === "searching") return null;
  const error = results.querySelector('[data-testid="memory-search-error"]');
  if (error) return { error: error.textContent.trim().replace(/\s+/g, " ") };
  const value = (hit, testid) => {
    const el = hit.querySelector(`[data-testid="${testid}"]`);
    return el ? { shown: el.textContent.trim(), value: el.getAttribute("data-value") } : null;
  };
  return {
    summary: results.querySelector('[data-testid="memory-search-summary"]')?.textContent.trim().replace(/\s+/g, " "),
    hits: [...results.querySelectorAll('[data-testid="memory-hit"]')].map((hit) => ({
      id: hit.getAttribute("data-item-id"),
      rank: hit.getAttribute("data-rank"),
      decision: hit.getAttribute("data-decision"),
      text: hit.querySelector('[data-testid="hit-text"]')?.textContent.trim() ?? "",
      bm25: value(hit, "hit-bm25"),
      cosine: value(hit, "hit-cosine"),
      fused: value(hit, "hit-fused"),
      tokens: value(hit, "hit-tokens"),
      reason: hit.querySelector('[data-testid="hit-reason"]')?.textContent.trim() ?? "",
    })),
  };
}

describe("memory in the desktop app", { timeout: 900_000 }, () => {
  let docs;
  let desktop;
  let driver;
  let memoryId;

  before(async () => {
    docs = await mkdtemp(path.join(process.env.E2E_TMPDIR ?? os.tmpdir(), "keel-e2e-docs-"));
    for (const [name, text] of Object.entries(DOCUMENTS)) await writeFile(path.join(docs, name), text);
    desktop = await openDesktop("memory");
    driver = desktop.driver;
  });

  after(async () => {
    await desktop?.close();
    if (docs && !process.env.E2E_KEEP_HOME) await rm(docs, { recursive: true, force: true });
  });

  it("loads the model", async () => {
    await waitForModelReady(driver);
  });

  it("remembers what the user asks it to in chat", async () => {
    await sendMessage(driver, REMEMBER);
    await waitForReply(driver);
  });

  it("shows the memory in the Memory view", async () => {
    await driver.findElement(By.css('[data-testid="view-memory"]')).click();
    const row = await waitInPage(driver, findRow, ["Pixel"], {
      timeout: 20_000,
      message: "no memory containing “Pixel” in the Memory view",
    });
    assert.equal(row.error, undefined, `the Memory view showed an error: ${row.error}`);
    memoryId = row.id;
    await screenshot(driver, "memory-list.png");
  });

  it("edits the memory in place", async () => {
    assert.ok(memoryId, "needs the memory from the previous step");
    const before = await driver.executeScript(rowState, memoryId);
    const row = `[data-testid="memory-row"][data-item-id="${memoryId}"]`;
    await driver.findElement(By.css(`${row} [data-testid="memory-edit"]`)).click();
    const editor = await driver.findElement(By.css(`${row} [data-testid="memory-edit-input"]`));
    // Separate calls: WebKitWebDriver keeps Control held until the end of the sendKeys call that pressed it.
    await editor.sendKeys(Key.chord(Key.CONTROL, "a"));
    await editor.sendKeys(EDITED);
    await screenshot(driver, "memory-editing.png");
    await editor.sendKeys(Key.ENTER);

    const after = await waitInPage(driver, (id) => {
      const row = document.querySelector(`[data-testid="memory-row"][data-item-id="${id}"]`);
      const error = document.querySelector('[data-testid="memory-error"]');
      if (error) return { error: error.textContent.trim() };
      if (!row || row.querySelector('[data-testid="memory-edit-input"]')) return null;
      return {
        text: row.querySelector('[data-testid="memory-row-text"]').textContent.trim(),
        updatedMs: Number(row.getAttribute("data-updated-ms")),
      };
    }, [memoryId], { timeout: 30_000, message: "the edit was not saved" });
    assert.equal(after.error, undefined, `the edit failed: ${after.error}`);
    assert.equal(after.text, EDITED);
    assert.ok(after.updatedMs >= before.updatedMs, `updated_ms went back: ${before.updatedMs} → ${after.updatedMs}`);
    await screenshot(driver, "memory-edited.png");
  });

  it("deletes the memory and brings it back with Undo", async () => {
    assert.ok(memoryId, "needs the memory from an earlier step");
    await driver
      .findElement(By.css(`[data-testid="memory-row"][data-item-id="${memoryId}"] [data-testid="memory-delete"]`))
      .click();
    const bar = await waitInPage(
      driver,
      (id) => {
        const bar = document.querySelector('[data-testid="memory-undo-bar"]');
        const row = document.querySelector(`[data-testid="memory-row"][data-item-id="${id}"]`);
        return bar && !row ? { itemId: bar.getAttribute("data-item-id") } : null;
      },
      [memoryId],
      { timeout: 15_000, message: "the row did not leave the list with an Undo offered" },
    );
    assert.equal(bar.itemId, memoryId);
    await screenshot(driver, "memory-deleted.png");

    await driver.findElement(By.css('[data-testid="memory-undo"]')).click();
    const restored = await waitInPage(
      driver,
      (id) => {
        const row = document.querySelector(`[data-testid="memory-row"][data-item-id="${id}"]`);
        if (!row || document.querySelector('[data-testid="memory-undo-bar"]')) return null;
        return { text: row.querySelector('[data-testid="memory-row-text"]').textContent.trim(), deleted: row.hasAttribute("data-deleted") };
      },
      [memoryId],
      { timeout: 15_000, message: "Undo did not bring the memory back" },
    );
    assert.deepEqual(restored, { text: EDITED, deleted: false });
    assert.equal(await driver.executeScript(undoBar), null);
    await screenshot(driver, "memory-restored.png");
  });

  it("imports a folder of documents with the progress bar on screen", async () => {
    assert.equal(await driver.executeScript(installImportRecorder), true);
    await driver.findElement(By.css('[data-testid="memory-import-paths"]')).sendKeys(docs);
    await driver.findElement(By.css('[data-testid="memory-import-button"]')).click();

    const outcome = await waitInPage(driver, importOutcome, [], {
      timeout: IMPORT_TIMEOUT,
      message: `the import did not finish within ${IMPORT_TIMEOUT / 1000} s`,
    });
    assert.equal(outcome.error, null, `the import failed: ${outcome.error}`);
    assert.equal(outcome.state, "done", JSON.stringify(outcome));
    assert.ok(
      outcome.seen.some((s) => s.state === "running" && s.bar),
      `the progress bar was never shown while the import ran: ${JSON.stringify(outcome.seen)}`,
    );
    const files = Object.keys(DOCUMENTS).length;
    assert.equal(outcome.filesTotal, files, JSON.stringify(outcome));
    assert.equal(outcome.filesDone, files, JSON.stringify(outcome));
    assert.ok(outcome.bar && outcome.bar.value === outcome.bar.max, `the finished bar is not full: ${JSON.stringify(outcome.bar)}`);
    assert.equal(outcome.report?.filesSeen, files, JSON.stringify(outcome.report));
    assert.equal(outcome.report?.added, files, JSON.stringify(outcome.report));
    assert.equal(outcome.report?.errors, 0, JSON.stringify(outcome.report?.errorItems));
    await screenshot(driver, "memory-import.png");
  });

  it("filters the list by kind", async () => {
    await driver.executeScript(choose, "memory-filter-kind", "document_chunk");
    const listed = await waitInPage(
      driver,
      () => {
        const list = document.querySelector('[data-testid="memory-list"]');
        const rows = [...document.querySelectorAll('[data-testid="memory-row"][data-item-id]')];
        if (!list || rows.length === 0 || rows.some((r) => r.getAttribute("data-kind") !== "document_chunk")) return null;
        return { count: Number(list.getAttribute("data-count")), rows: rows.length };
      },
      [],
      { timeout: 15_000, message: "the kind filter did not leave only document chunks" },
    );
    assert.ok(listed.count >= Object.keys(DOCUMENTS).length, `expected a chunk per document at least: ${JSON.stringify(listed)}`);
    await screenshot(driver, "memory-filter.png");

    await driver.executeScript(choose, "memory-filter-kind", "");
    const all = await waitInPage(driver, listedKinds, [], { timeout: 15_000, message: "the list did not come back unfiltered" });
    assert.ok(all.kinds.includes("document_chunk") && all.kinds.some((k) => k !== "document_chunk"), JSON.stringify(all));
  });

  it("searches and shows each hit's scores", async () => {
    const input = await driver.findElement(By.css('[data-testid="memory-search-input"]'));
    await input.sendKeys(SEARCH);
    await driver.findElement(By.css('[data-testid="memory-search-button"]')).click();

    const results = await waitInPage(driver, searchResults, [], {
      timeout: 30_000,
      message: "the search did not answer",
    });
    assert.equal(results.error, undefined, `the search failed: ${results.error}`);
    assert.match(results.summary ?? "", /tokens/, `no retrieval summary: ${JSON.stringify(results)}`);
    const hit = results.hits.find((h) => /sourdough/i.test(h.text));
    assert.ok(hit, `no hit from sourdough.md among ${JSON.stringify(results.hits.map((h) => h.text))}`);
    assert.equal(hit.decision, "kept");
    for (const score of ["bm25", "cosine", "fused"]) {
      const shown = hit[score];
      assert.ok(shown && Number.isFinite(Number(shown.value)), `${score} has no value: ${JSON.stringify(hit)}`);
      assert.ok(Number.isFinite(Number.parseFloat(shown.shown)), `${score} is not shown as a number: ${JSON.stringify(hit)}`);
    }
    assert.ok(Number(hit.tokens?.value) > 0, `the hit has no token count: ${JSON.stringify(hit)}`);
    assert.ok(hit.reason.length > 0, "the hit has no reason");
    await screenshot(driver, "memory-search.png");
  });
});
