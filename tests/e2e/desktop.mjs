// Drives the real keel-desktop app over WebDriver: one tauri-driver per data dir, sessions on top of it.
//
// The app inherits its environment from tauri-driver (tauri-driver → WebKitWebDriver → app), so the data
// dir (KEEL_HOME) is fixed per tauri-driver process. Each test therefore starts its own tauri-driver with a
// fresh KEEL_HOME, and "restarting the app" is ending the WebDriver session and opening a new one on the same
// driver: the new app process sees the same KEEL_HOME. Everything started here is stopped by PID.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, readdirSync, readFileSync } from "node:fs";
import { access, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Builder, By } from "selenium-webdriver";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Where screenshots and logs go: $E2E_OUT, else test-output/e2e under the repo root. */
export const outDir = path.resolve(repoRoot, process.env.E2E_OUT ?? "test-output/e2e");

export function desktopBinary() {
  const bin = process.env.KEEL_DESKTOP_BIN;
  if (!bin || !path.isAbsolute(bin)) {
    throw new Error("set KEEL_DESKTOP_BIN to the absolute path of the built keel-desktop binary");
  }
  return bin;
}

/**
 * A fresh, empty data dir for one test; removed by the returned function unless E2E_KEEP_HOME is set. It is made
 * under E2E_TMPDIR when set (run.sh sets it to a folder it removes on exit, also when a test was killed).
 */
export async function makeKeelHome(name) {
  const dir = await mkdtemp(path.join(process.env.E2E_TMPDIR ?? os.tmpdir(), `keel-e2e-${name}-`));
  return {
    dir,
    async remove() {
      if (!process.env.E2E_KEEP_HOME) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP port nothing listens on now, on loopback. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Starts tauri-driver (and through it WebKitWebDriver) with KEEL_HOME (and any `env` overrides) set. Needs DISPLAY (run.sh starts Xvfb).
 * Returns its server URL and a stop function.
 */
export async function startDriver({ keelHome, name, env = {} }) {
  if (!process.env.DISPLAY) throw new Error("DISPLAY is not set; run the tests through tests/e2e/run.sh");
  const port = await freePort();
  let nativePort = await freePort();
  while (nativePort === port) nativePort = await freePort();

  await mkdir(outDir, { recursive: true });
  const logPath = path.join(outDir, `tauri-driver-${name}.log`);
  const log = createWriteStream(logPath);
  const command = process.env.TAURI_DRIVER ?? "tauri-driver";
  const child = spawn(command, ["--port", String(port), "--native-port", String(nativePort)], {
    env: { ...process.env, ...env, KEEL_HOME: keelHome },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);

  let exited = null;
  const exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve();
    });
    child.once("error", (error) => {
      exited = { error };
      resolve();
    });
  });

  const deadline = Date.now() + 30_000;
  while (!(await portOpen(port))) {
    if (exited) throw new Error(`tauri-driver exited early (${JSON.stringify(exited)}); see ${logPath}`);
    if (Date.now() > deadline) {
      child.kill("SIGTERM");
      throw new Error(`tauri-driver did not listen on port ${port} within 30 s; see ${logPath}`);
    }
    await sleep(100);
  }

  return {
    url: `http://127.0.0.1:${port}/`,
    logPath,
    async stop() {
      if (!exited) {
        // tauri-driver stops its WebKitWebDriver child on SIGTERM.
        child.kill("SIGTERM");
        const timer = setTimeout(() => exited || child.kill("SIGKILL"), 5_000);
        await exit;
        clearTimeout(timer);
      }
      log.end();
    },
  };
}

/** Opens a WebDriver session, which launches a new keel-desktop process. */
export async function launchApp(driverUrl) {
  return new Builder()
    .usingServer(driverUrl)
    .withCapabilities({ browserName: "wry", "tauri:options": { application: desktopBinary() } })
    .build();
}

/**
 * What a test file's `before` hook starts: a fresh KEEL_HOME (`makeKeelHome`), a tauri-driver on it with `env` on
 * top (`startDriver`) and the app (`launchApp`). `driver` is the current session; `restart()` ends it and
 * launches the app again on the same driver, so on the same KEEL_HOME, and returns the new session; `close()`,
 * for the `after` hook, stops all of it. When a step of the start fails, what it had started is stopped.
 */
export async function openDesktop(name, { env = {} } = {}) {
  const home = await makeKeelHome(name);
  let server;
  try {
    server = await startDriver({ keelHome: home.dir, name, env });
    const desktop = {
      home,
      server,
      driver: await launchApp(server.url),
      async restart() {
        await settleWithin(desktop.driver.quit(), 20_000, "quitting the app before a restart");
        desktop.driver = undefined;
        desktop.driver = await launchApp(server.url);
        return desktop.driver;
      },
      async close() {
        // A WebDriver that died under the session can leave quit() waiting forever; the hook must not.
        await settleWithin(desktop.driver?.quit(), 20_000, "quitting the app").catch(() => {});
        await server.stop();
        // An app whose WebKitWebDriver died is not closed by anyone and keeps this file's process alive (it holds
        // the inherited pipes); every app started on this test's KEEL_HOME is stopped here.
        killAppsOf(home.dir);
        await home.remove();
      },
    };
    return desktop;
  } catch (error) {
    await server?.stop();
    await home.remove();
    throw error;
  }
}

/** SIGKILLs every process whose environment has KEEL_HOME=`homeDir` (the apps a test started). */
export function killAppsOf(homeDir) {
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
      if (env.includes(`KEEL_HOME=${homeDir}`)) process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone already, or not ours to read.
    }
  }
}

/** Resolves as `promise` does, or rejects once `ms` have passed (naming `what`). */
export function settleWithin(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** Polls a function run in the page until it returns a truthy value; the value is returned. */
export async function waitInPage(driver, fn, args, { timeout, message }) {
  return driver.wait(async () => (await driver.executeScript(fn, ...args)) || false, timeout, message, 250);
}

/** How long a test waits for the model to answer one message. */
export const REPLY_TIMEOUT = 120_000;

// Page-side helpers, run with executeScript (serialised, so they must not close over anything).

/** The last finished assistant message with text, or the error shown instead of one. */
export function finishedReply() {
  const error = document.querySelector('[data-testid="error"]');
  if (error) return { error: error.textContent.trim().replace(/\s+/g, " ") };
  const replies = [...document.querySelectorAll('[data-testid="message"][data-role="assistant"]')];
  const last = replies[replies.length - 1];
  if (!last || last.hasAttribute("data-streaming")) return null;
  const text = (last.querySelector('[data-testid="message-text"]') ?? last).textContent.trim();
  if (text === "") return null;
  return { runId: last.getAttribute("data-run-id"), text, outcome: last.getAttribute("data-outcome") };
}

/** Types `text` into the chat input and presses Send. */
export async function sendMessage(driver, text) {
  await driver.findElement(By.css('[data-testid="message-input"]')).sendKeys(text);
  await driver.findElement(By.css('[data-testid="send-button"]')).click();
}

/**
 * Waits for the last assistant reply to finish (`finishedReply`) and returns it: `{ runId, text, outcome }`.
 * Fails when the app shows an error instead.
 */
export async function waitForReply(driver, { timeout = REPLY_TIMEOUT, message } = {}) {
  const reply = await waitInPage(driver, finishedReply, [], {
    timeout,
    message: message ?? `no finished reply within ${timeout / 1000} s`,
  });
  assert.equal(reply.error, undefined, `the app showed an error: ${reply.error}`);
  return reply;
}

/** The model banner's state and text, or null before it renders. */
function readModelBanner() {
  const el = document.querySelector('[data-testid="model-status"]');
  return el ? { state: el.getAttribute("data-state"), text: el.textContent.trim().replace(/\s+/g, " ") } : null;
}

/** Waits for data-state="ready"; fails at once on a state the app cannot leave by itself. */
export async function waitForModelReady(driver, timeout = 120_000) {
  const deadline = Date.now() + timeout;
  let last = null;
  while (Date.now() < deadline) {
    last = await driver.executeScript(readModelBanner);
    if (last?.state === "ready") return last;
    if (last && ["missing", "corrupt", "error"].includes(last.state)) {
      throw new Error(`model did not load (state ${last.state}): ${last.text}`);
    }
    await sleep(500);
  }
  throw new Error(`model not ready after ${timeout / 1000} s; last banner: ${JSON.stringify(last)}`);
}

/** Saves a PNG into outDir after a short pause: Xvfb can hand back a frame from before the last repaint. */
export async function screenshot(driver, name) {
  await sleep(1_000);
  await mkdir(outDir, { recursive: true });
  const file = path.join(outDir, name);
  await writeFile(file, Buffer.from(await driver.takeScreenshot(), "base64"));
  return file;
}

/** Whether `file` exists. */
export async function exists(file) {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** In the page: true while the chat shows no approval card. */
export function noApprovalCard() {
  return document.querySelector('[data-testid="approval"]') === null;
}
