// A tool call that needs the user's approval, through the real desktop app with the scripted backend
// (KEEL_SCRIPTED_BACKEND, src/llm/scripted.rs) in place of the model, so that the model's replies are fixed:
// the approval card shows the exact call, Approve runs it (the file is written) and the answer follows, and the
// inspector shows the call with its arguments, result, attempts and latency; in a second data dir, the card
// survives a restart of the app and Deny leaves the file unwritten.
//
// Run through tests/e2e/run.sh (it starts Xvfb); needs KEEL_DESKTOP_BIN. The chat model is not used; the
// embedding model (KEEL_MODELS_DIR) is used for the turn's memory step when it is there, and the run goes on
// without memory when it is not.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { By } from "selenium-webdriver";
import {
  exists,
  noApprovalCard,
  openDesktop,
  screenshot,
  sendMessage,
  waitForModelReady,
  waitForReply,
  waitInPage,
} from "./desktop.mjs";

// "file" in the message makes the core run it in ReAct mode with tools (interface::needs_tools).
const APPROVE_MESSAGE = "Save a note to a file: buy milk";
const DENY_MESSAGE = "Save a note to a file: sell milk";
// What rule 1 has the model ask for, whichever message it was: the deny flow's card shows the same call.
const ARGUMENTS = { path: "notes/todo.txt", content: "buy milk" };
const CARD_TIMEOUT = 120_000;

// Each rule answers when its `when` occurs in the last message the model is shown: the user's message first,
// then the tool's result (`<tool_result call="c1" tool="files_write" status="ok">…`) or the note that the user
// denied the call.
const SCRIPT = {
  rules: [
    { when: "Save a note", reply: JSON.stringify({ tool: "files_write", arguments: ARGUMENTS }), delay_ms: 0 },
    { when: 'status="ok"', reply: JSON.stringify({ answer: "Saved your note." }), delay_ms: 0 },
    { when: "the user denied", reply: JSON.stringify({ answer: "I did not save it." }), delay_ms: 0 },
  ],
};

// Page-side helpers, run with executeScript (serialised, so they must not close over anything).

/** The approval card as shown, or the error shown instead of one; null while neither is there. */
function approvalCard() {
  const error = document.querySelector('[data-testid="error"]');
  if (error) return { error: error.textContent.trim().replace(/\s+/g, " ") };
  const card = document.querySelector('[data-testid="approval"]');
  if (!card) return null;
  const text = (testid) => card.querySelector(`[data-testid="${testid}"]`)?.textContent ?? null;
  return {
    runId: card.getAttribute("data-run-id"),
    callId: card.getAttribute("data-call-id"),
    tool: text("approval-tool")?.trim(),
    effect: card.getAttribute("data-effect"),
    reason: text("approval-reason")?.trim(),
    arguments: text("approval-arguments"),
    approve: card.querySelector('[data-testid="approve"]') !== null,
    deny: card.querySelector('[data-testid="deny"]') !== null,
  };
}

/** The inspector's tool blocks for run `runId`, once the run's log is shown up to its RunFinished. */
function inspectorTools(runId) {
  const inspector = document.querySelector(`[data-testid="inspector"][data-run-id="${runId}"]`);
  if (!inspector) return null;
  const kinds = [...inspector.querySelectorAll('[data-testid="inspector-step"]')].map((s) => s.getAttribute("data-kind"));
  if (!kinds.includes("RunFinished")) return null;
  const text = (el, testid) => el.querySelector(`[data-testid="${testid}"]`)?.textContent ?? null;
  return {
    kinds,
    status: inspector.querySelector('[data-testid="inspector-status"]')?.getAttribute("data-status") ?? null,
    tools: [...inspector.querySelectorAll('[data-testid="inspector-tool"]')].map((block) => ({
      callId: block.getAttribute("data-call-id"),
      tool: block.getAttribute("data-tool"),
      status: block.getAttribute("data-status"),
      arguments: text(block, "tool-arguments"),
      result: text(block, "tool-result"),
      attempts: text(block, "tool-attempts")?.trim(),
      latency: text(block, "tool-latency")?.trim(),
      policy: block.querySelector('[data-testid="tool-policy"]')?.getAttribute("data-decision") ?? null,
      approval: block.querySelector('[data-testid="tool-approval"]')?.getAttribute("data-answer") ?? null,
    })),
  };
}

/** The listed conversations, or null while there are none. */
function conversationItems() {
  const items = [...document.querySelectorAll('[data-testid="conversation-item"]')].map((item) => ({
    id: item.getAttribute("data-conversation-id"),
    title: (item.querySelector('[data-testid="conversation-title"]') ?? item).textContent.trim(),
  }));
  return items.length > 0 ? items : null;
}

/** Checks that the card shows files_write with exactly the scripted arguments, and returns it. */
async function waitForApprovalCard(driver, message) {
  const card = await waitInPage(driver, approvalCard, [], { timeout: CARD_TIMEOUT, message });
  assert.equal(card.error, undefined, `the app showed an error: ${card.error}`);
  assert.equal(card.tool, "files_write", JSON.stringify(card));
  assert.equal(card.effect, "write", JSON.stringify(card));
  assert.ok(card.reason, `the card gives no reason: ${JSON.stringify(card)}`);
  // Exactly the call's arguments (the core keeps JSON objects with sorted keys): nothing added or left out.
  assert.deepEqual(JSON.parse(card.arguments), ARGUMENTS);
  assert.ok(card.approve && card.deny, `the card lacks Approve or Deny: ${JSON.stringify(card)}`);
  return card;
}

describe("tools in the desktop app", { timeout: 600_000 }, () => {
  let script;

  before(async () => {
    script = await mkdtemp(path.join(process.env.E2E_TMPDIR ?? os.tmpdir(), "keel-e2e-script-"));
    await writeFile(path.join(script, "script.json"), JSON.stringify(SCRIPT, null, 2));
  });

  after(async () => {
    if (script && !process.env.E2E_KEEP_HOME) await rm(script, { recursive: true, force: true });
  });

  describe("approving a call", () => {
    let desktop;
    let driver;
    let card;
    let reply;

    before(async () => {
      desktop = await openDesktop("tools-approve", { env: { KEEL_SCRIPTED_BACKEND: path.join(script, "script.json") } });
      driver = desktop.driver;
    });

    after(async () => {
      await desktop?.close();
    });

    it("is ready with the scripted backend", async () => {
      await waitForModelReady(driver, 30_000);
    });

    it("asks for approval with the exact call", async () => {
      await sendMessage(driver, APPROVE_MESSAGE);
      card = await waitForApprovalCard(driver, "no approval card for the files_write call");
      const file = path.join(desktop.home.dir, "files", "notes", "todo.txt");
      assert.equal(await exists(file), false, "the file was written before the user approved");
      await screenshot(driver, "tools-approval.png");
    });

    it("runs the call once approved and shows the answer", async () => {
      assert.ok(card, "needs the card from the previous step");
      await driver.findElement(By.css('[data-testid="approval"] [data-testid="approve"]')).click();
      await waitInPage(driver, noApprovalCard, [], { timeout: 15_000, message: "the approval card stayed after Approve" });
      reply = await waitForReply(driver);
      assert.equal(reply.text, "Saved your note.");
      assert.equal(reply.runId, card.runId, "the answer belongs to the run that asked");

      const file = path.join(desktop.home.dir, "files", "notes", "todo.txt");
      assert.equal(await readFile(file, "utf8"), "buy milk");
      await screenshot(driver, "tools-approved.png");
    });

    it("shows the call in the inspector: arguments, result, attempts and latency", async () => {
      assert.ok(reply?.runId, "needs the answer from the previous step");
      await driver
        .findElement(By.css(`[data-testid="message"][data-run-id="${reply.runId}"] [data-testid="inspect-button"]`))
        .click();
      const shown = await waitInPage(driver, inspectorTools, [reply.runId], {
        timeout: 15_000,
        message: "the inspector did not show the run",
      });
      assert.equal(shown.status, "answered", JSON.stringify(shown));
      for (const kind of ["ApprovalRequested", "UserAnswered", "ToolCalled", "ToolReturned", "RunFinished"]) {
        assert.ok(shown.kinds.includes(kind), `no ${kind} step: ${shown.kinds.join(", ")}`);
      }
      assert.equal(shown.tools.length, 1, JSON.stringify(shown.tools));
      const [tool] = shown.tools;
      assert.equal(tool.tool, "files_write");
      assert.equal(tool.status, "ok", JSON.stringify(tool));
      assert.deepEqual(JSON.parse(tool.arguments), ARGUMENTS);
      const result = JSON.parse(tool.result);
      assert.equal(result.bytes, "buy milk".length, JSON.stringify(result));
      assert.equal(result.created, true, JSON.stringify(result));
      assert.match(String(result.path), /todo\.txt$/);
      assert.equal(tool.attempts, "1 attempt");
      assert.match(tool.latency, /^\d+(\.\d+)? (ms|s)$/, `no latency: ${JSON.stringify(tool)}`);
      assert.equal(tool.policy, "needs_approval", JSON.stringify(tool));
      assert.equal(tool.approval, "approved", JSON.stringify(tool));
      await screenshot(driver, "tools-inspector.png");
    });
  });

  describe("denying a call after a restart", () => {
    let desktop;
    let driver;

    before(async () => {
      desktop = await openDesktop("tools-deny", { env: { KEEL_SCRIPTED_BACKEND: path.join(script, "script.json") } });
      driver = desktop.driver;
    });

    after(async () => {
      await desktop?.close();
    });

    it("is ready with the scripted backend", async () => {
      await waitForModelReady(driver, 30_000);
    });

    it("asks for approval", async () => {
      await sendMessage(driver, DENY_MESSAGE);
      await waitForApprovalCard(driver, "no approval card for the files_write call");
    });

    it("asks again after a restart of the app", async () => {
      driver = await desktop.restart();
      await waitForModelReady(driver, 30_000);
      const conversations = await waitInPage(driver, conversationItems, [], {
        timeout: 15_000,
        message: "no conversations listed after the restart",
      });
      const paused = conversations.find((c) => c.title.startsWith("Save a note"));
      assert.ok(paused, `the conversation is not listed: ${JSON.stringify(conversations)}`);
      await driver.findElement(By.css(`[data-testid="conversation-item"][data-conversation-id="${paused.id}"]`)).click();
      await waitForApprovalCard(driver, "the approval card did not come back after the restart");
      await screenshot(driver, "tools-restart-approval.png");
    });

    it("writes nothing once denied and shows the answer", async () => {
      await driver.findElement(By.css('[data-testid="approval"] [data-testid="deny"]')).click();
      await waitInPage(driver, noApprovalCard, [], { timeout: 15_000, message: "the approval card stayed after Deny" });
      const reply = await waitForReply(driver);
      assert.equal(reply.text, "I did not save it.");
      // This data dir is the deny flow's own: no file may be there at all.
      const file = path.join(desktop.home.dir, "files", "notes", "todo.txt");
      assert.equal(await exists(file), false, `${file} was written although the user denied the call`);
      await screenshot(driver, "tools-denied.png");
    });
  });
});
