// Shared helpers for the end-to-end tests: start the chat example, wait for
// events with a deadline, record what a socket receives.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const READY = /^MARIE chat example listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/;

/** Path of the example binary: $MARIE_CHAT_BIN or ../target/debug/examples/chat. */
export function chatBinary() {
  const fromEnv = process.env.MARIE_CHAT_BIN;
  return fromEnv ? path.resolve(fromEnv) : path.resolve(HERE, '../target/debug/examples/chat');
}

/**
 * Starts the chat example on an ephemeral port and resolves once it printed its
 * listening line. Resolves to { url, child, output, stop }.
 */
export async function startChat({ env = {}, readyTimeoutMs = 30_000 } = {}) {
  const bin = chatBinary();
  if (!existsSync(bin)) {
    throw new Error(`chat example not found at ${bin}: run \`cargo build -p marie-examples --example chat\` or set MARIE_CHAT_BIN`);
  }
  const child = spawn(bin, [], {
    env: { ...process.env, MARIE_ADDR: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    output.push(chunk);
    if (process.env.MARIE_E2E_VERBOSE) process.stderr.write(chunk);
  });

  const url = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const fail = (why) => {
      clearTimeout(timer);
      lines.close();
      child.kill('SIGKILL');
      reject(new Error(`${why}\n--- chat example stderr ---\n${output.join('').slice(-4000)}`));
    };
    const timer = setTimeout(() => fail(`no listening line within ${readyTimeoutMs} ms`), readyTimeoutMs);
    child.once('error', (err) => fail(`cannot start ${bin}: ${err.message}`));
    child.once('exit', (code, signal) => fail(`chat example exited early (code ${code}, signal ${signal})`));
    lines.on('line', (line) => {
      output.push(`[stdout] ${line}\n`);
      const m = READY.exec(line);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.removeAllListeners('error');
        resolve(m[1]);
      }
    });
  });

  async function stop() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  return { url, child, output, stop };
}

/** Resolves with the next `event` on `emitter` (its first argument), rejects after `ms`. */
export function once(emitter, event, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    function handler(arg) {
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(arg);
    }
    emitter.on(event, handler);
  });
}

/**
 * Launches Debian's headless Chromium ($CHROMIUM_BIN or /usr/bin/chromium) through
 * playwright-core, within a minute.
 */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return within(chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A page served by servePageFromDisk counts as public: let it reach 127.0.0.1.
      ...(process.env.MARIE_E2E_PAGE_FROM_DISK ? ['--disable-features=LocalNetworkAccessChecks'] : [])],
  }), 60_000, 'launching Chromium');
}

/**
 * A new page (in its own context) of the chat example at `url`, logged in as `user`;
 * script errors are pushed to `errors`.
 */
export async function openChatPage(browser, url, user, errors) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  await servePageFromDisk(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (err) => errors.push(`${user} pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`${user} console: ${msg.text()}`); });
  await page.goto(url);
  await page.getByTestId('login-user').fill(user);
  await page.getByTestId('login-button').click();
  await page.locator('[data-testid="connection-status"][data-state="connected"]').waitFor();
  return page;
}

const PAGE_FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript'],
  '/marie-client.js': ['marie-client.js', 'text/javascript'],
  '/style.css': ['style.css', 'text/css'],
  '/marked.umd.js': ['marked.umd.js', 'text/javascript'],
  '/purify.min.js': ['purify.min.js', 'text/javascript'],
};

/**
 * With MARIE_E2E_PAGE_FROM_DISK=1, the pages of `context` get index.html, app.js,
 * style.css, marie-client.js (the client built from clients/js by `npm run build:page`) and
 * the vendored marked.umd.js and purify.min.js from examples/chat/static instead of the
 * copies built into the example: page changes can be tried without building it again.
 */
export async function servePageFromDisk(context) {
  if (!process.env.MARIE_E2E_PAGE_FROM_DISK) return;
  const dir = path.resolve(HERE, '../examples/chat/static');
  await context.route((url) => Object.hasOwn(PAGE_FILES, url.pathname), async (route) => {
    const [file, contentType] = PAGE_FILES[new URL(route.request().url()).pathname];
    await route.fulfill({ status: 200, contentType, body: await readFile(path.join(dir, file)) });
  });
}

/**
 * Reloads a chat page logged in as `user`: the page keeps its login for a reload of the tab
 * (sessionStorage) and connects again by itself, as that user.
 */
export async function reloadChatPage(page, user) {
  await page.reload();
  await page.locator('[data-testid="connection-status"][data-state="connected"]', { hasText: user }).waitFor();
}

/** Rejects after `ms` unless `promise` settles first. */
export function within(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Records every event a socket.io-client socket receives from the server, in
 * order, and lets a test wait for one that matches.
 */
export class Recorder {
  constructor(socket) {
    this.events = []; // [{ event, data }]
    this.waiters = new Set();
    socket.onAny((event, data) => {
      const rec = { event, data };
      this.events.push(rec);
      for (const w of this.waiters) {
        if (w.matches(rec)) w.done(rec);
      }
    });
  }

  /** All recorded payloads of `event` satisfying `pred`. */
  all(event, pred = () => true) {
    return this.events.filter((r) => r.event === event && pred(r.data)).map((r) => r.data);
  }

  /** How many events were recorded so far: pass it as `from` to wait for newer ones. */
  mark() {
    return this.events.length;
  }

  /**
   * The first `event` satisfying `pred`, recorded at index `from` or later (or the
   * next one to arrive); rejects after `ms`.
   */
  waitFor(event, pred = () => true, { ms = 5_000, from = 0 } = {}) {
    const matches = (r) => r.event === event && pred(r.data);
    const seen = this.events.slice(from).find(matches);
    if (seen) return Promise.resolve(seen.data);
    return new Promise((resolve, reject) => {
      const waiter = {
        matches,
        done: (rec) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(rec.data);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const got = this.events.map((r) => r.event).join(', ') || 'nothing';
        reject(new Error(`timed out after ${ms} ms waiting for "${event}" (received: ${got})`));
      }, ms);
      this.waiters.add(waiter);
    });
  }
}

/** POST /api/dev/token; resolves to { status, body }. */
export async function devToken(baseUrl, userId, roles) {
  const res = await fetch(new URL('/api/dev/token', baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(roles ? { user_id: userId, roles } : { user_id: userId }),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}
