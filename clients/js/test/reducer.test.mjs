// Unit tests of the answer reducer and the conversation state, with scripted events: merged
// chunks, a gap, repeats, a stream_reset (also one whose after_seq falls inside a merged
// chunk), the end. No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerTracker, Conversation, textOf } from '../dist/index.js';
import { UIChunkMapper } from '../dist/ai-sdk.js';
import { readUIMessageStream } from 'ai';
import { assertValidChunks } from './ai-check.mjs';

const C = 'conv-1';
const S = 'stream-1';
const chunk = (seq, content, first_seq) => ({
  event: 'stream_chunk',
  data: { conversation_id: C, stream_id: S, seq, content, ...(first_seq !== undefined ? { first_seq } : {}) },
});
const reasoning = (seq, content) => ({ event: 'stream_reasoning', data: { conversation_id: C, stream_id: S, seq, content } });
const reset = (seq, after_seq) => ({ event: 'stream_reset', data: { conversation_id: C, stream_id: S, seq, after_seq, attempt: 1, reason: 'test' } });
const toolStart = (seq, id, name) => ({ event: 'tool_call_start', data: { conversation_id: C, stream_id: S, seq, tool_call_id: id, name } });
const toolDelta = (seq, id, delta) => ({ event: 'tool_call_delta', data: { conversation_id: C, stream_id: S, seq, tool_call_id: id, delta } });
const toolCall = (seq, id, name, args, client) => ({
  event: 'tool_call',
  data: { conversation_id: C, stream_id: S, seq, tool_call_id: id, name, arguments: args, ...(client ? { client: true } : {}) },
});
const toolResult = (seq, id, name, output) => ({ event: 'tool_result', data: { conversation_id: C, stream_id: S, seq, tool_call_id: id, name, output, duration_ms: 3 } });

test('merged chunks, a gap, repeats and a stream_reset give each position once', () => {
  const t = new AnswerTracker(C, S);
  assert.equal(t.offer(reasoning(1, 'Let me ')), 'applied');
  assert.equal(t.offer(reasoning(2, 'think.')), 'applied');
  assert.equal(t.offer(chunk(3, 'Hello ')), 'applied');
  // A merged chunk: positions 4..6 in one event.
  assert.equal(t.offer(chunk(6, 'big wide ', 4)), 'applied');
  assert.equal(t.lastSeq, 6);
  // Repeats: a single position held, and a merged one covering held positions.
  assert.equal(t.offer(chunk(5, 'wide ')), 'duplicate');
  assert.equal(t.offer(chunk(6, 'big wide ', 4)), 'duplicate');
  // A gap: 8 before 7. Dropped; the caller resumes from 6.
  assert.equal(t.offer(chunk(8, 'LATE ')), 'gap');
  assert.equal(t.lastSeq, 6);
  // The catch-up: 7, then 8 again (now in order), then a repeat of 8.
  assert.equal(t.offer(chunk(7, 'world ')), 'applied');
  assert.equal(t.offer(chunk(8, 'failed ')), 'applied');
  assert.equal(t.offer(chunk(8, 'failed ')), 'duplicate');
  assert.equal(textOf(t.parts), 'Hello big wide world failed ');
  // The step failed after 7: everything after 7 goes, what follows is kept.
  assert.equal(t.offer(reset(9, 7)), 'applied');
  assert.equal(textOf(t.parts), 'Hello big wide world ');
  assert.deepEqual(t.retry, { afterSeq: 7, attempt: 1, reason: 'test' });
  assert.equal(t.offer(chunk(10, 'again.')), 'applied');
  const v = t.view();
  assert.equal(v.text, 'Hello big wide world again.');
  assert.equal(v.reasoning, 'Let me think.');
  assert.deepEqual(v.parts.map((p) => p.type), ['reasoning', 'text']);
  assert.equal(v.lastSeq, 10);
  // The view is the same object until something changes.
  assert.equal(t.view(), v);
  assert.equal(t.offer(chunk(10, 'again.')), 'duplicate');
  assert.equal(t.view(), v);
});

test('a stream_reset inside a merged chunk drops it whole and asks for the positions again', () => {
  const t = new AnswerTracker(C, S);
  t.offer(chunk(1, 'a '));
  t.offer(chunk(4, 'b c d ', 2)); // 2..4; the step fails after 2
  assert.equal(t.offer(reset(5, 2)), 'gap');
  assert.equal(t.lastSeq, 1);
  assert.equal(textOf(t.parts), 'a ');
  // The resume from 1 sends 2, 3, 4 and the reset again, one by one.
  for (const e of [chunk(2, 'b '), chunk(3, 'c '), chunk(4, 'd '), reset(5, 2), chunk(6, 'e')]) assert.equal(t.offer(e), 'applied');
  assert.equal(textOf(t.parts), 'a b e');
});

test('a reset takes back the failed attempt\'s tool calls and keeps the completed step', () => {
  const t = new AnswerTracker(C, S);
  for (const e of [
    toolStart(1, 'call_1', 'calculate'),
    toolDelta(2, 'call_1', '{"expression":'),
    toolDelta(3, 'call_1', '"2+3"}'),
    toolCall(4, 'call_1', 'calculate', { expression: '2+3' }),
    toolResult(5, 'call_1', 'calculate', { value: 5 }),
    chunk(6, 'It is '),
    toolStart(7, 'call_2', 'calculate'),
  ]) assert.equal(t.offer(e), 'applied');
  assert.equal(t.parts.length, 3);
  assert.equal(t.offer(reset(8, 5)), 'applied');
  assert.equal(t.parts.length, 1);
  const [tool] = t.parts;
  assert.equal(tool.type, 'tool');
  assert.equal(tool.state, 'output-available');
  assert.equal(tool.inputText, '{"expression":"2+3"}');
  assert.deepEqual(tool.input, { expression: '2+3' });
  assert.deepEqual(tool.output, { value: 5 });
  assert.equal(tool.durationMs, 3);
});

/** A conversation with a fake client: records the commands, answers resume_stream. */
function fakeConversation() {
  const requests = [];
  const host = {
    userId: 'alice',
    isConnected: true,
    historyLimit: 50,
    autoRunTools: true,
    async request(event, payload) {
      requests.push({ event, payload });
      if (event === 'get_history') return { conversation_id: C, messages: [] };
      if (event === 'resume_stream') return { conversation_id: C, stream_id: payload.stream_id, from_seq: payload.last_seq + 1, last_seq: 0, ended: false };
      return {};
    },
    async sendRequest() { throw new Error('not used'); },
    budget: () => null,
    refreshUsage() {},
    toolsFor: () => ({}),
    listUnread: () => undefined,
    listSetUnread() {},
    listUpsert() {},
    listDrop() {},
    listSetArchived() {},
    listActivity() {},
  };
  return { conv: new Conversation(C, host), requests };
}

test('the conversation resumes from the held seq on a gap, applies the catch-up once and ends the answer into messages', async () => {
  const { conv, requests } = fakeConversation();
  await conv.loadHistory();
  const seen = [];
  conv.observeAnswers((e) => seen.push(`${e.event}:${e.data.seq ?? ''}`));
  const snaps = new Set();
  conv.subscribe(() => snaps.add(conv.getSnapshot()));
  conv.handle('message_added', { conversation_id: C, message: { message_id: 'q1', role: 'user', content: 'hi', user_id: 'bob', parent_id: null } });
  conv.handle('stream_start', { conversation_id: C, stream_id: S, message_id: 'a1', parent_id: 'q1', assistant: 'helper' });
  conv.handle('stream_chunk', chunk(1, 'one ').data);
  conv.handle('stream_chunk', chunk(3, 'two three ', 2).data);
  const before = conv.getSnapshot();
  conv.handle('stream_chunk', chunk(5, 'five ').data); // 4 is missing: a gap
  assert.deepEqual(requests.filter((r) => r.event === 'resume_stream').map((r) => r.payload), [
    { conversation_id: C, stream_id: S, last_seq: 3 },
  ]);
  assert.equal(conv.getSnapshot().running.resuming, true);
  assert.equal(conv.getSnapshot().running.text, 'one two three ');
  conv.handle('stream_chunk', chunk(6, 'six ').data); // still the gap: dropped, no second resume
  assert.equal(requests.filter((r) => r.event === 'resume_stream').length, 1);
  // The catch-up, with repeats of what arrived live.
  for (const e of [chunk(3, 'two three ', 2), chunk(4, 'four '), chunk(5, 'five '), chunk(6, 'six '), chunk(6, 'six ')]) conv.handle('stream_chunk', e.data);
  await new Promise((r) => setImmediate(r));
  const running = conv.getSnapshot().running;
  assert.equal(running.text, 'one two three four five six ');
  assert.equal(running.resuming, false);
  assert.equal(running.assistant, 'helper');
  assert.equal(running.parentId, 'q1');
  assert.notEqual(before, conv.getSnapshot());
  conv.handle('stream_reset', reset(7, 4).data);
  assert.equal(conv.getSnapshot().running.text, 'one two three four ');
  conv.handle('stream_chunk', chunk(8, 'end').data);
  const end = { conversation_id: C, stream_id: S, message_id: 'a1', full_content: 'one two three four end', status: 'complete', finish_reason: 'stop' };
  conv.handle('stream_end', end);
  const ended = conv.getSnapshot();
  conv.handle('stream_end', end); // told again (a resume replays it): nothing changes
  conv.handle('stream_chunk', chunk(9, 'late').data);
  conv.handle('message_added', { conversation_id: C, message: { message_id: 'q1', role: 'user', content: 'hi', user_id: 'bob', parent_id: null } });
  const s = conv.getSnapshot();
  assert.equal(s, ended, 'repeats leave the snapshot as it was (same object)');
  assert.equal(s.running, null);
  assert.deepEqual(s.messages.map((m) => [m.id, m.role, m.content, m.parentId]), [
    ['q1', 'user', 'hi', null],
    ['a1', 'assistant', 'one two three four end', 'q1'],
  ]);
  assert.equal(s.messages[1].assistant, 'helper');
  assert.equal(s.unread, 2);
  assert.deepEqual(seen, [
    'stream_start:', 'stream_chunk:1', 'stream_chunk:3', 'stream_chunk:4', 'stream_chunk:5', 'stream_chunk:6',
    'stream_reset:7', 'stream_chunk:8', 'stream_end:',
  ]);
  // Every snapshot told was a new object; the last one is frozen.
  assert.ok(Object.isFrozen(s));
  assert.ok(snaps.size > 5);
});

test('a queued send shows in the queue, leaves it when its answer starts, and a cancelled one leaves it', () => {
  const { conv } = fakeConversation();
  conv.handle('queued', { conversation_id: C, stream_id: 'q-a', message_id: 'm-a', user_id: 'alice', message: 'first', position: 1 });
  conv.handle('queued', { conversation_id: C, stream_id: 'q-b', message_id: 'm-b', user_id: 'bob', message: 'second', position: 2 });
  conv.handle('queued', { conversation_id: C, stream_id: 'q-b', message_id: 'm-b', user_id: 'bob', message: 'second', position: 2 });
  assert.deepEqual(conv.getSnapshot().queue.map((q) => [q.streamId, q.message, q.position, q.mine]), [
    ['q-a', 'first', 1, true],
    ['q-b', 'second', 2, false],
  ]);
  conv.handle('stream_start', { conversation_id: C, stream_id: 'q-a', message_id: 'x', parent_id: null });
  assert.deepEqual(conv.getSnapshot().queue.map((q) => [q.streamId, q.position]), [['q-b', 1]]);
  conv.handle('stream_end', { conversation_id: C, stream_id: 'q-b', full_content: '', status: 'cancelled' });
  assert.equal(conv.getSnapshot().queue.length, 0);
  assert.equal(conv.getSnapshot().running.streamId, 'q-a');
});

test('approvals and client tool calls waiting show in the snapshot until decided or answered', () => {
  const { conv } = fakeConversation();
  conv.handle('stream_start', { conversation_id: C, stream_id: S, message_id: 'a', parent_id: null });
  conv.handle('tool_call_start', toolStart(1, 'c1', 'send_email').data);
  conv.handle('tool_call', toolCall(2, 'c1', 'send_email', { to: 'bob' }).data);
  conv.handle('tool_approval_request', { conversation_id: C, stream_id: S, seq: 3, approval_id: 'ap1', tool_call_id: 'c1', name: 'send_email', arguments: { to: 'bob' }, expires_at: 123 });
  assert.deepEqual(conv.getSnapshot().pendingApprovals, [
    { conversationId: C, streamId: S, approvalId: 'ap1', toolCallId: 'c1', name: 'send_email', arguments: { to: 'bob' }, expiresAt: 123 },
  ]);
  conv.handle('tool_approval', { conversation_id: C, stream_id: S, seq: 4, approval_id: 'ap1', approved: false, decided_by: 'bob', reason: 'no' });
  assert.equal(conv.getSnapshot().pendingApprovals.length, 0);
  conv.handle('tool_result', { conversation_id: C, stream_id: S, seq: 5, tool_call_id: 'c1', name: 'send_email', error: 'not run: denied', duration_ms: 0 });
  const [tool] = conv.getSnapshot().running.parts;
  assert.equal(tool.state, 'output-denied');
  assert.deepEqual(tool.approval, { approvalId: 'ap1', expiresAt: 123, approved: false, decidedBy: 'bob', reason: 'no' });
  assert.equal(tool.error, 'not run: denied');
  conv.handle('tool_call_start', { ...toolStart(6, 'c2', 'get_time').data, client: true });
  conv.handle('tool_call', toolCall(7, 'c2', 'get_time', { zone: 'UTC' }, true).data);
  const [call] = conv.getSnapshot().pendingToolCalls;
  assert.deepEqual(call, { conversationId: C, streamId: S, toolCallId: 'c2', name: 'get_time', arguments: { zone: 'UTC' }, mine: false, running: false });
  conv.handle('tool_result', toolResult(8, 'c2', 'get_time', { time: 'noon' }).data);
  assert.equal(conv.getSnapshot().pendingToolCalls.length, 0);
});

test('the UI chunk mapping of reasoning, text, tools, a reset and the end is valid for the AI SDK', async () => {
  const m = new UIChunkMapper();
  const events = [
    { event: 'stream_start', data: { conversation_id: C, stream_id: S, message_id: 'msg-1', parent_id: 'q' } },
    reasoning(1, 'Hmm.'),
    toolStart(2, 'c1', 'calculate'),
    toolDelta(3, 'c1', '{"expression":"2+3"}'),
    toolCall(4, 'c1', 'calculate', { expression: '2+3' }),
    toolResult(5, 'c1', 'calculate', { value: 5 }),
    chunk(6, 'Broken'),
    reset(7, 5),
    chunk(8, 'It is '),
    chunk(9, 'five.'),
    { event: 'stream_end', data: { conversation_id: C, stream_id: S, message_id: 'msg-1', full_content: 'It is five.', status: 'complete' } },
  ];
  const chunks = events.flatMap((e) => m.map(e));
  await assertValidChunks(chunks);
  assert.deepEqual(chunks.map((c) => c.type), [
    'start', 'start-step',
    'reasoning-start', 'reasoning-delta', 'reasoning-end',
    'tool-input-start', 'tool-input-delta', 'tool-input-available', 'tool-output-available',
    'finish-step', 'start-step', 'text-start', 'text-delta',
    'reset-step', 'text-start', 'text-delta', 'text-delta', 'text-end',
    'finish-step', 'finish',
  ]);
  // The server's ids: one counter per response.
  assert.deepEqual(chunks.filter((c) => c.type.endsWith('-start') && c.id).map((c) => c.id), ['reasoning-1', 'text-2', 'text-3']);
  assert.deepEqual(chunks.at(-1), { type: 'finish', finishReason: 'stop' });
  const stream = new ReadableStream({ start(c) { for (const x of chunks) c.enqueue(x); c.close(); } });
  let last;
  for await (const msg of readUIMessageStream({ stream })) last = msg;
  assert.equal(last.id, 'msg-1');
  const texts = last.parts.filter((p) => p.type === 'text').map((p) => p.text);
  // reset-step took the failed attempt's text back.
  assert.deepEqual(texts, ['It is five.']);
  const tool = last.parts.find((p) => p.type === 'tool-calculate');
  assert.equal(tool.state, 'output-available');
  assert.deepEqual(tool.output, { value: 5 });
  assert.equal(last.parts.find((p) => p.type === 'reasoning').text, 'Hmm.');
  // Events told again are mapped once.
  assert.deepEqual(m.map(chunk(9, 'five.')), []);
});

test('the UI chunk mapping: a denial, a reset right after the tools, the ends', async () => {
  const m = new UIChunkMapper();
  const chunks = [
    { event: 'stream_start', data: { conversation_id: C, stream_id: S, message_id: 'm' } },
    toolCall(1, 'c1', 'send_email', { to: 'bob' }),
    { event: 'tool_approval_request', data: { conversation_id: C, stream_id: S, seq: 2, approval_id: 'a1', tool_call_id: 'c1', name: 'send_email', arguments: {} } },
    { event: 'tool_approval', data: { conversation_id: C, stream_id: S, seq: 3, approval_id: 'a1', approved: false, decided_by: 'bob', reason: 'no' } },
    { event: 'tool_result', data: { conversation_id: C, stream_id: S, seq: 4, tool_call_id: 'c1', name: 'send_email', error: 'not run', duration_ms: 0 } },
    reset(5, 4),
    chunk(6, 'ok'),
    { event: 'stream_end', data: { conversation_id: C, stream_id: S, status: 'complete', finish_reason: 'budget' } },
  ].flatMap((e) => m.map(e));
  await assertValidChunks(chunks);
  assert.deepEqual(chunks.map((c) => c.type), [
    'start', 'start-step', 'tool-input-start', 'tool-input-available', 'tool-approval-request',
    'tool-approval-response', 'tool-output-denied',
    'finish-step', 'start-step', 'text-start', 'text-delta', 'text-end', 'finish-step', 'finish',
  ]);
  assert.deepEqual(chunks[5], { type: 'tool-approval-response', approvalId: 'a1', approved: false, reason: 'no' });
  assert.deepEqual(chunks.at(-1), { type: 'finish', finishReason: 'length' });
  const cancelled = new UIChunkMapper({ started: true }).map({ event: 'stream_end', data: { conversation_id: C, stream_id: S, status: 'cancelled' } });
  assert.deepEqual(cancelled, [{ type: 'abort', reason: 'cancelled' }]);
  const failed = new UIChunkMapper();
  const out = [chunk(1, 'x'), { event: 'stream_error', data: { conversation_id: C, stream_id: S, code: 'provider_unavailable', error: 'down' } }].flatMap((e) => failed.map(e));
  assert.deepEqual(out.map((c) => c.type), ['start', 'start-step', 'text-start', 'text-delta', 'text-end', 'error']);
  assert.equal(out.at(-1).errorText, 'down');
});
