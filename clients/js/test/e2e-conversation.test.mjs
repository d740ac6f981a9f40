// Branches (edit, regenerate, switch_branch) and the queue (on_busy: enqueue).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MarieError, waitFor } from '../dist/index.js';
import { convId, makeClient, startChat, words } from './helpers.mjs';

let server;
before(async () => {
  server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '20' } });
});
after(async () => {
  await server?.stop();
});

const idle = (n) => (s) => s.running === null && s.messages.length === n && s.messages.every((m) => m.status !== 'streaming');

test('an edit makes a second version; switch_branch goes back to the first; regenerate adds an answer beside', async (t) => {
  const client = await makeClient(server.url, 'ann');
  t.after(() => client.close());
  const conv = await client.join(convId('branch'));
  await conv.send('first question');
  let s = await waitFor(conv, idle(2), 10_000);
  const original = s.messages[0];
  assert.equal(s.messages[1].content, 'first question');
  // Edit: a new user message beside the first, then its answer; the active branch moves.
  const edited = await conv.edit(original.id, 'edited question');
  s = await waitFor(conv, (x) => idle(2)(x) && x.messages[1].content === 'edited question' && x.messages[0].branch?.count === 2, 10_000);
  assert.equal(s.messages[0].id, edited.messageId);
  assert.equal(s.messages[0].content, 'edited question');
  assert.deepEqual(s.messages[0].branch, { index: 1, count: 2, previousId: original.id, nextId: null });
  assert.deepEqual(s.messages[0].siblings, [original.id, edited.messageId]);
  // Switch back: the whole room is told (branch_switched), the history shows the first branch.
  const switched = await conv.switchBranch(original.id);
  assert.equal(switched.message_id, original.id);
  s = await waitFor(conv, (x) => x.messages[0]?.id === original.id && x.messages.length === 2, 5_000);
  assert.deepEqual(s.messages.map((m) => m.content), ['first question', 'first question']);
  assert.deepEqual(s.messages[0].branch, { index: 0, count: 2, previousId: null, nextId: edited.messageId });
  // Regenerate the answer: a second version of it, the active branch moves to it.
  const firstAnswer = s.messages[1].id;
  const regen = await conv.regenerate(firstAnswer);
  assert.equal(regen.messageId, original.id); // the question answered
  s = await waitFor(conv, (x) => idle(2)(x) && x.messages[1].id !== firstAnswer && x.messages[1].branch?.count === 2, 10_000);
  assert.equal(s.messages[1].content, 'first question');
  assert.deepEqual(s.messages[1].siblings, [firstAnswer, s.messages[1].id]);
  // The server agrees on the active branch.
  const history = await client.getHistory(conv.id);
  assert.deepEqual(history.messages.map((m) => m.message_id), s.messages.map((m) => m.id));
});

test('sends while an answer runs wait in the queue (on_busy: enqueue), shown in order, then answered in order', async (t) => {
  const alice = await makeClient(server.url, 'cid');
  const bob = await makeClient(server.url, 'dan');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const id = convId('queue');
  const conv = await alice.join(id);
  await conv.invite('dan');
  const long = words(25, 'long');
  await conv.send(long);
  await waitFor(conv, (s) => s.running !== null);
  // The default (reject) says busy.
  await assert.rejects(conv.send('refused'), (err) => err instanceof MarieError && err.code === 'busy');
  const second = await conv.send('second message', { onBusy: 'enqueue' });
  const third = await conv.send('third message', { onBusy: 'enqueue' });
  assert.equal(second.queued, 1);
  assert.equal(third.queued, 2);
  const queued = await waitFor(conv, (s) => s.queue.length === 2);
  assert.deepEqual(queued.queue.map((q) => [q.streamId, q.message, q.position, q.mine, q.userId]), [
    [second.streamId, 'second message', 1, true, 'cid'],
    [third.streamId, 'third message', 2, true, 'cid'],
  ]);
  // A member who joins now sees the queue too (joined.queued).
  const b = await bob.join(id);
  assert.deepEqual(b.getSnapshot().queue.map((q) => [q.message, q.position, q.mine]), [
    ['second message', 1, false],
    ['third message', 2, false],
  ]);
  // The second leaves the queue when its turn comes; the third moves up.
  await waitFor(conv, (s) => s.running?.streamId === second.streamId, 10_000);
  assert.deepEqual(conv.getSnapshot().queue.map((q) => [q.message, q.position]), [['third message', 1]]);
  const done = await waitFor(conv, idle(6), 15_000);
  assert.deepEqual(done.messages.map((m) => [m.role, m.content]), [
    ['user', long],
    ['assistant', long],
    ['user', 'second message'],
    ['assistant', 'second message'],
    ['user', 'third message'],
    ['assistant', 'third message'],
  ]);
  assert.equal(done.queue.length, 0);
  assert.equal(done.messages[3].streamId, second.streamId);
  assert.equal(done.messages[5].streamId, third.streamId);
  const bobs = await waitFor(b, idle(6), 5_000);
  assert.deepEqual(bobs.messages.map((m) => m.id), done.messages.map((m) => m.id));
});

test('a queued send can be taken out of the queue (cancel_stream with its stream id)', async (t) => {
  const client = await makeClient(server.url, 'eve');
  t.after(() => client.close());
  const conv = await client.join(convId('unqueue'));
  await conv.send(words(20, 'x'));
  await waitFor(conv, (s) => s.running !== null);
  const queued = await conv.send('never answered', { onBusy: 'enqueue' });
  await waitFor(conv, (s) => s.queue.length === 1);
  await conv.cancel(queued.streamId);
  await waitFor(conv, (s) => s.queue.length === 0, 5_000);
  const done = await waitFor(conv, idle(2), 10_000);
  assert.ok(!done.messages.some((m) => m.content === 'never answered'));
});

test('files: uploaded over HTTP, named in a send, read back; the answer saw them', async (t) => {
  const client = await makeClient(server.url, 'fred');
  t.after(() => client.close());
  const conv = await client.join(convId('files'));
  const file = await client.uploadFile(conv.id, new Blob(['hello file'], { type: 'text/plain' }), { name: 'note.txt' });
  assert.equal(file.name, 'note.txt');
  assert.equal(file.contentType, 'text/plain');
  assert.equal(file.size, 10);
  await conv.send('see the file', { attachments: [file.fileId] });
  const done = await waitFor(conv, idle(2), 10_000);
  assert.deepEqual(done.messages[0].attachments.map((a) => [a.file_id, a.name]), [[file.fileId, 'note.txt']]);
  assert.equal(done.messages[1].content, 'see the file [attached: note.txt (text/plain, 10 bytes)]');
  assert.equal(await (await client.downloadFile(file.fileId)).text(), 'hello file');
  await assert.rejects(client.downloadFile('no-such-file'), (err) => err instanceof MarieError && err.code === 'not_found');
});

test('a group message that asks no answer, typing, and budget', async (t) => {
  const alice = await makeClient(server.url, 'gina');
  const bob = await makeClient(server.url, 'hank');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const id = convId('group');
  const a = await alice.join(id);
  await a.invite('hank');
  const b = await bob.join(id);
  const sent = await a.send('just for bob', { answer: false });
  assert.equal(sent.answered, false);
  assert.equal(sent.streamId, undefined);
  const seen = await waitFor(b, (s) => s.messages.some((m) => m.id === sent.messageId));
  assert.equal(seen.messages.at(-1).userId, 'gina');
  assert.equal(seen.running, null);
  a.typing(true);
  await waitFor(b, (s) => s.typingUsers.includes('gina'), 5_000);
  a.typing(false);
  await waitFor(b, (s) => s.typingUsers.length === 0, 5_000);
  const budget = await waitFor(a, (s) => s.budget !== null, 5_000);
  assert.deepEqual(budget.budget, { used: 0, limit: null, period: null, resetsAt: null });
});
