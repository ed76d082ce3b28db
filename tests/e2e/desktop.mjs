// Drives the real keel-desktop app over WebDriver: one tauri-driver per data dir, sessions on top of it.
//
// The app inherits its environment from tauri-driver (tauri-driver → WebKitWebDriver → app), so the data
// dir (KEEL_HOME) is fixed per tauri-driver process. Each test therefore starts its own tauri-driver with a
// fresh KEEL_HOME, and "restarting the app" is ending the WebDriver session and opening a new one on the same
// driver: the new app process sees the same KEEL_HOME. Everything started here is stopped by PID.

import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Builder } from "selenium-webdriver";

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

async function freePort() {
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

/** Polls a function run in the page until it returns a truthy value; the value is returned. */
export async function waitInPage(driver, fn, args, { timeout, message }) {
  return driver.wait(async () => (await driver.executeScript(fn, ...args)) || false, timeout, message, 250);
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
