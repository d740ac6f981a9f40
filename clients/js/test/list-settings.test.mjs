// Unit tests of what the chat page needs of the list and a conversation, with a fake server:
// an archived conversation leaves the list shown (no event tells it, section 9) and a read
// that was on its way does not bring it back; `info.updatedBy` says who changed the settings
// shown; `mentions` and `willAnswer` read a send as the server does (section 10); a queued
// send being cancelled says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conversation, ConversationList } from '../dist/index.js';

const item = (id, updated_at, archived = false) => ({ conversation_id: id, title: id.toUpperCase(), created_by: 'alice', updated_at, archived, unread: 0 });

/** A list whose reads answer what `pages` says now (or wait, when it is a promise). */
function fakeList(pages) {
  const requests = [];
  const host = {
    userId: 'alice',
    isConnected: true,
    async request(event, payload) {
      requests.push({ event, payload });
      if (event === 'list_conversations') {
        const got = await pages(payload);
        return { conversations: got, next_before: null };
      }
      if (event === 'get_conversation') return { ...item(payload.conversation_id, 50), members: [], models: [], assistants: [] };
      throw new Error(`unexpected ${event}`);
    },
  };
  return { list: new ConversationList(host), requests };
}

const ids = (list) => list.getSnapshot().items.map((c) => c.id);

test('an archived conversation leaves the list shown; a read on its way does not bring it back, a later one in the archive does', async () => {
  let stale = null;
  const server = { a: item('a', 30), b: item('b', 20) };
  const { list, requests } = fakeList(async (payload) => {
    if (stale) return stale; // a read that left before the archive
    return Object.values(server).filter((c) => c.archived === (payload.archived === true));
  });
  await list.load();
  assert.deepEqual(ids(list), ['a', 'b']);

  // A refresh leaves, then the user archives `a` before its answer comes.
  let answer;
  stale = new Promise((resolve) => { answer = resolve; });
  const refreshing = list.refresh();
  list.setArchived('a', true);
  server.a = { ...server.a, archived: true };
  assert.deepEqual(ids(list), ['b'], 'gone at once');
  answer([item('a', 30), item('b', 20)]);
  await refreshing;
  stale = null;
  assert.deepEqual(ids(list), ['b'], 'the read from before does not bring it back');

  // The archive lists it; taking it out of the archive there takes it out of that list.
  await list.load({ archived: true });
  assert.deepEqual(ids(list), ['a']);
  assert.equal(list.get('a').archived, true);
  list.setArchived('a', false);
  server.a = { ...server.a, archived: false };
  assert.deepEqual(ids(list), []);
  await list.load({ archived: false });
  assert.deepEqual(ids(list), ['a', 'b'], 'back in the list');

  // Unarchived elsewhere while the list shows the rest: its record is read, and it enters.
  list.setArchived('c', false);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(ids(list), ['c', 'a', 'b']);
  assert.deepEqual(requests.at(-1), { event: 'get_conversation', payload: { conversation_id: 'c' } });
});

test('Conversation.archive tells the list once the server took it', async () => {
  const told = [];
  const host = {
    userId: 'alice',
    isConnected: true,
    historyLimit: 50,
    autoRunTools: true,
    async request(event, payload) {
      assert.equal(event, 'archive_conversation');
      return { status: 'ok', conversation_id: payload.conversation_id, archived: payload.archived };
    },
    budget: () => null,
    listSetArchived: (id, archived) => told.push([id, archived]),
  };
  const conv = new Conversation('c1', host);
  await conv.archive();
  await conv.archive(false);
  assert.deepEqual(told, [['c1', true], ['c1', false]]);
});

test('info.updatedBy: who changed the settings shown, kept while they stay as told, this user after an update', async () => {
  let details = { conversation_id: 'c1', title: 'T', model: null, answer_policy: 'always', archived: false, members: [], models: [], assistants: [] };
  const host = {
    userId: 'alice',
    isConnected: true,
    historyLimit: 50,
    autoRunTools: true,
    async request(event, payload) {
      if (event === 'get_conversation') return { status: 'ok', ...details };
      if (event === 'update_conversation') {
        details = { ...details, answer_policy: payload.answer_policy };
        return { status: 'ok', ...details };
      }
      throw new Error(`unexpected ${event}`);
    },
    budget: () => null,
    listUpsert() {},
  };
  const conv = new Conversation('c1', host);
  await conv.refreshInfo();
  assert.equal(conv.getSnapshot().info.updatedBy, undefined, 'unknown from get_conversation');

  details = { ...details, answer_policy: 'mention' };
  conv.handle('conversation_updated', { conversation_id: 'c1', title: 'T', model: null, answer_policy: 'mention', updated_by: 'bob', updated_at: 5 });
  assert.equal(conv.getSnapshot().info.answerPolicy, 'mention');
  assert.equal(conv.getSnapshot().info.updatedBy, 'bob');
  await conv.refreshInfo();
  assert.equal(conv.getSnapshot().info.updatedBy, 'bob', 'the same settings read again: still bob\'s');

  details = { ...details, answer_policy: 'never' }; // changed while this client heard nothing
  await conv.refreshInfo();
  assert.equal(conv.getSnapshot().info.answerPolicy, 'never');
  assert.equal(conv.getSnapshot().info.updatedBy, undefined);

  await conv.update({ answerPolicy: 'always' });
  assert.equal(conv.getSnapshot().info.answerPolicy, 'always');
  assert.equal(conv.getSnapshot().info.updatedBy, 'alice');
  // An automatic title: the server's (null).
  conv.handle('conversation_updated', { conversation_id: 'c1', title: 'Named', model: null, answer_policy: 'always', updated_by: null });
  assert.equal(conv.getSnapshot().info.updatedBy, null);
  assert.equal(conv.getSnapshot().title, 'Named');
});

/** A conversation whose get_conversation says `details`; every other command is recorded and answered ok (or `fail`s). */
function detailedConversation(details, fail = () => null) {
  const requests = [];
  const host = {
    userId: 'alice',
    isConnected: true,
    historyLimit: 50,
    autoRunTools: true,
    async request(event, payload) {
      requests.push({ event, payload });
      if (event === 'get_conversation') return { status: 'ok', conversation_id: 'c1', archived: false, members: [], models: [], ...details };
      const refusal = fail(event);
      if (refusal) throw refusal;
      return { status: 'ok' };
    },
    budget: () => null,
    listUpsert() {},
  };
  return { conv: new Conversation('c1', host), requests };
}

test('mentions and willAnswer: @name at a word\'s start, in any case, under the answer policy', async () => {
  const { conv } = detailedConversation({ answer_policy: 'mention', assistants: [{ name: 'assistant', model: null }, { name: 'Calc', model: null }] });
  assert.equal(conv.willAnswer('hello'), true, 'before the details: as always');
  await conv.refreshInfo();
  assert.deepEqual(conv.mentions('@calc 12*7 and @CALC again, @bob, me@calc.com, @assistant'), ['Calc', 'assistant']);
  assert.deepEqual(conv.mentions('no one'), []);
  assert.equal(conv.willAnswer('hello alice'), false, 'mention: nobody called in');
  assert.equal(conv.willAnswer('@calc 12*7'), true);
  assert.equal(conv.willAnswer('hello alice', true), true, 'the send\'s own answer wins');
  assert.equal(conv.willAnswer('@calc 12*7', false), false);
  conv.handle('conversation_updated', { conversation_id: 'c1', answer_policy: 'never', updated_by: 'bob' });
  assert.equal(conv.willAnswer('@calc 12*7'), false, 'never: people only');
  conv.handle('conversation_updated', { conversation_id: 'c1', answer_policy: 'always', updated_by: 'bob' });
  assert.equal(conv.willAnswer('anything'), true);
});

test('a queued send being cancelled says so until its end, and again not when the cancel fails', async () => {
  let refuse = false;
  const { conv, requests } = detailedConversation({}, (event) => (event === 'cancel_stream' && refuse ? { code: 'not_found', message: 'gone' } : null));
  conv.handle('queued', { conversation_id: 'c1', stream_id: 'q1', message_id: 'm1', user_id: 'alice', message: 'later', position: 1 });
  assert.equal(conv.getSnapshot().queue[0].cancelling, false);
  const cancelling = conv.cancel('q1');
  assert.equal(conv.getSnapshot().queue[0].cancelling, true, 'at once');
  await cancelling;
  assert.deepEqual(requests.at(-1), { event: 'cancel_stream', payload: { conversation_id: 'c1', stream_id: 'q1' } });
  conv.handle('stream_end', { conversation_id: 'c1', stream_id: 'q1', full_content: '', status: 'cancelled' });
  assert.equal(conv.getSnapshot().queue.length, 0, 'its end takes it out');

  conv.handle('queued', { conversation_id: 'c1', stream_id: 'q2', message_id: 'm2', user_id: 'alice', message: 'later again', position: 1 });
  refuse = true;
  await assert.rejects(conv.cancel('q2'), (err) => err.code === 'not_found');
  assert.equal(conv.getSnapshot().queue[0].cancelling, false);
});
