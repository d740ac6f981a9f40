// The chat example spoken to with the official socket.io-client: the wire
// contract of docs/protocol.md, asserted on what clients receive.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { Recorder, devToken, once, startChat } from './helpers.mjs';

const MESSAGE = 'the quick brown fox jumps over';
const STREAM_EVENTS = ['stream_start', 'stream_chunk', 'stream_end', 'stream_error'];

describe('chat example over socket.io-client', () => {
  let server;
  const sockets = [];
  const tokens = {};
  const clients = {}; // user -> { socket, rec, connected }
  const conversationId = `e2e-${randomBytes(6).toString('hex')}`;
  let sent; // the send_message ack
  let streamStart;

  /** A socket that does not reconnect by itself, with a recorder attached before connecting. */
  function socketFor(auth, opts = {}) {
    const socket = io(server.url, { auth, reconnection: false, forceNew: true, autoConnect: false, ...opts });
    sockets.push(socket);
    const rec = new Recorder(socket);
    return { socket, rec };
  }

  async function connectAs(user, opts) {
    const { socket, rec } = socketFor({ token: tokens[user] }, opts);
    let refuse;
    const refused = new Promise((_, reject) => { refuse = (err) => reject(new Error(`connect_error: ${err.message}`)); });
    socket.once('connect_error', refuse);
    socket.connect();
    const connected = await Promise.race([rec.waitFor('connected'), refused]).finally(() => socket.off('connect_error', refuse));
    clients[user] = { socket, rec, connected };
    return clients[user];
  }

  function memberIds(members) {
    return members.map((m) => (typeof m === 'string' ? m : m.user_id));
  }

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5' } });
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (server) await server.stop();
  });

  it('reports dev auth mode', async () => {
    const res = await fetch(new URL('/api/auth/mode', server.url), { signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { mode: 'dev' });
  });

  it('refuses a connection without credentials or with a bad token', async () => {
    for (const auth of [undefined, { token: 'not-a-real-token' }]) {
      const { socket, rec } = socketFor(auth);
      const refused = once(socket, 'connect_error', 5_000);
      socket.connect();
      const err = await refused;
      assert.equal(err.message, 'unauthorized', `auth ${JSON.stringify(auth)}`);
      assert.equal(socket.connected, false);
      assert.deepEqual(rec.events, [], 'nothing else is sent to a refused client');
    }
  });

  it('issues dev tokens and rejects a bad user id', async () => {
    for (const [user, roles] of [['alice', ['admin']], ['bob'], ['carol']]) {
      const { status, body } = await devToken(server.url, user, roles);
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(typeof body.token, 'string');
      assert.ok(body.token.length > 0);
      assert.equal(body.user_id, user);
      assert.ok(Array.isArray(body.roles));
      if (roles) assert.deepEqual(body.roles, roles);
      tokens[user] = body.token;
    }
    const bad = await devToken(server.url, '');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'bad_request');
    assert.equal(typeof bad.body.message, 'string');
  });

  it('greets an authenticated client with `connected`', async () => {
    await connectAs('alice');
    await connectAs('bob', { transports: ['websocket'] }); // one client without long-polling
    await connectAs('carol');
    for (const user of ['alice', 'bob', 'carol']) {
      const { socket, connected } = clients[user];
      assert.equal(connected.status, 'connected');
      assert.equal(connected.user_id, user);
      assert.equal(typeof connected.sid, 'string');
      assert.equal(typeof connected.session, 'string');
      assert.ok(connected.session.length >= 16, 'session is unguessable');
      assert.notEqual(connected.session, connected.sid, 'session is not the public sid');
      assert.ok(socket.connected);
    }
  });

  it('lets alice create a conversation by joining it', async () => {
    const { socket, rec } = clients.alice;
    const ack = await socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: conversationId });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    const joined = await rec.waitFor('joined', (d) => d.conversation_id === conversationId);
    assert.equal(joined.status, 'joined');
    assert.ok(Array.isArray(joined.members));
    assert.ok(memberIds(joined.members).includes('alice'), JSON.stringify(joined.members));
    assert.equal(joined.active_stream ?? null, null, 'no answer is running yet');
  });

  it('lets alice invite bob, who then joins', async () => {
    const alice = clients.alice;
    const bob = clients.bob;
    const invited = await alice.socket.timeout(5_000).emitWithAck('invite', { conversation_id: conversationId, user_id: 'bob' });
    assert.equal(invited.status, 'ok', JSON.stringify(invited));

    const mark = alice.rec.mark();
    const ack = await bob.socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: conversationId });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    const joined = await bob.rec.waitFor('joined', (d) => d.conversation_id === conversationId);
    assert.equal(joined.status, 'joined');
    assert.ok(memberIds(joined.members).includes('bob'), JSON.stringify(joined.members));

    const seen = await alice.rec.waitFor('user_joined', (d) => d.conversation_id === conversationId, { from: mark });
    assert.deepEqual({ user_id: seen.user_id, conversation_id: seen.conversation_id }, { user_id: 'bob', conversation_id: conversationId });
  });

  it('refuses carol, who was not invited, with `forbidden`', async () => {
    const { socket, rec } = clients.carol;
    const mark = rec.mark();
    const ack = await socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: conversationId });
    assert.equal(ack.status, 'error');
    assert.equal(ack.code, 'forbidden');
    assert.equal(typeof ack.message, 'string');
    const error = await rec.waitFor('error', () => true, { from: mark });
    assert.equal(error.code, 'forbidden');
    assert.equal(typeof error.message, 'string');
    assert.equal(rec.all('joined', (d) => d.conversation_id === conversationId).length, 0);
  });

  it('streams the answer to every member, and to no one else', async () => {
    const { socket } = clients.alice;
    sent = await socket.timeout(5_000).emitWithAck('send_message', { conversation_id: conversationId, message: MESSAGE });
    assert.equal(sent.status, 'ok', JSON.stringify(sent));
    assert.ok(sent.message_id !== undefined && sent.message_id !== null && sent.message_id !== '');
    assert.equal(typeof sent.stream_id, 'string');

    for (const user of ['alice', 'bob']) {
      const { rec } = clients[user];
      const ofStream = (d) => d.stream_id === sent.stream_id;
      const end = await rec.waitFor('stream_end', ofStream, { ms: 10_000 });
      const start = rec.all('stream_start', ofStream);
      const chunks = rec.all('stream_chunk', ofStream);
      assert.equal(rec.all('stream_error', ofStream).length, 0, `${user}: no stream_error`);

      assert.equal(start.length, 1, `${user}: exactly one stream_start`);
      assert.equal(start[0].conversation_id, conversationId);
      assert.equal(start[0].status, 'streaming');
      assert.ok(start[0].message_id !== undefined && start[0].message_id !== null);
      streamStart = start[0];

      // Order on the wire: start, chunks, end.
      const order = rec.events.filter((r) => STREAM_EVENTS.includes(r.event) && r.data.stream_id === sent.stream_id).map((r) => r.event);
      assert.equal(order[0], 'stream_start', `${user}: ${order}`);
      assert.equal(order.at(-1), 'stream_end', `${user}: ${order}`);
      assert.equal(order.filter((e) => e === 'stream_end').length, 1);

      assert.ok(chunks.length >= 2, `${user}: the answer came in several chunks (${chunks.length})`);
      chunks.forEach((c, i) => {
        assert.equal(c.seq, i + 1, `${user}: seq is 1..n with no gap`);
        assert.equal(c.conversation_id, conversationId);
        assert.equal(c.done, false);
        assert.equal(typeof c.content, 'string');
        assert.ok(c.content.length > 0, 'chunk content is never empty');
      });

      const joinedChunks = chunks.map((c) => c.content).join('');
      assert.equal(joinedChunks, MESSAGE, `${user}: the echo provider answers with the message`);
      assert.equal(end.conversation_id, conversationId);
      assert.equal(end.full_content, joinedChunks);
      assert.equal(end.status, 'complete');
      assert.equal(typeof end.usage, 'object');
      assert.ok(end.usage !== null);
      for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
        assert.equal(typeof end.usage[k], 'number', `usage.${k}`);
      }
    }

    // Anything carol were sent would be queued before this ack: none may be a stream event.
    const { socket: carol, rec: carolRec } = clients.carol;
    const history = await carol.timeout(5_000).emitWithAck('get_history', { conversation_id: conversationId });
    assert.equal(history.status, 'error', 'carol cannot read the conversation');
    assert.equal(history.code, 'forbidden');
    const leaked = carolRec.events.filter((r) => STREAM_EVENTS.includes(r.event));
    assert.deepEqual(leaked, [], 'carol receives no stream events');
  });

  it('answers malformed payloads with bad_request and keeps the socket working', async () => {
    const { socket, rec } = clients.alice;

    let mark = rec.mark();
    socket.emit('join_conversation', 42);
    let error = await rec.waitFor('error', () => true, { from: mark });
    assert.equal(error.code, 'bad_request');
    assert.equal(typeof error.message, 'string');

    mark = rec.mark();
    const ack = await socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: 'has spaces/and slashes' });
    assert.equal(ack.status, 'error');
    assert.equal(ack.code, 'bad_request');
    error = await rec.waitFor('error', () => true, { from: mark });
    assert.equal(error.code, 'bad_request');

    const ack2 = await socket.timeout(5_000).emitWithAck('send_message', { conversation_id: conversationId });
    assert.equal(ack2.status, 'error', 'send_message without a message');
    assert.equal(ack2.code, 'bad_request');

    assert.ok(socket.connected, 'a bad event never disconnects the client');
    const ok = await socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: conversationId });
    assert.equal(ok.status, 'ok', JSON.stringify(ok));
  });

  it('returns the question and the answer from get_history', async () => {
    for (const user of ['alice', 'bob']) {
      const res = await clients[user].socket.timeout(5_000).emitWithAck('get_history', { conversation_id: conversationId });
      assert.equal(res.status, 'ok', JSON.stringify(res));
      assert.ok(Array.isArray(res.messages));
      const question = res.messages.filter((m) => m.role === 'user' && m.content === MESSAGE);
      const answer = res.messages.filter((m) => m.role === 'assistant' && m.content === MESSAGE);
      assert.equal(question.length, 1, JSON.stringify(res.messages));
      assert.equal(answer.length, 1, JSON.stringify(res.messages));
      assert.equal(question[0].user_id, 'alice');
      assert.ok(res.messages.indexOf(question[0]) !== res.messages.indexOf(answer[0]));
      for (const m of [...question, ...answer]) {
        assert.ok(m.message_id !== undefined && m.message_id !== null, 'message_id');
        assert.ok(m.created_at !== undefined && m.created_at !== null, 'created_at');
      }
      // The ids clients were given name stored messages.
      const ids = res.messages.map((m) => m.message_id);
      assert.ok(ids.includes(sent.message_id), `send_message ack's message_id ${sent.message_id} in ${ids}`);
      assert.ok(ids.includes(streamStart.message_id), `stream_start's message_id ${streamStart.message_id} in ${ids}`);
    }
  });

  it('delivers an admin announcement to everyone and refuses it from others', async () => {
    const carol = clients.carol;
    const refused = await carol.socket.timeout(5_000).emitWithAck('system_announcement', { message: 'not allowed' });
    assert.equal(refused.status, 'error');
    assert.equal(refused.code, 'forbidden');

    const marks = Object.fromEntries(Object.entries(clients).map(([u, c]) => [u, c.rec.mark()]));
    const ok = await clients.alice.socket.timeout(5_000).emitWithAck('system_announcement', { message: 'maintenance at noon' });
    assert.equal(ok.status, 'ok', JSON.stringify(ok));
    for (const [user, { rec }] of Object.entries(clients)) {
      const got = await rec.waitFor('announcement', () => true, { from: marks[user] });
      assert.equal(got.message, 'maintenance at noon', user);
    }
    assert.equal(clients.alice.rec.all('announcement', (d) => d.message === 'not allowed').length, 0);
  });
});
