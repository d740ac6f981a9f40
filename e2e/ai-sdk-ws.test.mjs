// `ai` 7's WebSocketChatTransport, with the `ws` package as its WebSocket, against the chat
// example's /api/ai-sdk/ws (PROTOCOL.md section 12). Its frames: client `send`, `resume`,
// `abort`; server `start`, `chunk {requestId, sequence, chunk}`, `end`, `error`, `no-active`.
// The transport drops a repeated sequence and tears down the whole socket on a gap. A request
// numbers its chunks from 0. A dropped socket fails the requests running on it, and the
// transport does not reconnect by itself: useChat calls reconnectToStream, which sends
// `resume` without `lastSequence` and expects the whole answer from its start.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { WebSocketChatTransport } from 'ai';
import { Recorder, devToken, startChat, within } from './helpers.mjs';

const words = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`).join(' ');
const newId = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;
const userMessage = (text) => ({ id: newId('u'), role: 'user', parts: [{ type: 'text', text }] });
const textOf = (chunks) => chunks.filter((c) => c.type === 'text-delta').map((c) => c.delta).join('');
const FRAME_TYPES = new Set(['start', 'chunk', 'end', 'error', 'no-active']);

/** Every `ws` socket the transports open, each recording the frames it receives. */
const sockets = [];
class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.frames = [];
    this.on('message', (data) => this.frames.push(JSON.parse(String(data))));
    sockets.push(this);
  }
}

/** Reads a chunk stream to its end. `onChunk` sees each chunk as it arrives. */
async function collect(stream, onChunk) {
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    onChunk?.(chunk, chunks);
  }
  return chunks;
}

/**
 * Checks the frames of one request: only the five frame types, a `start` before any chunk
 * (PROTOCOL.md section 12), chunks numbered 0, 1, 2, … with no gap, and `end` last.
 */
function assertFramesOf(socket, requestId) {
  const frames = socket.frames.filter((f) => f.requestId === requestId);
  const names = frames.map((f) => f.type).join(', ');
  for (const f of socket.frames) assert.ok(FRAME_TYPES.has(f.type), `unknown frame ${JSON.stringify(f)}`);
  assert.equal(frames[0]?.type, 'start', names);
  assert.equal(frames.at(-1).type, 'end', names);
  const sequences = frames.filter((f) => f.type === 'chunk').map((f) => f.sequence);
  assert.deepEqual(sequences, sequences.map((_, i) => i), 'chunks numbered from 0 without a gap');
  return frames;
}

/** The requestId of the last `send` or `resume` a socket carried: found from its frames. */
const lastRequestId = (socket) => socket.frames.findLast((f) => f.type === 'start')?.requestId;

describe('the AI SDK WebSocket transport with ws', () => {
  let server;
  let wsUrl;
  let aliceToken;
  const transports = [];

  const transport = (options = { params: { token: aliceToken } }) => {
    const t = new WebSocketChatTransport({ url: wsUrl, webSocket: RecordingWebSocket, ...options });
    transports.push(t);
    return t;
  };

  const send = (t, chatId, text, abortSignal) => t.sendMessages({
    chatId, messages: [userMessage(text)], trigger: 'submit-message', messageId: undefined, abortSignal,
  });

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '25' } });
    wsUrl = `${server.url}/api/ai-sdk/ws`;
    aliceToken = (await devToken(server.url, 'alice')).body.token;
  });

  after(async () => {
    for (const t of transports) t.close();
    for (const s of sockets) s.terminate();
    if (server) await server.stop();
  });

  it('sends a message and gets the answer as numbered chunk frames', async () => {
    const t = transport();
    const chatId = newId('ws-send');
    const chunks = await within(collect(await send(t, chatId, 'hello over a websocket')), 10_000, 'the answer');
    assert.equal(chunks[0].type, 'start');
    assert.equal(typeof chunks[0].messageId, 'string');
    assert.equal(textOf(chunks), 'hello over a websocket');
    assert.equal(chunks.at(-1).type, 'finish');
    assert.equal(chunks.at(-1).finishReason, 'stop');
    const socket = sockets.at(-1);
    const frames = assertFramesOf(socket, lastRequestId(socket));
    assert.deepEqual(frames.filter((f) => f.type === 'chunk').map((f) => f.chunk), chunks);
    assert.equal(new URL(socket.url).pathname, '/api/ai-sdk/ws');

    // Nothing runs there now.
    assert.equal(await t.reconnectToStream({ chatId }), null);
    assert.equal(socket.frames.at(-1).type, 'no-active');
  });

  it('takes the credentials from the send frame headers, and refuses a send without any', async () => {
    const withHeader = transport({ headers: { Authorization: `Bearer ${aliceToken}` } });
    const chunks = await within(collect(await send(withHeader, newId('ws-header'), 'token in the frame')), 10_000, 'the answer');
    assert.equal(textOf(chunks), 'token in the frame');

    const anonymous = transport({});
    await assert.rejects(
      within((async () => collect(await send(anonymous, newId('ws-anon'), 'who am I')))(), 10_000, 'a refusal'),
      (e) => /unauthori[sz]ed|401|credentials|token|network/i.test(e.message),
    );
  });

  it('carries several chats on one socket', async () => {
    const t = transport();
    const before = sockets.length;
    const [a, b] = await Promise.all([
      send(t, newId('ws-many-a'), words(8, 'alpha')).then((s) => collect(s)),
      send(t, newId('ws-many-b'), words(8, 'beta')).then((s) => collect(s)),
    ]);
    assert.equal(textOf(a), words(8, 'alpha'));
    assert.equal(textOf(b), words(8, 'beta'));
    assert.equal(sockets.length, before + 1, 'one socket for both');
    assert.notEqual(a[0].messageId, b[0].messageId);
  });

  it('gives the whole answer once, from its start, to a resume after the socket dropped mid-answer', async () => {
    const t = transport();
    const chatId = newId('ws-drop');
    const text = words(40, 'drop');
    let midway;
    const reachedMidway = new Promise((resolve) => { midway = resolve; });
    const live = collect(await send(t, chatId, text), (_, chunks) => {
      if (chunks.filter((c) => c.type === 'text-delta').length === 3) midway();
    });
    await within(reachedMidway, 10_000, 'three words of the answer');
    const dropped = sockets.at(-1);
    const messageId = dropped.frames.find((f) => f.type === 'chunk' && f.chunk.type === 'start').chunk.messageId;
    dropped.terminate();
    await assert.rejects(live, /network connection closed/);

    const resumed = await within(t.reconnectToStream({ chatId }), 5_000, 'the resume');
    assert.ok(resumed, 'the running answer, not null');
    const replay = await within(collect(resumed), 15_000, 'the resumed answer');
    assert.notEqual(sockets.at(-1), dropped, 'a new socket');
    assert.equal(replay[0].type, 'start');
    assert.equal(replay[0].messageId, messageId, 'the same answer');
    assert.equal(textOf(replay), text, 'every word once, from the first');
    assert.equal(replay.at(-1).type, 'finish');
    const resumeFrame = sockets.at(-1);
    assertFramesOf(resumeFrame, lastRequestId(resumeFrame));
  });

  it('continues exactly after lastSequence for a client that sends one', async () => {
    const chatId = newId('ws-last-seq');
    const text = words(30, 'seq');
    const url = `${wsUrl.replace(/^http/, 'ws')}?token=${encodeURIComponent(aliceToken)}`;
    const first = new RecordingWebSocket(url);
    await within(new Promise((resolve, reject) => { first.once('open', resolve); first.once('error', reject); }), 5_000, 'open');
    const gotSix = new Promise((resolve) => first.on('message', () => {
      if (first.frames.filter((f) => f.type === 'chunk').length >= 6) resolve();
    }));
    first.send(JSON.stringify({
      type: 'send', requestId: 'r1', id: chatId, trigger: 'submit-message', messages: [userMessage(text)], headers: {}, body: {},
    }));
    await within(gotSix, 10_000, 'six chunks');
    first.terminate();
    const held = first.frames.filter((f) => f.type === 'chunk');
    const lastSequence = held.at(-1).sequence;

    const second = new RecordingWebSocket(url);
    await within(new Promise((resolve, reject) => { second.once('open', resolve); second.once('error', reject); }), 5_000, 'open');
    const ended = new Promise((resolve) => second.on('message', () => {
      if (second.frames.some((f) => f.requestId === 'r2' && (f.type === 'end' || f.type === 'error'))) resolve();
    }));
    second.send(JSON.stringify({ type: 'resume', requestId: 'r2', id: chatId, lastSequence, headers: {}, body: {} }));
    await within(ended, 15_000, 'the rest of the answer');
    const rest = second.frames.filter((f) => f.requestId === 'r2' && f.type === 'chunk');
    assert.equal(second.frames.filter((f) => f.requestId === 'r2').at(-1).type, 'end');
    assert.deepEqual(rest.map((f) => f.sequence), rest.map((_, i) => lastSequence + 1 + i), 'right after lastSequence, no gap');
    assert.equal(textOf([...held, ...rest].map((f) => f.chunk)), text, 'what it held and the rest make the answer, once');
    assert.equal(rest.at(-1).chunk.type, 'finish');
  });

  it('stops the answer on abort, and then there is nothing to resume', async () => {
    const chatId = newId('ws-abort');
    const text = words(40, 'abort');
    // A member's socket.io connection sees how the answer ends.
    const observer = io(server.url, { auth: { token: aliceToken }, reconnection: false, forceNew: true, autoConnect: false });
    const rec = new Recorder(observer);
    observer.connect();
    try {
      await rec.waitFor('connected');
      const joined = await observer.timeout(5_000).emitWithAck('join_conversation', { conversation_id: chatId });
      assert.equal(joined.status, 'ok', JSON.stringify(joined));

      const t = transport();
      const controller = new AbortController();
      let midway;
      const reachedMidway = new Promise((resolve) => { midway = resolve; });
      const live = collect(await send(t, chatId, text, controller.signal), (_, chunks) => {
        if (chunks.filter((c) => c.type === 'text-delta').length === 2) midway();
      });
      await within(reachedMidway, 10_000, 'two words of the answer');
      controller.abort();
      const kept = await live.catch((e) => assert.fail(`an aborted stream just closes: ${e.message}`));
      assert.ok(textOf(kept).length < text.length);

      const end = await rec.waitFor('stream_end', () => true, { ms: 5_000 });
      assert.equal(end.status, 'cancelled');
      assert.ok(end.full_content.length < text.length && text.startsWith(end.full_content), end.full_content);
      assert.equal(await t.reconnectToStream({ chatId }), null);
    } finally {
      observer.disconnect();
    }
  });

  it('answers no-active for a chat where nothing ever ran', async () => {
    assert.equal(await transport().reconnectToStream({ chatId: newId('ws-idle') }), null);
    const socket = sockets.at(-1);
    assert.equal(socket.frames.at(-1).type, 'no-active');
  });
});
