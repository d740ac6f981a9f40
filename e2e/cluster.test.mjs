// The cluster example (two MARIE nodes sharing the Redis on 127.0.0.1:6379) spoken to
// with the official socket.io-client: one client per node, one on WebSocket and one on
// HTTP long-polling only, in one conversation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { io } from 'socket.io-client';
import { Recorder, devToken } from './helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const READY = /^MARIE cluster (node-\d+) listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/;

function clusterBinary() {
  const fromEnv = process.env.MARIE_CLUSTER_BIN;
  return fromEnv ? path.resolve(fromEnv) : path.resolve(HERE, '../target/debug/examples/cluster');
}

/** Starts two nodes on ephemeral ports; resolves once both printed their listening line. */
async function startCluster(prefix) {
  const bin = clusterBinary();
  if (!existsSync(bin)) {
    throw new Error(`cluster example not found at ${bin}: run \`cargo build -p marie-examples --example cluster\` or set MARIE_CLUSTER_BIN`);
  }
  const child = spawn(bin, [], {
    env: {
      ...process.env,
      MARIE_ADDRS: '127.0.0.1:0,127.0.0.1:0',
      MARIE_REDIS_PREFIX: prefix,
      MARIE_ECHO_DELAY_MS: '5',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => output.push(chunk));
  const nodes = await new Promise((resolve, reject) => {
    const found = {};
    const lines = createInterface({ input: child.stdout });
    const fail = (why) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${why}\n--- cluster example stderr ---\n${output.join('').slice(-4000)}`));
    };
    const timer = setTimeout(() => fail('the nodes did not start within 30 s'), 30_000);
    child.once('exit', (code, signal) => fail(`cluster example exited early (code ${code}, signal ${signal})`));
    lines.on('line', (line) => {
      const m = READY.exec(line);
      if (!m) return;
      found[m[1]] = m[2];
      if (found['node-1'] && found['node-2']) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(found);
      }
    });
  });
  async function stop() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  return { nodes, stop };
}

describe('cluster example: two nodes sharing Redis', () => {
  const prefix = `marie-e2e-${randomBytes(6).toString('hex')}`;
  const conversation = `cluster-${randomBytes(4).toString('hex')}`;
  let cluster;
  const sockets = [];

  async function connect(url, token, transports) {
    const socket = io(url, { auth: { token }, transports, reconnection: false, forceNew: true, autoConnect: false });
    sockets.push(socket);
    const rec = new Recorder(socket);
    socket.connect();
    await rec.waitFor('connected', () => true, { ms: 10_000 });
    return { socket, rec };
  }

  const ack = (socket, event, payload) => socket.timeout(10_000).emitWithAck(event, payload);

  before(async () => {
    cluster = await startCluster(prefix);
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    if (cluster) await cluster.stop();
    // Best effort: remove this run's keys from the shared Redis.
    try {
      const keys = execFileSync('redis-cli', ['--scan', '--pattern', `${prefix}:*`], { encoding: 'utf8' })
        .split('\n').filter(Boolean);
      if (keys.length) execFileSync('redis-cli', ['del', ...keys]);
    } catch { /* redis-cli missing: the keys stay */ }
  });

  it('streams an answer sent on node 2 to a client on node 1, whole and in order, and cancels across nodes', async () => {
    const { 'node-1': one, 'node-2': two } = cluster.nodes;
    assert.deepEqual(await (await fetch(new URL('/api/node', two))).json(), { node: 'node-2' });
    // Dev tokens are shared by the nodes of one process.
    const alice = (await devToken(one, 'alice')).body.token;
    const bob = (await devToken(one, 'bob')).body.token;
    const a = await connect(one, alice, ['polling', 'websocket']);
    const b = await connect(two, bob, ['polling']); // long-polling only

    assert.equal((await ack(a.socket, 'join_conversation', { conversation_id: conversation })).status, 'ok');
    assert.equal((await ack(a.socket, 'invite', { conversation_id: conversation, user_id: 'bob' })).status, 'ok');
    const joined = await ack(b.socket, 'join_conversation', { conversation_id: conversation });
    assert.equal(joined.status, 'ok');
    assert.deepEqual(joined.members, ['alice', 'bob']);
    await a.rec.waitFor('user_joined', (d) => d.user_id === 'bob');

    const words = Array.from({ length: 40 }, (_, i) => `w${i}`);
    const sent = await ack(b.socket, 'send_message', { conversation_id: conversation, message: words.join(' ') });
    assert.equal(sent.status, 'ok');
    const end = await a.rec.waitFor('stream_end', (d) => d.stream_id === sent.stream_id, { ms: 15_000 });
    const chunks = a.rec.all('stream_chunk', (d) => d.stream_id === sent.stream_id);
    assert.deepEqual(chunks.map((c) => c.seq), words.map((_, i) => i + 1));
    assert.equal(chunks.map((c) => c.content).join(''), end.full_content);
    assert.deepEqual(end.full_content.trim().split(' '), words);

    // A long answer running on node 2, cancelled through node 1.
    const long = Array.from({ length: 400 }, (_, i) => `x${i}`).join(' ');
    const running = await ack(b.socket, 'send_message', { conversation_id: conversation, message: long });
    assert.equal(running.status, 'ok');
    await a.rec.waitFor('stream_chunk', (d) => d.stream_id === running.stream_id, { ms: 10_000 });
    const cancelled = await ack(a.socket, 'cancel_stream', { conversation_id: conversation, stream_id: running.stream_id });
    assert.equal(cancelled.status, 'ok');
    for (const rec of [a.rec, b.rec]) {
      const stopped = await rec.waitFor('stream_end', (d) => d.stream_id === running.stream_id, { ms: 10_000 });
      assert.equal(stopped.status, 'cancelled');
      assert.ok(stopped.full_content.length < long.length);
    }

    // History written through node 2 read through node 1.
    const history = await ack(a.socket, 'get_history', { conversation_id: conversation });
    assert.equal(history.status, 'ok');
    assert.deepEqual(history.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    assert.equal(history.messages[0].message_id, sent.message_id);
  });
});
