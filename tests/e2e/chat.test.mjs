// One chat turn through the real desktop app and the real local model: the reply streams in token by token,
// the inspector shows the run's steps in order, and the conversation survives a restart of the app.
//
// Run through tests/e2e/run.sh (it starts Xvfb); needs KEEL_DESKTOP_BIN and the fetched model.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { By } from "selenium-webdriver";
import {
  REPLY_TIMEOUT,
  openDesktop,
  screenshot,
  sendMessage,
  waitForModelReady,
  waitForReply,
  waitInPage,
} from "./desktop.mjs";

const QUESTION = "What is the capital of France?";

// Page-side helpers, run with executeScript (serialised, so they must not close over anything).

function installStreamRecorder() {
  window.__streamLengths = [];
  const record = () => {
    const streaming = document.querySelector('[data-testid="message"][data-streaming="true"]');
    if (!streaming) return;
    const body = streaming.querySelector('[data-testid="message-text"]') ?? streaming;
    const length = (body.textContent ?? "").length;
    const lengths = window.__streamLengths;
    if (lengths[lengths.length - 1] !== length) lengths.push(length);
  };
  window.__streamObserver?.disconnect();
  window.__streamObserver = new MutationObserver(record);
  window.__streamObserver.observe(document.body, {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
    attributeFilter: ["data-streaming"],
  });
  return true;
}

function inspectorKinds() {
  const inspector = document.querySelector('[data-testid="inspector"]');
  if (!inspector) return null;
  const kinds = [...inspector.querySelectorAll('[data-testid="inspector-step"]')].map((s) => s.getAttribute("data-kind"));
  return kinds.includes("RunFinished") ? kinds : null;
}

/** The listed conversations, or null while there are none. */
function conversationTitles() {
  const items = [...document.querySelectorAll('[data-testid="conversation-item"]')].map((item) => ({
    id: item.getAttribute("data-conversation-id"),
    title: (item.querySelector('[data-testid="conversation-title"]') ?? item).textContent.trim(),
  }));
  return items.length > 0 ? items : null;
}

/** The shown messages, or null until an assistant message is among them. */
function shownMessages() {
  const messages = [...document.querySelectorAll('[data-testid="message"]')].map((m) => ({
    role: m.getAttribute("data-role"),
    text: (m.querySelector('[data-testid="message-text"]') ?? m).textContent.trim(),
  }));
  return messages.some((m) => m.role === "assistant") ? messages : null;
}

/** True when `expected` appears in `actual` in order, other entries allowed in between. */
function inOrder(actual, expected) {
  let next = 0;
  for (const item of actual) if (item === expected[next]) next += 1;
  return next === expected.length;
}

describe("chat in the desktop app", { timeout: 600_000 }, () => {
  let desktop;
  let driver;
  let reply;

  before(async () => {
    desktop = await openDesktop("chat");
    driver = desktop.driver;
  });

  after(async () => {
    await desktop?.close();
  });

  it("loads the model", async () => {
    await waitForModelReady(driver);
  });

  it("streams a reply token by token", async () => {
    assert.equal(await driver.executeScript(installStreamRecorder), true);

    await sendMessage(driver, QUESTION);
    reply = await waitForReply(driver);
    assert.ok(reply.runId, "the finished reply has a data-run-id");

    const lengths = await driver.executeScript(() => window.__streamLengths);
    const grown = lengths.filter((n) => n > 0);
    assert.ok(new Set(grown).size >= 3, `expected at least 3 growing lengths while streaming, got ${JSON.stringify(lengths)}`);
    for (let i = 1; i < grown.length; i += 1) {
      assert.ok(grown[i] > grown[i - 1], `streamed text shrank: ${JSON.stringify(lengths)}`);
    }

    await screenshot(driver, "chat.png");
  });

  it("shows the run's steps in the inspector", async () => {
    assert.ok(reply?.runId, "needs the reply from the previous step");
    const inspect = await driver.findElement(
      By.css(`[data-testid="message"][data-run-id="${reply.runId}"] [data-testid="inspect-button"]`),
    );
    await inspect.click();

    const kinds = await waitInPage(driver, inspectorKinds, [], {
      timeout: 15_000,
      message: "the inspector did not show the run's steps",
    });
    const expected = ["RunStarted", "MemoryRetrieved", "ModelCalled", "ModelReplied", "RunFinished"];
    assert.ok(inOrder(kinds, expected), `expected ${expected.join(" → ")} in order, got ${kinds.join(", ")}`);

    await screenshot(driver, "inspector.png");
  });

  it("keeps the conversation across a restart", async () => {
    assert.ok(reply?.text, "needs the reply from the earlier step");
    driver = await desktop.restart();
    await waitForModelReady(driver);

    const conversations = await waitInPage(driver, conversationTitles, [], {
      timeout: 15_000,
      message: "no conversations listed after the restart",
    });
    const saved = conversations.find((c) => c.title.startsWith("What is the capital"));
    assert.ok(saved, `the conversation is not listed: ${JSON.stringify(conversations)}`);

    await driver.findElement(By.css(`[data-testid="conversation-item"][data-conversation-id="${saved.id}"]`)).click();
    const messages = await waitInPage(driver, shownMessages, [], {
      timeout: 15_000,
      message: "the conversation's messages did not load",
    });

    assert.ok(
      messages.some((m) => m.role === "user" && m.text === QUESTION),
      `the question is not shown again: ${JSON.stringify(messages)}`,
    );
    assert.ok(
      messages.some((m) => m.role === "assistant" && m.text === reply.text),
      `the answer is not shown again: ${JSON.stringify(messages)}`,
    );

    await screenshot(driver, "restart.png");
  });

  it("stops a streaming reply with the Stop button and keeps what was written", async () => {
    await driver.findElement(By.css('[data-testid="new-chat"]')).click();
    assert.equal(await driver.executeScript(installStreamRecorder), true);
    await sendMessage(driver, "Write a very long story about a dragon who learns to sail across the sea.");

    // Stop as soon as the first words have streamed in.
    await waitInPage(driver, () => (window.__streamLengths ?? []).some((n) => n > 0), [], {
      timeout: REPLY_TIMEOUT,
      message: "the reply never started streaming",
    });
    await driver.findElement(By.css('[data-testid="stop-button"]')).click();

    const stopped = await waitForReply(driver, { timeout: 30_000, message: "the stopped reply did not settle" });
    assert.equal(stopped.outcome, "stopped", `expected a stopped reply, got ${JSON.stringify(stopped)}`);
    assert.ok(stopped.text.length > 0, "the words written before Stop are kept");

    await driver
      .findElement(By.css(`[data-testid="message"][data-run-id="${stopped.runId}"] [data-testid="inspect-button"]`))
      .click();
    const kinds = await waitInPage(driver, inspectorKinds, [], {
      timeout: 15_000,
      message: "the inspector did not show the stopped run",
    });
    const expected = ["RunStarted", "MemoryRetrieved", "ModelCalled", "ModelReplied", "RunFinished"];
    assert.ok(inOrder(kinds, expected), `expected ${expected.join(" → ")} in order, got ${kinds.join(", ")}`);
    await screenshot(driver, "stopped.png");
  });
});
