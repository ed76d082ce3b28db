// The desktop app without its model file: the banner says the model is missing, names the command that fetches
// it, and sending is disabled, so nothing the user types is lost to a turn that cannot run.

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { By } from "selenium-webdriver";
import { openDesktop, screenshot, waitInPage } from "./desktop.mjs";

function banner() {
  const el = document.querySelector('[data-testid="model-status"]');
  if (!el || !["missing", "corrupt", "error", "ready"].includes(el.getAttribute("data-state"))) return null;
  return { state: el.getAttribute("data-state"), text: el.textContent.replace(/\s+/g, " ").trim() };
}

describe("desktop app with no model file", { timeout: 120_000 }, () => {
  let desktop;
  let driver;

  before(async () => {
    const emptyModels = await mkdtemp(path.join(process.env.E2E_TMPDIR ?? os.tmpdir(), "keel-no-models-"));
    desktop = await openDesktop("missing-model", { env: { KEEL_MODELS_DIR: emptyModels } });
    driver = desktop.driver;
  });

  after(async () => {
    await desktop?.close();
  });

  it("says the model is missing and how to fetch it", async () => {
    const shown = await waitInPage(driver, banner, [], { timeout: 30_000, message: "the model banner never settled" });
    assert.equal(shown.state, "missing", JSON.stringify(shown));
    assert.match(shown.text, /SmolLM2-135M-Instruct\.Q4_1\.gguf/);
    assert.match(shown.text, /keel models fetch/);
    const send = await driver.findElement(By.css('[data-testid="send-button"]'));
    assert.equal(await send.isEnabled(), false, "sending is disabled while the model is missing");
    await screenshot(driver, "missing-model.png");
  });
});
