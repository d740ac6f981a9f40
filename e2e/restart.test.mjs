// The chat example on SQLite (MARIE_DATABASE_URL), stopped and started again: the history
// with its branches, the active branch, and the token budget spent are all still there.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { devToken, once, startChat } from './helpers.mjs';

const CONVERSATION = 'restart-room';

describe('chat example on SQLite across a restart', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'marie-restart-'));
  const env = {
    MARIE_DATABASE_URL: `sqlite://${path.join(dir, 'marie.db')}?mode=rwc`,
    MARIE_TOKEN_BUDGET: '100000/day',
    MARIE_ECHO_DELAY_MS: '1',
  };
  let server;
  const sockets = [];

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (server) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Connects as `user` to the running server, joined to the conversation. */
  async function member(user) {
    const { body } = await devToken(server.url, user);
    const socket = io(server.url, { auth: { token: body.token }, reconnection: false, forceNew: true });
    sockets.push(socket);
    await once(socket, 'connected', 10_000);
    const joined = await socket.emitWithAck('join_conversation', { conversation_id: CONVERSATION });
    assert.equal(joined.status, 'ok', JSON.stringify(joined));
    return socket;
  }

  /** Emits `event` and waits for the `stream_end` of the answer it started. */
  async function answered(socket, event, payload) {
    const ends = [];
    const onEnd = (end) => ends.push(end);
    socket.on('stream_end', onEnd);
    try {
      const ack = await socket.emitWithAck(event, { conversation_id: CONVERSATION, ...payload });
      assert.equal(ack.status, 'ok', `${event}: ${JSON.stringify(ack)}`);
      while (!ends.some((e) => e.stream_id === ack.stream_id)) {
        await once(socket, 'stream_end', 10_000);
      }
      return ack;
    } finally {
      socket.off('stream_end', onEnd);
    }
  }

  async function history(socket) {
    const ack = await socket.emitWithAck('get_history', { conversation_id: CONVERSATION });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    return ack.messages;
  }

  it('keeps history, branches and budgets', async () => {
    server = await startChat({ env });
    let alice = await member('alice');
    const first = await answered(alice, 'send_message', { message: 'first question' });
    const edited = await answered(alice, 'edit_message', { message_id: first.message_id, message: 'better question' });
    await answered(alice, 'regenerate', {});
    const before = await history(alice);
    assert.equal(before.length, 2);
    assert.deepEqual(before[0].siblings, [first.message_id, edited.message_id]);
    assert.equal(before[1].siblings.length, 2);
    const usage = await alice.emitWithAck('get_usage', {});
    assert.equal(usage.limit, 100000);
    assert.ok(usage.used > 0, JSON.stringify(usage));

    alice.disconnect();
    await server.stop();
    server = await startChat({ env });
    alice = await member('alice');

    assert.deepEqual(await history(alice), before, 'the same active branch, with its siblings');
    const after = await alice.emitWithAck('get_usage', {});
    assert.equal(after.used, usage.used, 'the budget spent is still counted');
    const switched = await alice.emitWithAck('switch_branch', { conversation_id: CONVERSATION, message_id: first.message_id });
    assert.equal(switched.status, 'ok', JSON.stringify(switched));
    const older = await history(alice);
    assert.equal(older[0].message_id, first.message_id);
    assert.equal(older[0].content, 'first question');
    assert.match(older[1].content, /first/);
    await answered(alice, 'send_message', { message: 'and after the restart' });
    const now = await history(alice);
    assert.equal(now.length, 4);
    assert.equal(now[2].parent_id, older[1].message_id, 'the new question follows the active branch');
  });
});
