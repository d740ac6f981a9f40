// Approvals decided on another client; the conversation list kept current by events.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MarieError, waitFor } from '../dist/index.js';
import { convId, makeClient, startChat } from './helpers.mjs';

let server;
before(async () => {
  server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '20' } });
});
after(async () => {
  await server?.stop();
});

test('a tool call asked by alice is approved by bob on his own client; both see the decision and the answer', async (t) => {
  const alice = await makeClient(server.url, 'alice');
  const bob = await makeClient(server.url, 'bob');
  t.after(() => {
    alice.close();
    bob.close();
  });
  // Bob's list is open before he is invited: the invitation puts the conversation in it.
  await bob.conversations.load();
  const id = convId('approve');
  const a = await alice.join(id);
  assert.equal(a.getSnapshot().created, true);
  await a.invite('bob');
  await waitFor(bob.conversations, (l) => l.items.some((c) => c.id === id), 5_000);
  const b = await bob.join(id);
  assert.deepEqual([...b.getSnapshot().members].sort(), ['alice', 'bob']);
  await a.send('send_email to bob');
  // Bob sees the request (alice's send) and decides it.
  const pending = (await waitFor(b, (s) => s.pendingApprovals.length === 1, 10_000)).pendingApprovals[0];
  assert.equal(pending.name, 'send_email');
  assert.deepEqual(pending.arguments, { to: 'bob' });
  assert.equal(typeof pending.expiresAt, 'number');
  const asker = await waitFor(a, (s) => s.pendingApprovals.length === 1);
  assert.equal(asker.pendingApprovals[0].approvalId, pending.approvalId);
  const ack = await b.approve(pending.approvalId, true);
  assert.equal(ack.approved, true);
  // Alice's snapshot: approved by bob, run, answered.
  const done = await waitFor(a, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 10_000);
  assert.equal(done.pendingApprovals.length, 0);
  const answer = done.messages.at(-1);
  const tool = answer.parts.find((p) => p.type === 'tool');
  assert.equal(tool.name, 'send_email');
  assert.equal(tool.state, 'output-available');
  assert.equal(tool.approval.approvalId, pending.approvalId);
  assert.equal(tool.approval.approved, true);
  assert.equal(tool.approval.decidedBy, 'bob');
  assert.match(answer.content, /^send_email returned: /);
  assert.doesNotMatch(answer.content, /not run/);
  // A later decision: the first one won.
  await assert.rejects(a.approve(pending.approvalId, false), (err) => err instanceof MarieError && ['conflict', 'not_found'].includes(err.code));
  // Bob's copy agrees.
  const bobs = await waitFor(b, (s) => s.messages.some((m) => m.id === answer.id));
  assert.equal(bobs.messages.find((m) => m.id === answer.id).content, answer.content);
});

test('a denial on the other client: the call does not run and the snapshot says who denied it', async (t) => {
  const alice = await makeClient(server.url, 'alice');
  const bob = await makeClient(server.url, 'bob');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const id = convId('deny');
  const a = await alice.join(id);
  await a.invite('bob');
  const b = await bob.join(id);
  await a.send('send_email to carol');
  const pending = (await waitFor(b, (s) => s.pendingApprovals.length === 1, 10_000)).pendingApprovals[0];
  await b.approve(pending.approvalId, false, 'not now');
  const done = await waitFor(a, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 10_000);
  const tool = done.messages.at(-1).parts.find((p) => p.type === 'tool');
  assert.equal(tool.state, 'output-denied');
  assert.equal(tool.approval.decidedBy, 'bob');
  assert.equal(tool.approval.reason, 'not now');
  assert.match(tool.error, /denied/);
});

test('the list: titles, unread counts, renames and deletions arrive by themselves', async (t) => {
  const alice = await makeClient(server.url, 'alice');
  const bob = await makeClient(server.url, 'bob');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const id = convId('list');
  const a = await alice.join(id);
  await a.invite('bob');
  await bob.conversations.load();
  await waitFor(bob.conversations, (l) => l.items.some((c) => c.id === id));
  await a.send('hello list');
  await waitFor(a, (s) => s.running === null && s.messages.length === 2, 10_000);
  // Bob is not in the room: the title comes with conversation_updated, unread with a refresh.
  const item = (await waitFor(bob.conversations, (l) => l.items.find((c) => c.id === id)?.unread === 2 && l.items.find((c) => c.id === id)?.title === 'hello list', 5_000)).items.find((c) => c.id === id);
  assert.equal(item.createdBy, 'alice');
  // Bob reads it: his unread goes to 0, the room sees his read mark.
  const b = await bob.join(id);
  await b.markRead();
  const mark = await waitFor(a, (s) => s.readMarks.bob !== undefined, 5_000);
  assert.equal(mark.readMarks.bob, b.getSnapshot().messages.at(-1).id);
  assert.equal(bob.conversations.get(id).unread, 0);
  // A rename by alice.
  await a.update({ title: 'Renamed' });
  await waitFor(bob.conversations, (l) => l.items.find((c) => c.id === id)?.title === 'Renamed');
  await waitFor(b, (s) => s.title === 'Renamed');
  // Deleted by its owner: gone from bob's list, and his conversation says so.
  await a.delete();
  await waitFor(bob.conversations, (l) => !l.items.some((c) => c.id === id));
  const closed = await waitFor(b, (s) => s.closed !== null);
  assert.deepEqual(closed.closed, { reason: 'deleted', by: 'alice' });
  assert.equal(closed.joined, false);
});
