// A remote OpenAI-compatible backend through the real desktop app: llama-cpp-python's server on loopback, on the
// SmolLM2 GGUF, wanting an API key (tests/fixtures/llama/README.md). In the Models & Backends view the test adds
// a profile for it, stores its key through the key field (the box empties, the row says "key set", the page never
// holds the key), and tests the connection (ok, the model is listed); in the chat it picks that backend, gets an
// answer, and the Inspector says which backend answered. Once the app is closed, no file in its data dir holds
// the key: it lives in the OS keyring only.
//
// Run through tests/e2e/run.sh inside scripts/with-keyring.sh (a D-Bus session with an unlocked Secret Service):
//   KEEL_DESKTOP_BIN=... KEEL_MODELS_DIR=... E2E_ONLY=backends scripts/with-keyring.sh tests/e2e/run.sh
// Needs the llama-cpp-python venv (KEEL_LLAMA_PYTHON, default ~/.cache/keel/llama-venv/bin/python) and the
// fetched models (KEEL_MODELS_DIR, default ~/.cache/keel/models): the server serves the chat model, and the app
// loads it as its local backend as in the other tests, though the turn here goes to the remote backend.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { By } from "selenium-webdriver";
import {
  desktopBinary,
  freePort,
  openDesktop,
  outDir,
  screenshot,
  sendMessage,
  settleWithin,
  waitForModelReady,
  waitForReply,
  waitInPage,
} from "./desktop.mjs";

const PROFILE = "lab";
const MODEL = "smollm2";
const MESSAGE = "Say hello in one short sentence.";
// Unique per run, so that finding it anywhere can only mean this run put it there.
const API_KEY = `sk-keel-e2e-${randomBytes(16).toString("hex")}`;

const keelCache = process.env.KEEL_CACHE ?? path.join(os.homedir(), ".cache", "keel");
const modelsDir = path.resolve(process.env.KEEL_MODELS_DIR ?? path.join(keelCache, "models"));
const gguf = path.join(modelsDir, "smollm2-135m-instruct-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf");
const llamaPython = process.env.KEEL_LLAMA_PYTHON ?? path.join(keelCache, "llama-venv", "bin", "python");

/** GET /v1/models on the server with `key` as the Bearer token (none when null); the status, or null on no answer. */
async function modelsStatus(port, key) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/v1/models`, {
      headers: key === null ? {} : { Authorization: `Bearer ${key}` },
      signal: AbortSignal.timeout(5_000),
    });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return null;
  }
}

/**
 * Starts llama-cpp-python's server the way tests/integration/llama_server.rs (`LlamaServer::start`) does, with
 * `--api_key`, on a free loopback port, and waits for an authorised GET /v1/models to answer 200. A port taken
 * between picking and binding makes the server exit; another port is tried then, as there.
 */
async function startLlamaServer(apiKey) {
  assert.ok(existsSync(llamaPython), `${llamaPython} is missing: scripts/setup.sh installs tests/fixtures/llama/requirements.txt into it`);
  assert.ok(existsSync(gguf), `${gguf} is missing: run KEEL_MODELS_DIR=${modelsDir} keel models fetch`);
  await mkdir(outDir, { recursive: true });
  const logPath = path.join(outDir, "llama-server-backends.log");
  const log = createWriteStream(logPath);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freePort();
    // PORT and HOST in the environment would override the flags (and CONFIG_FILE the whole command line).
    const env = { ...process.env };
    delete env.PORT;
    delete env.HOST;
    delete env.CONFIG_FILE;
    const child = spawn(
      llamaPython,
      [
        "-m", "llama_cpp.server",
        "--model", gguf,
        "--model_alias", MODEL,
        "--host", "127.0.0.1",
        "--port", String(port),
        "--n_ctx", "4096",
        "--n_threads", "1",
        "--n_threads_batch", "1",
        "--interrupt_requests", "False",
        "--verbose", "False",
        "--api_key", apiKey,
      ],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    let exited = null;
    const exit = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        exited = { code, signal };
        resolve();
      });
      child.once("error", (error) => {
        exited = { error: String(error) };
        resolve();
      });
    });
    const server = {
      port,
      baseUrl: `http://127.0.0.1:${port}/v1`,
      logPath,
      async stop() {
        if (!exited) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => exited || child.kill("SIGKILL"), 5_000);
          await exit;
          clearTimeout(timer);
        }
      },
      close() {
        log.end();
      },
    };

    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline) {
      if ((await modelsStatus(port, apiKey)) === 200) return server;
      await sleep(100);
    }
    await server.stop();
    log.write(`\n[backends.test] the server did not answer on port ${port} (attempt ${attempt}, exit ${JSON.stringify(exited)})\n`);
  }
  log.end();
  throw new Error(`llama_cpp.server did not start; see ${logPath}`);
}

/** Every regular file under `dir`, recursively (symlinks are not followed); with `skipUnreadable`, folders
 * that cannot be listed (another user's, or gone meanwhile) are skipped instead of failing. */
async function filesUnder(dir, { skipUnreadable = false } = {}) {
  const files = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (skipUnreadable) return files;
    throw e;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await filesUnder(full, { skipUnreadable })));
    else if (entry.isFile()) files.push(full);
  }
  return files;
}

/** The pids of the keel-desktop processes running on data dir `home` (not tauri-driver or WebKitWebDriver). */
function appPids(home) {
  const binary = path.basename(desktopBinary());
  const pids = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
      if (!env.includes(`KEEL_HOME=${home}`)) continue;
      const exe = path.basename(readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, ""));
      if (exe === binary) pids.push(Number(pid));
    } catch {
      // Gone already, or not ours to read.
    }
  }
  return pids;
}

// Page-side helpers, run with executeScript (serialised, so they must not close over anything).

/** The form's mode, the profile's row and the key form once the profile `name` is saved and edited; else null. */
function savedProfile(name) {
  const saveError = document.querySelector('[data-testid="backend-save-error"]');
  if (saveError) return { error: saveError.textContent.trim().replace(/\s+/g, " ") };
  const fieldErrors = [...document.querySelectorAll('[data-testid$="-error"]')]
    .filter((e) => e.closest('[data-testid="backend-form"]'))
    .map((e) => `${e.getAttribute("data-testid")}: ${e.textContent.trim()}`);
  if (fieldErrors.length > 0) return { error: fieldErrors.join("; ") };
  const row = document.querySelector(`[data-testid="backend-row-${name}"]`);
  const form = document.querySelector('[data-testid="backend-form"]');
  const keyForm = document.querySelector(`[data-testid="backend-key-form"][data-name="${name}"]`);
  if (!row || form?.getAttribute("data-mode") !== "edit" || !keyForm) return null;
  const text = (testid) => row.querySelector(`[data-testid="${testid}"]`)?.textContent.trim() ?? null;
  return {
    kind: row.getAttribute("data-kind"),
    key: row.getAttribute("data-key"),
    model: text("backend-row-model"),
    url: text("backend-row-url"),
    chain: row.querySelector('[data-testid="backend-row-fallback"]')?.getAttribute("data-chain") ?? null,
    isDefault: row.getAttribute("data-default"),
  };
}

/** The key field and the key's state as the row and the key form show it, once it says "set"; else null. */
function storedKey(name) {
  const keyError = document.querySelector('[data-testid="backend-key-error"]');
  if (keyError) return { error: keyError.textContent.trim().replace(/\s+/g, " ") };
  const row = document.querySelector(`[data-testid="backend-row-${name}"]`);
  const state = document.querySelector(`[data-testid="backend-key-form"][data-name="${name}"] [data-testid="backend-key-state"]`);
  const input = document.querySelector('[data-testid="backend-key"]');
  if (row?.getAttribute("data-key") !== "set" || state?.getAttribute("data-key") !== "set") return null;
  return {
    rowKey: row.getAttribute("data-key"),
    rowKeyLabel: row.querySelector('[data-testid="backend-row-key"]')?.textContent.trim() ?? null,
    stateKey: state.getAttribute("data-key"),
    stateLabel: state.textContent.trim(),
    inputValue: input ? input.value : null,
    inputDisabled: input ? input.disabled : null,
  };
}

/** The connection test's result under the row of `name`, once it is there and the test is over; else null. */
function testResult(name) {
  const error = document.querySelector('[data-testid="backends-error"]');
  if (error) return { error: error.textContent.trim().replace(/\s+/g, " ") };
  const row = document.querySelector(`[data-testid="backend-row-${name}"]`);
  const result = row?.querySelector('[data-testid="backend-test-result"]');
  if (!result || row.getAttribute("aria-busy") === "true") return null;
  const text = (testid) => result.querySelector(`[data-testid="${testid}"]`)?.textContent.trim().replace(/\s+/g, " ") ?? null;
  return {
    name: result.getAttribute("data-name"),
    ok: result.getAttribute("data-ok"),
    modelFound: result.getAttribute("data-model-found"),
    latencyMs: result.getAttribute("data-latency-ms"),
    summary: text("backend-test-summary"),
    message: text("backend-test-message"),
    hint: text("backend-test-hint"),
    models: text("backend-test-models"),
  };
}

/** The backend picker's value and options, once `name` is among them; else null. */
function pickerWith(name) {
  const select = document.querySelector('[data-testid="backend-picker"]');
  if (!select) return null;
  const options = [...select.options].map((o) => o.value);
  return options.includes(name) ? { value: select.value, options, disabled: select.disabled } : null;
}

/** The Inspector's steps for run `runId` and the backend its reply names, once RunFinished is shown; else null. */
function inspectorBackend(runId) {
  const inspector = document.querySelector(`[data-testid="inspector"][data-run-id="${runId}"]`);
  if (!inspector) return null;
  const kinds = [...inspector.querySelectorAll('[data-testid="inspector-step"]')].map((s) => s.getAttribute("data-kind"));
  if (!kinds.includes("RunFinished")) return null;
  return {
    kinds,
    status: inspector.querySelector('[data-testid="inspector-status"]')?.getAttribute("data-status") ?? null,
    backends: [...inspector.querySelectorAll('[data-testid="step-backend"]')].map((b) => ({
      backend: b.getAttribute("data-backend"),
      text: b.textContent.trim().replace(/\s+/g, " "),
      step: b.closest('[data-testid="inspector-step"]')?.getAttribute("data-kind") ?? null,
    })),
    fallbacks: [...inspector.querySelectorAll('[data-testid="step-fallback"]')].map((f) => f.getAttribute("data-backends")),
  };
}

describe("a remote backend in the desktop app", { timeout: 600_000 }, () => {
  let llama;
  let desktop;
  let driver;
  let home;
  let reply;
  let startedAt;
  let userHome;
  let userTmp;

  before(async () => {
    llama = await startLlamaServer(API_KEY);
    // The key is really needed: without it the server refuses, so the test's and the chat's success below
    // means the app sent the key it took from the keyring.
    assert.equal(await modelsStatus(llama.port, null), 401, "the server answers without the API key");
    // The app's local model comes from the same folder as the server's (the other tests' KEEL_MODELS_DIR).
    // A throwaway HOME (data, config, cache and state folders, where WebKit keeps its storage and caches) and
    // temporary folder for the app, so that the leak scan below covers everything it may write.
    startedAt = Date.now();
    userHome = await mkdtemp(path.join(os.tmpdir(), "keel-e2e-user-"));
    userTmp = await mkdtemp(path.join(os.tmpdir(), "keel-e2e-tmp-"));
    const xdg = {
      HOME: userHome,
      XDG_DATA_HOME: path.join(userHome, ".local", "share"),
      XDG_CONFIG_HOME: path.join(userHome, ".config"),
      XDG_CACHE_HOME: path.join(userHome, ".cache"),
      XDG_STATE_HOME: path.join(userHome, ".local", "state"),
      TMPDIR: userTmp,
    };
    desktop = await openDesktop("backends", { env: { KEEL_MODELS_DIR: modelsDir, ...xdg } });
    driver = desktop.driver;
    home = desktop.home.dir;
  });

  after(async () => {
    try {
      await desktop?.close();
    } finally {
      await llama?.stop();
      llama?.close();
      for (const dir of [userHome, userTmp]) if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  it("loads the local model", async () => {
    // As in the other tests: the local backend settles before the remote one is used, so that its load does not
    // compete with the server for the two cores during the turn.
    await waitForModelReady(driver);
  });

  it("adds a remote profile in Models & Backends", async () => {
    await driver.findElement(By.css('[data-testid="nav-backends"]')).click();
    await waitInPage(driver, () => document.querySelector('[data-testid="backends-list"]') !== null, [], {
      timeout: 15_000,
      message: "the Models & Backends view did not list the backends",
    });
    const form = await driver.findElement(By.css('[data-testid="backend-form"]'));
    assert.equal(await form.getAttribute("data-mode"), "add");
    await driver.findElement(By.css('[data-testid="backend-name"]')).sendKeys(PROFILE);
    await driver.findElement(By.css('[data-testid="backend-base-url"]')).sendKeys(llama.baseUrl);
    await driver.findElement(By.css('[data-testid="backend-model"]')).sendKeys(MODEL);
    const fallback = await driver.findElement(By.css('[data-testid="backend-fallback"]'));
    assert.equal(await fallback.getAttribute("value"), "", "the fallback box is not empty for a new profile");
    await driver.findElement(By.css('[data-testid="backend-save"]')).click();

    const saved = await waitInPage(driver, savedProfile, [PROFILE], {
      timeout: 15_000,
      message: `the profile ${PROFILE} was not saved`,
    });
    assert.equal(saved.error, undefined, `saving failed: ${saved.error}`);
    assert.equal(saved.kind, "remote", JSON.stringify(saved));
    assert.notEqual(saved.key, "unavailable", "the app reaches no OS keyring: run the suite inside scripts/with-keyring.sh");
    assert.equal(saved.key, "not_set", JSON.stringify(saved));
    assert.equal(saved.model, MODEL, JSON.stringify(saved));
    assert.equal(saved.url, llama.baseUrl, JSON.stringify(saved));
    assert.equal(saved.chain, "", JSON.stringify(saved));
    assert.equal(saved.isDefault, null, `the new profile became the default: ${JSON.stringify(saved)}`);
    await screenshot(driver, "backends-profile.png");
  });

  it("stores the API key in the keyring, and the page never holds it", async () => {
    const input = await driver.findElement(
      By.css(`[data-testid="backend-key-form"][data-name="${PROFILE}"] [data-testid="backend-key"]`),
    );
    assert.equal(await input.getAttribute("type"), "password");
    await input.sendKeys(API_KEY);
    const save = await driver.findElement(By.css('[data-testid="backend-key-save"]'));
    await driver.wait(() => save.isEnabled(), 5_000, "Save key did not become enabled after typing the key");
    await save.click();

    const stored = await waitInPage(driver, storedKey, [PROFILE], {
      timeout: 30_000,
      message: "the row and the key form did not say the key is set",
    });
    assert.equal(stored.error, undefined, `storing the key failed: ${stored.error}`);
    assert.equal(stored.inputValue, "", "the key box still holds text after Save key");
    assert.equal(stored.rowKeyLabel, "key set", JSON.stringify(stored));
    assert.equal(stored.stateLabel, "key set", JSON.stringify(stored));
    const html = await driver.getPageSource();
    assert.ok(html.includes(`data-testid="backend-row-${PROFILE}"`), "the page source is not the Backends view");
    assert.ok(!html.includes(API_KEY), "the page's HTML contains the API key");
    await screenshot(driver, "backends-key.png");
  });

  it("tests the connection: ok, and the server lists the model", async () => {
    await driver.findElement(By.css(`[data-testid="backend-test-${PROFILE}"]`)).click();
    const result = await waitInPage(driver, testResult, [PROFILE], {
      timeout: 60_000,
      message: `no test result under ${PROFILE}`,
    });
    assert.equal(result.error, undefined, `the test failed to run: ${result.error}`);
    assert.equal(result.name, PROFILE, JSON.stringify(result));
    assert.equal(result.ok, "true", `the connection test failed: ${JSON.stringify(result)}`);
    assert.equal(result.modelFound, "true", `the model was not found: ${JSON.stringify(result)}`);
    assert.match(result.models ?? "", new RegExp(`\\b${MODEL}\\b`), JSON.stringify(result));
    assert.ok(!(await driver.getPageSource()).includes(API_KEY), "the page's HTML contains the API key");
    await screenshot(driver, "backends-test.png");
  });

  it("answers in the chat through the remote backend, and the Inspector says so", async () => {
    await driver.findElement(By.css('[data-testid="view-chat"]')).click();
    const picker = await waitInPage(driver, pickerWith, [PROFILE], {
      timeout: 15_000,
      message: `the chat's backend picker does not offer ${PROFILE}`,
    });
    assert.equal(picker.value, "", `a new chat does not start on the default backend: ${JSON.stringify(picker)}`);
    await driver.findElement(By.css(`[data-testid="backend-picker"] option[value="${PROFILE}"]`)).click();
    await waitInPage(driver, (name) => document.querySelector('[data-testid="backend-picker"]')?.value === name, [PROFILE], {
      timeout: 5_000,
      message: `the backend picker did not switch to ${PROFILE}`,
    });

    await sendMessage(driver, MESSAGE);
    reply = await waitForReply(driver, { timeout: 180_000 });
    assert.ok(reply.runId, "the finished reply has a data-run-id");
    assert.equal(reply.outcome, "answered", JSON.stringify(reply));
    assert.ok(reply.text.length > 0, "the reply is empty");

    await driver
      .findElement(By.css(`[data-testid="message"][data-run-id="${reply.runId}"] [data-testid="inspect-button"]`))
      .click();
    const shown = await waitInPage(driver, inspectorBackend, [reply.runId], {
      timeout: 15_000,
      message: "the Inspector did not show the run",
    });
    assert.ok(shown.kinds.includes("ModelReplied"), `no ModelReplied step: ${shown.kinds.join(", ")}`);
    assert.ok(shown.backends.length >= 1, `no step-backend in the Inspector: ${JSON.stringify(shown)}`);
    for (const b of shown.backends) {
      assert.equal(b.backend, PROFILE, JSON.stringify(shown.backends));
      assert.equal(b.step, "ModelReplied", JSON.stringify(shown.backends));
      assert.match(b.text, new RegExp(`^Answered by ${PROFILE}$`), JSON.stringify(shown.backends));
    }
    assert.deepEqual(shown.fallbacks, [], "the reply came through a fallback");
    assert.ok(!(await driver.getPageSource()).includes(API_KEY), "the page's HTML contains the API key");
    await screenshot(driver, "backends-chat.png");
  });

  it("leaves no trace of the key in the data dir once the app is closed", async () => {
    await settleWithin(desktop.driver.quit(), 20_000, "quitting the app");
    desktop.driver = undefined;
    // The app has exited (and closed its database) before its files are read.
    const deadline = Date.now() + 20_000;
    while (appPids(home).length > 0) {
      assert.ok(Date.now() < deadline, `keel-desktop (pids ${appPids(home).join(", ")}) did not exit within 20 s of quitting`);
      await sleep(200);
    }

    // The key as UTF-8 and as UTF-16 (how WebKit and some stores keep strings), byte for byte in every file.
    const needles = [Buffer.from(API_KEY, "utf8"), Buffer.from(API_KEY, "utf16le")];
    // A control: the profile's base URL is stored with the profile, so the same scan must find it.
    const control = Buffer.from(llama.baseUrl, "utf8");
    const files = await filesUnder(home);
    const found = [];
    const withControl = [];
    for (const file of files) {
      const data = await readFile(file);
      if (needles.some((needle) => data.includes(needle))) found.push(path.relative(home, file));
      if (data.includes(control)) withControl.push(path.relative(home, file));
    }
    const names = files.map((f) => path.relative(home, f));
    assert.ok(names.includes("keel.sqlite3"), `no database among the data dir's files: ${names.join(", ")}`);
    assert.ok(withControl.length > 0, `the scan did not find the profile's base URL in any of ${names.join(", ")}`);
    assert.deepEqual(found, [], `the API key is in ${found.join(", ")}`);
  });

  it("leaves no trace of the key in the app's HOME (WebKit's folders too), its logs or /tmp", async () => {
    const needles = [Buffer.from(API_KEY, "utf8"), Buffer.from(API_KEY, "utf16le")];
    // Positive control: a file holding the key, written to /tmp now, must be found by the same scan.
    const control = path.join(os.tmpdir(), `keel-e2e-leak-control-${process.pid}`);
    await writeFile(control, `control ${API_KEY}\n`);
    try {
      const homeFiles = await filesUnder(userHome);
      // The app's WebKit storage and caches went to this HOME, so the scan covers them.
      const webkit = homeFiles.filter((f) => /dev\.keel\.desktop|webkit/i.test(path.relative(userHome, f)));
      assert.ok(webkit.length > 0, `no WebKit or app folder in the throwaway HOME: ${homeFiles.map((f) => path.relative(userHome, f)).join(", ")}`);
      // /tmp: every file written since the app started (other tests' old files are not this session's).
      const tmpFiles = [];
      for (const f of await filesUnder(os.tmpdir(), { skipUnreadable: true })) {
        const st = await stat(f).catch(() => undefined);
        if (st && st.mtimeMs >= startedAt - 1000 && st.size <= 256 * 1024 * 1024) tmpFiles.push(f);
      }
      // The app's output (through tauri-driver's); the loopback server's own log is the peer's, given the key.
      const logs = (await readdir(outDir)).filter((n) => n.startsWith("tauri-driver-") && n.endsWith(".log")).map((n) => path.join(outDir, n));
      assert.ok(logs.length > 0, `no app log in ${outDir}`);
      const scanned = [...new Set([...homeFiles, ...(await filesUnder(userTmp)), ...tmpFiles, ...logs])];
      const found = [];
      for (const file of scanned) {
        const data = await readFile(file).catch(() => Buffer.alloc(0));
        if (needles.some((needle) => data.includes(needle))) found.push(file);
      }
      console.log(`# leak scan: ${scanned.length} files (${homeFiles.length} in HOME, ${webkit.length} of them WebKit's or the app's; ${tmpFiles.length} in /tmp; ${logs.length} logs)`);
      assert.ok(found.includes(control), `the scan of ${scanned.length} files missed the control file ${control}`);
      assert.deepEqual(found.filter((f) => f !== control), [], `the API key is in ${found.join(", ")}`);
    } finally {
      await rm(control, { force: true });
    }
  });
});
