// The Vercel AI SDK's own HTTP client against the chat example (PROTOCOL.md section 12):
// `ai` 7's DefaultChatTransport posts to /api/ai-sdk/chat and resumes from
// /api/ai-sdk/chat/{id}/stream, and readUIMessageStream builds the UIMessage the way useChat
// does. The SDK checks every chunk against its schema, so a chunk it does not accept fails
// the test where it arrives.
//
// Client tools: useChat sends no tool list, so the app declares them as a body extra
// (`useChat({ transport: new DefaultChatTransport({ body: { client_tools } }) })`), which the
// server offers to the model as send_message.client_tools. The response ends at the call
// (finish "tool-calls"); the output, posted in the assistant message as addToolOutput leaves
// it, is applied as submit_tool_result and the same message goes on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithToolCalls, readUIMessageStream, validateUIMessages } from 'ai';
import { devToken, startChat, within } from './helpers.mjs';

/** What the echo provider reasons before a message that starts with `think`. */
const REASONING = 'The user wants to see me think. I am a demo without a model, so I will repeat their message, word by word.';

/** The keys the SDK documents for each chunk type the server may send (PROTOCOL.md section 12). */
const CHUNK_KEYS = {
  start: ['messageId', 'messageMetadata'],
  'start-step': [],
  'finish-step': [],
  'reset-step': [],
  'text-start': ['id'],
  'text-delta': ['id', 'delta'],
  'text-end': ['id'],
  'reasoning-start': ['id'],
  'reasoning-delta': ['id', 'delta'],
  'reasoning-end': ['id'],
  'tool-input-start': ['toolCallId', 'toolName', 'dynamic', 'providerExecuted', 'title'],
  'tool-input-delta': ['toolCallId', 'inputTextDelta'],
  'tool-input-available': ['toolCallId', 'toolName', 'input', 'dynamic', 'providerExecuted', 'title'],
  'tool-input-error': ['toolCallId', 'toolName', 'input', 'errorText'],
  'tool-approval-request': ['approvalId', 'toolCallId'],
  'tool-approval-response': ['approvalId', 'approved', 'reason'],
  'tool-output-available': ['toolCallId', 'output', 'dynamic', 'providerExecuted', 'preliminary'],
  'tool-output-error': ['toolCallId', 'errorText', 'dynamic', 'providerExecuted'],
  'tool-output-denied': ['toolCallId'],
  finish: ['finishReason', 'messageMetadata'],
  error: ['errorText'],
  abort: ['reason'],
};

/** A tool the client runs: the time on the user's device. */
const GET_TIME = {
  name: 'get_time',
  description: 'The current time on the user\'s device',
  parameters: { type: 'object', properties: {} },
};

const words = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`).join(' ');
const newId = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;
const userMessage = (text) => ({ id: newId('u'), role: 'user', parts: [{ type: 'text', text }] });
const textOf = (chunks, type = 'text-delta') => chunks.filter((c) => c.type === type).map((c) => c.delta).join('');
const typesOf = (chunks) => chunks.map((c) => c.type);

/**
 * Checks one response's chunks the way a strict reader would. Only documented types and keys
 * are allowed, and no optional field is null (the SDK's optional fields reject null). A
 * `start` must come first and a `finish` last. Deltas and ends need an open start. Steps must
 * be balanced.
 */
function assertWellFormed(chunks) {
  const names = typesOf(chunks).join(', ');
  assert.ok(chunks.length >= 2, `a response has at least start and finish: ${names}`);
  assert.equal(chunks[0].type, 'start', names);
  assert.equal(chunks.at(-1).type, 'finish', names);
  const open = { text: new Set(), reasoning: new Set(), tool: new Set() };
  let steps = 0;
  for (const chunk of chunks) {
    const allowed = CHUNK_KEYS[chunk.type];
    assert.ok(allowed, `undocumented chunk type ${chunk.type}`);
    for (const [key, value] of Object.entries(chunk)) {
      if (key === 'type') continue;
      assert.ok(allowed.includes(key), `undocumented key ${key} on ${JSON.stringify(chunk)}`);
      if (key !== 'input' && key !== 'output') assert.notEqual(value, null, `null ${key} on ${JSON.stringify(chunk)}`);
    }
    const [kind, what] = chunk.type.split(/-(?=start$|delta$|end$)/);
    if (kind === 'text' || kind === 'reasoning') {
      if (what === 'start') {
        assert.ok(!open[kind].has(chunk.id), `${chunk.type} reuses the open id ${chunk.id}`);
        open[kind].add(chunk.id);
      } else {
        assert.ok(open[kind].has(chunk.id), `${chunk.type} without its start: ${names}`);
        if (what === 'end') open[kind].delete(chunk.id);
      }
    }
    if (chunk.type === 'tool-input-start') open.tool.add(chunk.toolCallId);
    if (chunk.type === 'tool-input-delta') assert.ok(open.tool.has(chunk.toolCallId), `tool-input-delta without its start: ${names}`);
    if (chunk.type === 'start-step') {
      assert.equal(steps, 0, `start-step inside a step: ${names}`);
      steps += 1;
    }
    if (chunk.type === 'finish-step') {
      assert.equal(steps, 1, `finish-step outside a step: ${names}`);
      steps -= 1;
    }
  }
  assert.equal(open.text.size + open.reasoning.size, 0, `every text and reasoning part ends: ${names}`);
  assert.equal(steps, 0, `every step finishes: ${names}`);
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

/** The UIMessage that `chunks` build, continuing `message` if given, as useChat builds it. */
async function toUIMessage(chunks, message) {
  let last;
  for await (const snapshot of readUIMessageStream({ message, stream: ReadableStream.from(chunks), terminateOnError: true })) {
    last = snapshot;
  }
  return last;
}

const partsOf = (message) => message.parts.filter((p) => p.type !== 'step-start');

describe('the AI SDK UI message stream over HTTP (DefaultChatTransport)', () => {
  let server;
  let aliceToken;
  let bobToken;
  /** Every response the transports got: { method, url, request (its body), status, headers, text: Promise<string> }. */
  const responses = [];

  /** A fetch that also keeps a copy of each response's body. */
  const recordingFetch = async (input, init) => {
    const res = await fetch(input, init);
    responses.push({
      method: init?.method ?? 'GET',
      url: String(input),
      request: init?.body ?? null,
      status: res.status,
      headers: res.headers,
      text: res.body ? res.clone().text().catch((e) => `(body failed: ${e.message})`) : Promise.resolve(''),
    });
    return res;
  };

  /** A transport as useChat gets it; `body`: the app's extras, merged into every POST. */
  const transportFor = (token, body) => new DefaultChatTransport({
    api: `${server.url}/api/ai-sdk/chat`,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    fetch: recordingFetch,
    body,
  });

  /** One POST: `messages` as useChat would send them. Resolves to the response's chunks. */
  async function post(transport, chatId, messages, { trigger = 'submit-message', messageId, onChunk } = {}) {
    const stream = await transport.sendMessages({ chatId, messages, trigger, messageId, abortSignal: undefined });
    return within(collect(stream, onChunk), 15_000, `the answer in ${chatId}`);
  }

  async function getMessages(chatId, token = aliceToken) {
    const res = await fetch(`${server.url}/api/ai-sdk/chat/${encodeURIComponent(chatId)}/messages`, {
      headers: { Authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(res.status, 200, await res.clone().text());
    return res.json();
  }

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '25' } });
    aliceToken = (await devToken(server.url, 'alice')).body.token;
    bobToken = (await devToken(server.url, 'bob')).body.token;
  });

  after(async () => {
    if (server) await server.stop();
  });

  const conversations = {};

  it('streams a text answer as SSE UI message chunks, ended by [DONE]', async () => {
    const chatId = newId('ai-text');
    const question = userMessage('hello there from the AI SDK');
    const before = responses.length;
    const chunks = await post(transportFor(aliceToken), chatId, [question]);
    assertWellFormed(chunks);
    assert.deepEqual([...new Set(typesOf(chunks))],
      ['start', 'start-step', 'text-start', 'text-delta', 'text-end', 'finish-step', 'finish']);
    assert.equal(typeof chunks[0].messageId, 'string');
    assert.equal(textOf(chunks), 'hello there from the AI SDK');
    assert.equal(chunks.at(-1).finishReason, 'stop');

    const res = responses[before];
    assert.equal(res.method, 'POST');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    assert.equal(res.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
    const raw = await res.text;
    assert.ok(!raw.includes('\r'), 'events are separated by \\n\\n');
    const data = raw.split('\n\n').filter(Boolean).map((event) => event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n'));
    assert.equal(data.at(-1), '[DONE]', 'the stream ends with data: [DONE]');
    assert.equal(data.filter((d) => d === '[DONE]').length, 1);

    const message = await toUIMessage(chunks);
    assert.equal(message.role, 'assistant');
    assert.equal(message.id, chunks[0].messageId);
    assert.deepEqual(partsOf(message).map((p) => [p.type, p.text, p.state]), [['text', 'hello there from the AI SDK', 'done']]);
    conversations.text = { chatId, question, answerId: message.id };
  });

  it('streams the reasoning first when the message starts with think', async () => {
    const chatId = newId('ai-think');
    const chunks = await post(transportFor(aliceToken), chatId, [userMessage('think about the sea')]);
    assertWellFormed(chunks);
    const types = typesOf(chunks);
    assert.ok(types.lastIndexOf('reasoning-end') < types.indexOf('text-start'), types.join());
    assert.equal(textOf(chunks, 'reasoning-delta'), REASONING);
    assert.equal(textOf(chunks), 'think about the sea');
    const message = await toUIMessage(chunks);
    assert.deepEqual(partsOf(message).map((p) => [p.type, p.text]), [['reasoning', REASONING], ['text', 'think about the sea']]);
  });

  it('calls calculate: its input, its output, then a step that says what it returned', async () => {
    const chatId = newId('ai-calc');
    const question = userMessage('calculate 12*7');
    const chunks = await post(transportFor(aliceToken), chatId, [question]);
    assertWellFormed(chunks);
    const types = typesOf(chunks);
    const start = chunks.find((c) => c.type === 'tool-input-start');
    assert.equal(start.toolName, 'calculate');
    const input = chunks.filter((c) => c.type === 'tool-input-delta' && c.toolCallId === start.toolCallId).map((c) => c.inputTextDelta).join('');
    assert.deepEqual(JSON.parse(input), { expression: '12*7' });
    const available = chunks.find((c) => c.type === 'tool-input-available');
    assert.equal(available.toolCallId, start.toolCallId);
    assert.equal(available.toolName, 'calculate');
    assert.deepEqual(available.input, { expression: '12*7' });
    const output = chunks.find((c) => c.type === 'tool-output-available');
    assert.equal(output.toolCallId, start.toolCallId);
    assert.deepEqual(output.output, { expression: '12*7', value: 84 });
    assert.ok(types.indexOf('tool-output-available') < types.indexOf('text-start'), types.join());
    assert.equal(types.filter((t) => t === 'start-step').length, 2, `the call and the text are two steps: ${types.join()}`);
    assert.match(textOf(chunks), /calculate returned: .*"value":84/);
    assert.equal(chunks.at(-1).finishReason, 'stop');

    const message = await toUIMessage(chunks);
    const [tool, text] = partsOf(message);
    assert.equal(tool.type, 'tool-calculate');
    assert.equal(tool.state, 'output-available');
    assert.deepEqual(tool.input, { expression: '12*7' });
    assert.equal(tool.output.value, 84);
    assert.match(text.text, /calculate returned: .*"value":84/);
    conversations.calc = { chatId, question, answerId: message.id, toolCallId: start.toolCallId };
  });

  /**
   * The first POST ends at the approval request. The second POST carries the answer as
   * addToolApprovalResponse leaves it, and continues the same assistant message. Resolves to
   * { first, second, message }.
   */
  async function approvalRound(chatId, text, decision) {
    const transport = transportFor(aliceToken);
    const question = userMessage(text);
    const first = await post(transport, chatId, [question]);
    assertWellFormed(first);
    const request = first.find((c) => c.type === 'tool-approval-request');
    assert.ok(request, `a tool-approval-request: ${typesOf(first).join()}`);
    const call = first.find((c) => c.type === 'tool-input-available');
    assert.equal(call.toolName, 'send_email');
    assert.equal(request.toolCallId, call.toolCallId);
    assert.equal(typeof request.approvalId, 'string');
    assert.ok(!first.some((c) => c.type.startsWith('tool-output')), 'nothing ran yet');
    const finish = first.at(-1);
    if (finish.finishReason !== undefined) assert.equal(finish.finishReason, 'tool-calls');

    const paused = await toUIMessage(first);
    const part = paused.parts.find((p) => p.type === 'tool-send_email');
    assert.equal(part.state, 'approval-requested');
    assert.equal(part.approval.id, request.approvalId);
    assert.deepEqual(part.input, { to: text.split(' ').at(-1) });

    // What useChat's addToolApprovalResponse({ id, approved, reason }) does to the part.
    part.state = 'approval-responded';
    part.approval = { ...part.approval, ...decision };
    const second = await post(transport, chatId, [question, paused], { messageId: paused.id });
    assertWellFormed(second);
    assert.equal(second[0].messageId ?? paused.id, paused.id, 'the continuation is the same assistant message');
    assert.ok(!second.some((c) => c.type === 'tool-input-start' && c.toolCallId === call.toolCallId), 'the call is not streamed again');
    const message = await toUIMessage(second, structuredClone(paused));
    assert.equal(message.id, paused.id);
    return { first, second, message, call, request };
  }

  it('resumes an answer past an approval already decided, to its end', async () => {
    const chatId = newId('ai-resume-approved');
    const transport = transportFor(aliceToken);
    const question = userMessage('send_email to carol');
    const first = await post(transport, chatId, [question]);
    const paused = await toUIMessage(first);
    const part = paused.parts.find((p) => p.type === 'tool-send_email');
    part.state = 'approval-responded';
    part.approval = { ...part.approval, approved: true };
    // The continuation streams; a reload mid-way resumes from the start.
    let midway;
    const reachedMidway = new Promise((resolve) => { midway = resolve; });
    const stream = await transport.sendMessages({
      chatId, messages: [question, paused], trigger: 'submit-message', messageId: paused.id, abortSignal: undefined,
    });
    const continued = collect(stream, (c) => { if (c.type === 'text-delta') midway(); });
    await within(reachedMidway, 10_000, 'the first words after the approval');
    const resumed = await transport.reconnectToStream({ chatId });
    assert.ok(resumed, 'the answer still runs');
    const replay = await within(collect(resumed), 15_000, 'the resumed answer');
    await continued;
    assertWellFormed(replay);
    const types = typesOf(replay);
    // The wait it passed is replayed as it was, requested then decided, and the response goes on past it.
    assert.ok(types.indexOf('tool-approval-request') < types.indexOf('tool-approval-response'), types.join());
    assert.equal(replay.find((c) => c.type === 'tool-approval-response').approved, true);
    assert.equal(replay.find((c) => c.type === 'tool-output-available').output.status, 'sent (simulated)');
    assert.match(textOf(replay), /send_email returned: .*sent \(simulated\)/);
    assert.equal(replay.at(-1).finishReason, 'stop');
    const message = await toUIMessage(replay);
    assert.equal(message.id, paused.id);
    assert.equal(message.parts.find((p) => p.type === 'tool-send_email').state, 'output-available');
  });

  it('pauses send_email for approval, and runs it when the approval comes back in the messages', async () => {
    const chatId = newId('ai-approve');
    const { second, message, call } = await approvalRound(chatId, 'send_email to bob', { approved: true });
    const output = second.find((c) => c.type === 'tool-output-available');
    assert.equal(output.toolCallId, call.toolCallId);
    assert.equal(output.output.to, 'bob');
    assert.equal(output.output.status, 'sent (simulated)');
    assert.match(textOf(second), /send_email returned: .*sent \(simulated\)/);
    assert.equal(second.at(-1).finishReason, 'stop');
    const [tool, text] = partsOf(message);
    assert.equal(tool.state, 'output-available');
    assert.equal(tool.output.status, 'sent (simulated)');
    assert.match(text.text, /send_email returned:/);
    conversations.approved = { chatId, answerId: message.id };
  });

  it('does not run send_email when the approval in the messages denies it', async () => {
    const chatId = newId('ai-deny');
    const { second, message, call } = await approvalRound(chatId, 'send_email to carol', { approved: false, reason: 'not today' });
    const denied = second.find((c) => c.type === 'tool-output-denied');
    assert.ok(denied, `a tool-output-denied: ${typesOf(second).join()}`);
    assert.equal(denied.toolCallId, call.toolCallId);
    assert.ok(!second.some((c) => c.type === 'tool-output-available'), 'the tool did not run');
    assert.match(textOf(second), /send_email returned: .*denied the call: not today/);
    const [tool] = partsOf(message);
    assert.equal(tool.state, 'output-denied');
    assert.equal(tool.approval.approved, false);
    conversations.denied = { chatId, answerId: message.id };
  });

  it('ends the response at a call of a client tool from body.client_tools, and goes on with the output posted in the message', async () => {
    const chatId = newId('ai-ctool');
    const transport = transportFor(aliceToken, { client_tools: [GET_TIME] });
    const question = userMessage('what is get_time');
    const before = responses.length;
    const first = await post(transport, chatId, [question]);
    assertWellFormed(first);
    const types = typesOf(first);
    assert.deepEqual(JSON.parse(await responses[before].request).client_tools, [GET_TIME], 'the extra is in the POST body');
    const call = first.find((c) => c.type === 'tool-input-available');
    assert.ok(call, `a tool-input-available: ${types.join()}`);
    assert.equal(call.toolName, 'get_time');
    assert.deepEqual(call.input, {});
    assert.ok(types.indexOf('tool-input-start') < types.indexOf('tool-input-available'), types.join());
    assert.ok(!types.some((t) => t.startsWith('tool-output') || t === 'tool-approval-request'), `the server neither runs it nor asks: ${types.join()}`);
    assert.ok(!types.includes('text-start'), `no text before the output: ${types.join()}`);
    assert.deepEqual(types.slice(-3), ['tool-input-available', 'finish-step', 'finish'], 'the response ends at the call');
    assert.equal(first.at(-1).finishReason, 'tool-calls');

    const waiting = await toUIMessage(first);
    const part = waiting.parts.find((p) => p.type === 'tool-get_time');
    assert.equal(part.toolCallId, call.toolCallId);
    assert.equal(part.state, 'input-available');
    // What useChat's addToolOutput({ tool: 'get_time', toolCallId, output }) does to the part.
    const output = { time: '12:34', zone: 'Europe/Paris' };
    Object.assign(part, { state: 'output-available', output, errorText: undefined });
    assert.ok(lastAssistantMessageIsCompleteWithToolCalls({ messages: [question, waiting] }), 'useChat would send it now');

    const second = await post(transport, chatId, [question, waiting], { messageId: waiting.id });
    assertWellFormed(second);
    const next = typesOf(second);
    assert.equal(second[0].messageId ?? waiting.id, waiting.id, 'the continuation is the same assistant message');
    assert.ok(!second.some((c) => c.type.startsWith('tool-input') && c.toolCallId === call.toolCallId), `the call is not streamed again: ${next.join()}`);
    const echoed = second.filter((c) => c.type.startsWith('tool-output'));
    assert.ok(echoed.every((c) => c.type === 'tool-output-available' && c.toolCallId === call.toolCallId), next.join());
    for (const c of echoed) assert.deepEqual(c.output, output);
    assert.match(textOf(second), /^get_time returned: .*"time":"12:34"/);
    assert.equal(second.at(-1).finishReason, 'stop');

    const message = await toUIMessage(second, structuredClone(waiting));
    assert.equal(message.id, waiting.id);
    const [tool, text, ...rest] = partsOf(message);
    assert.deepEqual(rest, [], JSON.stringify(message.parts));
    assert.equal(tool.type, 'tool-get_time');
    assert.equal(tool.state, 'output-available');
    assert.deepEqual(tool.output, output);
    assert.equal(text.type, 'text');
    assert.match(text.text, /^get_time returned: .*"zone":"Europe\/Paris"/);
    assert.equal(text.state, 'done');

    // The history holds the call, the client's output and the text, in one answer.
    const branch = await validateUIMessages({ messages: await getMessages(chatId) });
    assert.deepEqual(branch.map((m) => m.role), ['user', 'assistant']);
    assert.equal(branch[1].id, waiting.id);
    const stored = branch[1].parts.find((p) => p.type === 'tool-get_time');
    assert.equal(stored.state, 'output-available');
    assert.deepEqual(stored.output, output);
  });

  it('regenerates an answer: a new assistant message, which the active branch then holds', async () => {
    const chatId = newId('ai-regen');
    const transport = transportFor(aliceToken);
    const question = userMessage('say this twice');
    const first = await post(transport, chatId, [question]);
    const firstId = first[0].messageId;
    // regenerate({ messageId }) cuts the messages before that assistant message.
    const again = await post(transport, chatId, [question], { trigger: 'regenerate-message', messageId: firstId });
    assertWellFormed(again);
    assert.notEqual(again[0].messageId, firstId, 'a new message, beside the first');
    assert.equal(textOf(again), 'say this twice');
    const branch = await getMessages(chatId);
    assert.deepEqual(branch.map((m) => m.role), ['user', 'assistant']);
    assert.equal(branch[1].id, again[0].messageId);
    assert.deepEqual(partsOf(branch[0]).map((p) => p.text), ['say this twice']);
  });

  it('resumes a running answer from its start, and answers 204 once it has ended', async () => {
    const chatId = newId('ai-resume');
    const transport = transportFor(aliceToken);
    const text = words(40, 'resume');
    let midway;
    const reachedMidway = new Promise((resolve) => { midway = resolve; });
    const original = post(transport, chatId, [userMessage(text)], {
      onChunk: (_, chunks) => { if (chunks.filter((c) => c.type === 'text-delta').length === 3) midway(); },
    });
    await within(reachedMidway, 10_000, 'three words of the answer');

    const resumed = await transport.reconnectToStream({ chatId });
    assert.ok(resumed, 'the running answer, not null');
    const replay = await within(collect(resumed), 15_000, 'the resumed answer');
    const live = await original;
    assertWellFormed(replay);
    assert.equal(replay[0].messageId, live[0].messageId, 'the same answer');
    assert.equal(textOf(replay), text, 'the whole answer, from its first word, once');
    assert.equal(textOf(live), text);
    assert.equal((await toUIMessage(replay)).parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), text);

    const reconnect = responses.findLast((r) => r.method === 'GET');
    assert.equal(new URL(reconnect.url).pathname, `/api/ai-sdk/chat/${chatId}/stream`);

    // Another user may not read it.
    await assert.rejects(transportFor(bobToken).reconnectToStream({ chatId }), (e) => e.statusCode === 403);
    // Over: nothing to resume.
    assert.equal(await transport.reconnectToStream({ chatId }), null);
    assert.equal(responses.findLast((r) => r.method === 'GET').status, 204);
    // useChat({ resume: true }) asks on every page load, also for a chat that never ran.
    assert.equal(await transport.reconnectToStream({ chatId: newId('ai-never') }), null);
  });

  it('lists the active branch as UIMessages that validateUIMessages accepts', async () => {
    assert.ok(conversations.calc && conversations.approved && conversations.denied, 'the tests above ran');
    const calc = await validateUIMessages({ messages: await getMessages(conversations.calc.chatId) });
    assert.deepEqual(calc.map((m) => m.role), ['user', 'assistant']);
    assert.deepEqual(partsOf(calc[0]).map((p) => [p.type, p.text]), [['text', 'calculate 12*7']]);
    assert.equal(calc[1].id, conversations.calc.answerId);
    const [tool, text] = partsOf(calc[1]);
    assert.equal(tool.type, 'tool-calculate');
    assert.equal(tool.toolCallId, conversations.calc.toolCallId);
    assert.equal(tool.state, 'output-available');
    assert.deepEqual(tool.input, { expression: '12*7' });
    assert.deepEqual(tool.output, { expression: '12*7', value: 84 });
    assert.match(text.text, /calculate returned: .*"value":84/);

    const approved = await validateUIMessages({ messages: await getMessages(conversations.approved.chatId) });
    assert.equal(approved.at(-1).id, conversations.approved.answerId);
    const sent = approved.at(-1).parts.find((p) => p.type === 'tool-send_email');
    assert.equal(sent.state, 'output-available');
    assert.equal(sent.output.status, 'sent (simulated)');

    const denied = await validateUIMessages({ messages: await getMessages(conversations.denied.chatId) });
    const refused = denied.at(-1).parts.find((p) => p.type === 'tool-send_email');
    // History keeps the call's result, not the approval's id: a denied call reads back as
    // the error the model was told (docs/clients.md).
    assert.equal(refused.state, 'output-error');
    assert.match(refused.errorText, /^not run: alice denied the call/);

    const text1 = await validateUIMessages({ messages: await getMessages(conversations.text.chatId) });
    assert.deepEqual(text1.map((m) => partsOf(m).map((p) => p.text).join('')), ['hello there from the AI SDK', 'hello there from the AI SDK']);
  });

  it('refuses a request without credentials (401) and a conversation of another user (403)', async () => {
    await assert.rejects(post(transportFor(null), newId('ai-anon'), [userMessage('hello')]), (e) => e.statusCode === 401);
    assert.ok(conversations.text, 'the first test ran');
    await assert.rejects(post(transportFor(bobToken), conversations.text.chatId, [userMessage('let me in')]), (e) => e.statusCode === 403);
    const res = await fetch(`${server.url}/api/ai-sdk/chat/${conversations.text.chatId}/messages`, { headers: { Authorization: `Bearer ${bobToken}` } });
    assert.equal(res.status, 403);
  });
});
