// Resume: a hard drop of the transport mid-answer; a late joiner; one answer text, once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../dist/index.js';
import { convId, makeClient, startChat, words } from './helpers.mjs';

let server;
before(async () => {
  server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '25' } });
});
after(async () => {
  await server?.stop();
});

/** Records the chunks a conversation applies, and its answer's end. */
function record(conv) {
  const rec = { chunks: [], end: null, lastRunning: null };
  conv.observeAnswers((e) => {
    if (e.event === 'stream_chunk') rec.chunks.push(e.data);
    if (e.event === 'stream_end') rec.end = e.data;
  });
  conv.subscribe(() => {
    const r = conv.getSnapshot().running;
    if (r) rec.lastRunning = r;
  });
  return rec;
}

/** The chunks cover 1..n once each, in order. */
function assertContiguous(chunks) {
  let held = 0;
  for (const c of chunks) {
    const first = c.first_seq ?? c.seq;
    assert.equal(first, held + 1, `chunk ${first}..${c.seq} after ${held}`);
    held = c.seq;
  }
  return held;
}

test('a hard drop mid-answer: the session is restored and the answer is resumed, each word once', async (t) => {
  const client = await makeClient(server.url, 'alice');
  t.after(() => client.close());
  const conv = await client.join(convId('drop'));
  const rec = record(conv);
  const text = words(40);
  const sent = await conv.send(text);
  await waitFor(conv, (s) => s.running !== null && s.running.lastSeq >= 6);
  const heldAtDrop = conv.getSnapshot().running.lastSeq;
  const sessionBefore = client.connection.getSnapshot().session;
  // Close the transport under the socket: socket.io-client reconnects by itself.
  client.socket.io.engine.close();
  await waitFor(client.connection, (c) => c.status !== 'connected', 2_000);
  const done = await waitFor(conv, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  const conn = client.connection.getSnapshot();
  assert.equal(conn.status, 'connected');
  assert.equal(conn.restored, true, 'the reconnect restored the session');
  assert.equal(conn.session, sessionBefore);
  assert.ok(heldAtDrop < 40, `dropped mid-answer (held ${heldAtDrop} of 40)`);
  // Every position once, in order, and the text applied is the answer's.
  assert.equal(assertContiguous(rec.chunks), 40);
  assert.equal(rec.chunks.map((c) => c.content).join(''), text);
  assert.equal(rec.end.full_content, text);
  assert.equal(rec.end.stream_id, sent.streamId);
  assert.equal(rec.lastRunning.text, text);
  const answer = done.messages.find((m) => m.role === 'assistant');
  assert.equal(answer.content, text);
  assert.equal(answer.status, 'complete');
  // The server's history agrees.
  const history = await client.getHistory(conv.id);
  assert.deepEqual(history.messages.map((m) => m.content), [text, text]);
});

test('a member who joins mid-answer gets it from its start, once, via resume from 0', async (t) => {
  const alice = await makeClient(server.url, 'alice');
  const bob = await makeClient(server.url, 'bob');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const id = convId('late');
  const a = await alice.join(id);
  await a.invite('bob');
  const text = words(30, 'late');
  await a.send(text);
  await waitFor(a, (s) => s.running !== null && s.running.lastSeq >= 8);
  const b = bob.conversation(id);
  const rec = record(b);
  await b.join();
  const done = await waitFor(b, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  assert.equal(assertContiguous(rec.chunks), 30);
  assert.equal(rec.chunks.map((c) => c.content).join(''), text);
  assert.deepEqual(done.messages.map((m) => [m.role, m.content]), [['user', text], ['assistant', text]]);
  assert.equal(done.messages[0].userId, 'alice');
  assert.deepEqual([...done.members].sort(), ['alice', 'bob']);
});

test('a reconnect on a fresh session (the old one unknown) joins again and resumes the answer', async (t) => {
  const client = await makeClient(server.url, 'carol');
  t.after(() => client.close());
  const conv = await client.join(convId('fresh'));
  const rec = record(conv);
  const text = words(30, 'f');
  await conv.send(text);
  await waitFor(conv, (s) => s.running !== null && s.running.lastSeq >= 5);
  // The server will not know this session: the reconnect starts a fresh one.
  client.connection.set({ session: 'not-a-session-of-this-server' });
  client.socket.io.engine.close();
  const done = await waitFor(conv, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  assert.equal(client.connection.getSnapshot().restored, false);
  assert.equal(conv.getSnapshot().joined, true);
  assert.equal(assertContiguous(rec.chunks), 30);
  assert.equal(rec.chunks.map((c) => c.content).join(''), text);
  assert.equal(done.messages.at(-1).content, text);
});

test('merged chunks (a burst: a model faster than 1 ms a word) are applied as the positions they cover', async (t) => {
  const fast = await startChat({ env: { MARIE_ECHO_DELAY_MS: '0' } });
  const client = await makeClient(fast.url, 'dave');
  t.after(async () => {
    client.close();
    await fast.stop();
  });
  const conv = await client.join(convId('burst'));
  const rec = record(conv);
  const text = words(200, 'b');
  await conv.send(text);
  const done = await waitFor(conv, (s) => s.running === null && s.messages.length === 2, 10_000);
  assert.ok(rec.chunks.some((c) => typeof c.first_seq === 'number' && c.first_seq < c.seq), 'the server merged chunks');
  assert.equal(assertContiguous(rec.chunks), 200);
  assert.equal(rec.chunks.map((c) => c.content).join(''), text);
  assert.equal(done.messages[1].content, text);
});

test('leaving and joining again mid-answer: the answer is followed again from its start, each word once', async (t) => {
  const erin = await makeClient(server.url, 'erin');
  const watcher = await makeClient(server.url, 'erin');
  t.after(() => {
    erin.close();
    watcher.close();
  });
  const id = convId('rejoin');
  const conv = await erin.join(id);
  const w = await watcher.join(id);
  const text = words(40, 'j');
  await conv.send(text);
  await waitFor(conv, (s) => s.running !== null && s.running.lastSeq >= 5);
  await conv.leave();
  assert.equal(conv.getSnapshot().running, null);
  // Words go by while it is away (another tab of the same user sees them).
  const away = conv.getSnapshot();
  await waitFor(w, (s) => s.running !== null && s.running.lastSeq >= 15);
  assert.equal(conv.getSnapshot(), away, 'nothing arrives while it is out of the room');
  const rec = record(conv);
  await conv.join();
  const done = await waitFor(conv, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  assert.equal(assertContiguous(rec.chunks), 40);
  assert.equal(rec.chunks.map((c) => c.content).join(''), text);
  assert.deepEqual(done.messages.map((m) => m.content), [text, text]);
});
