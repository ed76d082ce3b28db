// A bad answer becomes a test case, and the user's suite runs from the Evaluation view: through the real desktop
// app with the scripted backend (KEEL_SCRIPTED_BACKEND) standing in for a model that gets 12 × 7 wrong. The answer
// is saved with "Save as test case" (the task lands in the data dir's evals/mine.jsonl), the Evaluation view runs
// the user's suite with its progress bar showing, the failed task is listed with its reason, and its run opens in
// the Inspector from the report (its throwaway data dir is gone by then).
//
// Run through tests/e2e/run.sh (it starts Xvfb); needs KEEL_DESKTOP_BIN.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { By } from "selenium-webdriver";
import { openDesktop, screenshot, sendMessage, waitForModelReady, waitForReply, waitInPage } from "./desktop.mjs";

const QUESTION = "Tell me what twelve times seven is, in one sentence.";
const WRONG = "Twelve times seven is 85.";
// Slow enough that the Evaluation view's progress bar can be seen while the suite runs.
const SCRIPT = { rules: [{ when: "", reply: WRONG, delay_ms: 2_500 }] };

// Page-side helpers, run with executeScript (serialised, so they must not close over anything).

function savedNotice() {
  const error = document.querySelector('[data-testid="test-case-form"] [data-testid="error"]');
  if (error) return { error: error.textContent.trim() };
  const saved = document.querySelector('[data-testid="test-case-saved"]');
  return saved ? { text: saved.textContent.trim() } : null;
}

function progressShown() {
  const bar = document.querySelector('[data-testid="eval-progress"]');
  if (!bar) return null;
  return { max: bar.getAttribute("max"), value: bar.getAttribute("value"), stage: document.querySelector('[data-testid="eval-stage"]')?.textContent.trim() };
}

function evaluationResult() {
  const error = document.querySelector('[data-testid="eval-error"] [data-testid="error"]');
  if (error) return { error: error.textContent.trim() };
  const summary = document.querySelector('[data-testid="eval-summary"]');
  if (!summary) return null;
  return {
    summary: summary.textContent.trim().replace(/\s+/g, " "),
    attempts: [...document.querySelectorAll('[data-testid="eval-attempt"]')].map((a) => ({
      task: a.getAttribute("data-task"),
      passed: a.getAttribute("data-passed"),
      failures: [...a.querySelectorAll('[data-testid="eval-failure"]')].map((f) => f.textContent.trim()),
      canOpen: a.querySelector('[data-testid="eval-open-run"]') !== null,
    })),
    progressGone: document.querySelector('[data-testid="eval-progress"]') === null,
  };
}

function inspectedEvaluationRun() {
  const inspector = document.querySelector('[data-testid="inspector"]');
  if (!inspector) return null;
  const kinds = [...inspector.querySelectorAll('[data-testid="inspector-step"]')].map((s) => s.getAttribute("data-kind"));
  if (!kinds.includes("RunFinished")) return null;
  return {
    runId: inspector.getAttribute("data-run-id"),
    marked: inspector.querySelector('[data-testid="inspector-evaluation-run"]') !== null,
    kinds,
    text: inspector.textContent.replace(/\s+/g, " "),
  };
}

describe("a bad answer saved as a test case and run from the Evaluation view", { timeout: 600_000 }, () => {
  let script;
  let desktop;
  let driver;
  let reply;

  before(async () => {
    script = await mkdtemp(path.join(process.env.E2E_TMPDIR ?? os.tmpdir(), "keel-e2e-script-"));
    await writeFile(path.join(script, "script.json"), JSON.stringify(SCRIPT, null, 2));
    desktop = await openDesktop("evaluation", { env: { KEEL_SCRIPTED_BACKEND: path.join(script, "script.json") } });
    driver = desktop.driver;
  });

  after(async () => {
    await desktop?.close();
    if (script && !process.env.E2E_KEEP_HOME) await rm(script, { recursive: true, force: true });
  });

  it("gets the wrong answer", async () => {
    await waitForModelReady(driver, 30_000);
    await sendMessage(driver, QUESTION);
    reply = await waitForReply(driver);
    assert.equal(reply.text, WRONG);
  });

  it("saves it as a test case that expects 84, in the data dir's own suite", async () => {
    const message = `[data-testid="message"][data-run-id="${reply.runId}"]`;
    await driver.findElement(By.css(`${message} [data-testid="save-test-case"]`)).click();
    await driver.findElement(By.css('[data-testid="test-case-contains"]')).sendKeys("84");
    await screenshot(driver, "evaluation-save-test-case.png");
    await driver.findElement(By.css('[data-testid="test-case-save"]')).click();
    const saved = await waitInPage(driver, savedNotice, [], { timeout: 30_000, message: "the test case was not saved" });
    assert.equal(saved.error, undefined, `saving failed: ${saved.error}`);
    assert.match(saved.text, /Saved as mine-run-/);
    // The oracle is the file itself: one task, in the format `keel eval run` reads.
    const lines = (await readFile(path.join(desktop.home.dir, "evals", "mine.jsonl"), "utf8")).trim().split("\n");
    assert.equal(lines.length, 1, lines.join("\n"));
    const task = JSON.parse(lines[0]);
    assert.equal(task.prompt, QUESTION);
    assert.deepEqual(task.expect_answer_contains, ["84"]);
    assert.equal(task.source, "user");
  });

  it("runs the suite from the Evaluation view with the progress bar showing, and lists the failure", async () => {
    await driver.findElement(By.css('[data-testid="view-evaluation"]')).click();
    await driver.findElement(By.css('[data-testid="eval-run"]')).click();
    const progress = await waitInPage(driver, progressShown, [], { timeout: 30_000, message: "no progress bar while the suite ran" });
    assert.ok(progress, "the progress bar was not shown");
    await screenshot(driver, "evaluation-progress.png");
    const result = await waitInPage(driver, evaluationResult, [], { timeout: 120_000, message: "the evaluation did not finish" });
    assert.equal(result.error, undefined, `the evaluation failed: ${result.error}`);
    assert.ok(result.progressGone, "the progress bar stayed after the run");
    assert.match(result.summary, /^0 of 1 attempt passed/);
    assert.equal(result.attempts.length, 1, JSON.stringify(result));
    const [attempt] = result.attempts;
    assert.equal(attempt.passed, "false");
    assert.match(attempt.failures.join(" "), /expect_answer_contains: the answer lacks "84"/);
    assert.ok(attempt.canOpen, "the failed attempt has no run to open");
    await screenshot(driver, "evaluation-report.png");
  });

  it("opens the failed task's run in the Inspector", async () => {
    await driver.findElement(By.css('[data-testid="eval-open-run"]')).click();
    const run = await waitInPage(driver, inspectedEvaluationRun, [], { timeout: 30_000, message: "the run did not open in the Inspector" });
    assert.ok(run.marked, "the Inspector does not say the run is an evaluation's");
    assert.ok(run.kinds.includes("ModelReplied"), run.kinds.join(", "));
    assert.match(run.text, /Answered by scripted/);
    assert.match(run.text, /Status answered/);
    await screenshot(driver, "evaluation-inspector.png");
  });
});
