// Starts the real backend (`ticketing up`) on free ports with a fresh data directory, and
// headless Chromium (Debian's, driven by playwright-core). Everything started here is stopped
// by `stop()`, also when a test fails, and on process exit as a last resort.

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const webDir = path.resolve(here, '..');
export const repoDir = path.resolve(webDir, '..');
export const artifactsDir = path.join(here, 'artifacts');

/** The expiration window of every order in these tests (seconds). */
export const EXPIRATION_WINDOW_SECONDS = Number(process.env.E2E_EXPIRATION_WINDOW_SECONDS ?? 20);
const READY_TIMEOUT_MS = Number(process.env.E2E_READY_TIMEOUT_MS ?? 180_000);

export function log(...parts) {
  console.log(`[e2e ${new Date().toISOString().slice(11, 19)}]`, ...parts);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function ticketingBinary() {
  const bin = process.env.TICKETING_BIN || 'target/debug/ticketing';
  return path.isAbsolute(bin) ? bin : path.resolve(repoDir, bin);
}

/**
 * Starts `ticketing up` in its own process group. Returns {baseUrl, stop, logFile}.
 */
export async function startBackend() {
  const bin = ticketingBinary();
  if (!existsSync(bin)) {
    throw new Error(`The ticketing binary is missing at ${bin}: build it (cargo build -p ticketing) or set TICKETING_BIN.`);
  }
  const dist = path.join(webDir, 'dist');
  if (!existsSync(path.join(dist, 'index.html'))) {
    throw new Error(`The web client is not built (${dist}/index.html missing): run npm --prefix web run build.`);
  }
  mkdirSync(artifactsDir, { recursive: true });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ticketing-e2e-'));
  const port = await freePort();
  let kafkaPort = await freePort();
  while (kafkaPort === port) kafkaPort = await freePort();
  const env = { ...process.env };
  for (const name of ['KAFKA_BOOTSTRAP_SERVERS', 'SCHEMA_REGISTRY_URL', 'SCYLLA_URI']) delete env[name];
  Object.assign(env, {
    TICKETING_ADDR: `127.0.0.1:${port}`,
    TICKETING_DATA_DIR: dataDir,
    TICKETING_KAFKA_PORT: String(kafkaPort),
    TICKETING_STORE: 'embedded',
    KAFKA_TOPIC_PARTITIONS: '3',
    JWT_KEY: 'e2e-test-jwt-key-that-is-long-enough-0123456789',
    EXPIRATION_WINDOW_SECONDS: String(EXPIRATION_WINDOW_SECONDS),
    SIGNIN_LIMIT_PER_ADDRESS: 'off',
    TICKETING_WEB_DIR: dist,
    RUST_LOG: process.env.RUST_LOG ?? 'info',
  });
  const logFile = path.join(artifactsDir, 'ticketing.log');
  const out = createWriteStream(logFile);
  log(`starting ${bin} up on 127.0.0.1:${port} (kafka ${kafkaPort}, data ${dataDir})`);
  const child = spawn(bin, ['up'], { cwd: repoDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  let exited = null;
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const lastResort = () => killGroup('SIGKILL');
  process.on('exit', lastResort);
  // Stopped from outside (a timeout, Ctrl-C): take the backend and its broker along.
  const onSignal = (signal) => {
    killGroup('SIGKILL');
    if (!process.env.E2E_KEEP_DATA) rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      // The launcher stops its components, then the broker it started.
      log('stopping ticketing (SIGTERM)');
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const done = await Promise.race([exitedPromise, sleep(30_000).then(() => null)]);
      if (!done) {
        log('ticketing did not stop in 30 s: SIGKILL');
        killGroup('SIGKILL');
        await Promise.race([exitedPromise, sleep(5_000)]);
      }
    }
    // Children of the group (the broker's JVM) go with it; make sure.
    killGroup('SIGKILL');
    process.off('exit', lastResort);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    out.end();
    if (!process.env.E2E_KEEP_DATA) rmSync(dataDir, { recursive: true, force: true });
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  const started = Date.now();
  try {
    for (;;) {
      if (exited) throw new Error(`ticketing exited before it was ready (${JSON.stringify(exited)}); see ${logFile}`);
      if (Date.now() - started > READY_TIMEOUT_MS) throw new Error(`ticketing was not ready within ${READY_TIMEOUT_MS / 1000} s; see ${logFile}`);
      try {
        const response = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(3_000) });
        if (response.status === 200) break;
      } catch {
        // not listening yet
      }
      await sleep(1_000);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  log(`ticketing ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { baseUrl, stop, logFile };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium; playwright-core gives it a fresh temporary profile (user data dir). */
export async function startBrowser() {
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`Chromium is missing at ${executablePath}: run scripts/install-web.sh`);
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A browser context (its own cookie jar: one user) with a page that records errors, and a
 * `shot(name)` saving a screenshot into e2e/artifacts.
 */
export async function newUserPage(browser, baseUrl, name, options = {}) {
  const context = await browser.newContext({ baseURL: baseUrl, viewport: { width: 1200, height: 900 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  // Everything the page did, for reading after a failure: e2e/artifacts/<name>.log.
  const trail = createWriteStream(path.join(artifactsDir, `${name}.log`));
  const note = (line) => trail.write(`${new Date().toISOString().slice(11, 23)} ${line}\n`);
  page.on('pageerror', (error) => {
    problems.push(`pageerror: ${error.message}`);
    note(`pageerror ${error.stack ?? error.message}`);
  });
  page.on('console', (message) => {
    note(`console.${message.type()} ${message.text()}`);
    // Chromium logs every 4xx answer of a fetch as a console error; the tests expect some.
    // Server errors are caught below, from the answers themselves.
    if (message.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) note(`navigated ${frame.url()}`);
  });
  page.on('request', (request) => {
    if (request.resourceType() === 'document' || request.url().includes('/api/')) {
      const token = request.headers()['x-consistency-token'];
      note(`> ${request.method()} ${request.url()} ${request.postData() ?? ''}${token ? ` token=${token}` : ''}`);
    }
  });
  page.on('response', (response) => {
    const request = response.request();
    if (request.resourceType() === 'document' || request.url().includes('/api/')) {
      const token = response.headers()['x-consistency-token'];
      if (response.status() >= 500) problems.push(`${response.status()} ${request.method()} ${response.url()}`);
      note(`< ${response.status()} ${request.method()} ${response.url()}${token ? ` token=${token}` : ''}`);
    }
  });
  context.on('close', () => trail.end());
  let step = 0;
  const shot = async (label) => {
    step += 1;
    const file = path.join(artifactsDir, `${name}-${String(step).padStart(2, '0')}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    note(`screenshot ${path.basename(file)}`);
    return file;
  };
  return { context, page, problems, shot };
}

export function cleanArtifacts() {
  rmSync(artifactsDir, { recursive: true, force: true });
  mkdirSync(artifactsDir, { recursive: true });
}
