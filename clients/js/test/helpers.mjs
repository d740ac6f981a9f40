// Starts the chat example per test file (as e2e/helpers.mjs does) and mints dev tokens.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const READY = /^MARIE chat example listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/;

/** Path of the example binary: $MARIE_CHAT_BIN or ../../target/debug/examples/chat (from clients/js). */
export function chatBinary() {
  const fromEnv = process.env.MARIE_CHAT_BIN;
  return fromEnv ? path.resolve(fromEnv) : path.resolve(HERE, '../../../target/debug/examples/chat');
}

/** Starts the chat example on an ephemeral port; resolves to { url, stop, output }. */
export async function startChat({ env = {}, readyTimeoutMs = 30_000 } = {}) {
  const bin = chatBinary();
  if (!existsSync(bin)) {
    throw new Error(`chat example not found at ${bin}: build it (cargo build -p marie-examples --example chat) or set MARIE_CHAT_BIN`);
  }
  const child = spawn(bin, [], {
    env: { ...process.env, MARIE_ADDR: '127.0.0.1:0', MARIE_ECHO_DELAY_MS: '25', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    output.push(chunk);
    if (process.env.MARIE_TEST_VERBOSE) process.stderr.write(chunk);
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
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  }
  return { url, stop, output };
}

/** POST /api/dev/token: a dev token for `userId`. */
export async function devToken(baseUrl, userId) {
  const res = await fetch(new URL('/api/dev/token', baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: userId }),
    signal: AbortSignal.timeout(5_000),
  });
  if (!res.ok) throw new Error(`dev token for ${userId}: HTTP ${res.status}`);
  return (await res.json()).token;
}

/** Rejects after `ms` unless `promise` settles first. */
export function within(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** A unique conversation id. */
export function convId(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A MarieClient for `user` on `url` (WebSocket only, quick reconnects). Close it when done.
 */
export async function makeClient(url, user, options = {}) {
  const { MarieClient } = await import('../dist/index.js');
  return new MarieClient({
    url,
    token: () => devToken(url, user),
    ackTimeoutMs: 5_000,
    ...options,
    socketOptions: { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 300, ...(options.socketOptions ?? {}) },
  });
}

/** `n` distinct words, as one message. */
export function words(n, prefix = 'w') {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`).join(' ');
}
