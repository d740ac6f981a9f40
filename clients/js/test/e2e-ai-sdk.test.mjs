// The AI SDK transport over a real server, read with the `ai` package's own readUIMessageStream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readUIMessageStream } from 'ai';
import { waitFor } from '../dist/index.js';
import { MarieChatTransport } from '../dist/ai-sdk.js';
import { assertValidChunks } from './ai-check.mjs';
import { convId, makeClient, startChat, words } from './helpers.mjs';

/** A user of its own per test (the message rate limit is per user). */
const someone = () => `user-${Math.random().toString(36).slice(2, 10)}`;

let server;
before(async () => {
  server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '15' } });
});
after(async () => {
  await server?.stop();
});

const REASONING = 'The user wants to see me think. I am a demo without a model, so I will repeat their message, word by word.';

/** Reads a chunk stream: its chunks (checked against the AI SDK's schema) and the last UIMessage. */
async function read(stream, message) {
  const chunks = [];
  const tee = stream.pipeThrough(new TransformStream({ transform(c, ctl) { chunks.push(c); ctl.enqueue(c); } }));
  let last;
  for await (const m of readUIMessageStream({ stream: tee, ...(message ? { message } : {}), terminateOnError: true })) last = m;
  await assertValidChunks(chunks);
  return { chunks, message: last };
}

const user = (text, id = `u-${Math.random().toString(36).slice(2, 10)}`) => ({ id, role: 'user', parts: [{ type: 'text', text }] });

test('sendMessages: reasoning and text, read by readUIMessageStream', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const transport = new MarieChatTransport(client);
  const chatId = convId('ai');
  const stream = await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: undefined, messages: [user('think about this')], abortSignal: undefined });
  const { chunks, message } = await read(stream);
  assert.equal(chunks[0].type, 'start');
  assert.equal(chunks.at(-1).type, 'finish');
  assert.equal(chunks.at(-1).finishReason, 'stop');
  assert.deepEqual(message.parts.map((p) => p.type), ['step-start', 'reasoning', 'text']);
  assert.equal(message.parts[1].text, REASONING);
  assert.equal(message.parts[2].text, 'think about this');
  // The UIMessage's id is the stored answer's.
  const conv = client.conversation(chatId);
  const s = await waitFor(conv, (x) => x.running === null && x.messages.length === 2);
  assert.equal(message.id, s.messages[1].id);
});

test('sendMessages: a tool call in one step, the text in the next', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const transport = new MarieChatTransport(client);
  const stream = await transport.sendMessages({ trigger: 'submit-message', chatId: convId('ai-tool'), messageId: undefined, messages: [user('calculate 12*7')], abortSignal: undefined });
  const { message } = await read(stream);
  assert.deepEqual(message.parts.map((p) => p.type), ['step-start', 'tool-calculate', 'step-start', 'text']);
  const tool = message.parts[1];
  assert.equal(tool.state, 'output-available');
  assert.deepEqual(tool.input, { expression: '12*7' });
  assert.deepEqual(tool.output, { expression: '12*7', value: 84 });
  assert.match(message.parts[3].text, /^calculate returned: .*84/);
});

test('an approval: the stream stops at the request; the approval posted back continues the same answer', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const transport = new MarieChatTransport(client);
  const chatId = convId('ai-approve');
  const question = user('send_email to bob');
  const first = await read(await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: undefined, messages: [question], abortSignal: undefined }));
  assert.deepEqual(first.chunks.at(-1), { type: 'finish', finishReason: 'tool-calls' });
  const part = first.message.parts.find((p) => p.type === 'tool-send_email');
  assert.equal(part.state, 'approval-requested');
  assert.equal(typeof part.approval.id, 'string');
  // What useChat posts after addToolApprovalResponse: the part answered.
  const answered = {
    ...first.message,
    parts: first.message.parts.map((p) => (p === part ? { ...p, state: 'approval-responded', approval: { id: part.approval.id, approved: true } } : p)),
  };
  const second = await read(
    await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: answered.id, messages: [question, answered], abortSignal: undefined }),
    answered,
  );
  assert.deepEqual(second.chunks.slice(0, 4).map((c) => c.type), ['start', 'tool-approval-response', 'tool-output-available', 'start-step']);
  assert.equal(second.chunks[0].messageId, first.message.id);
  assert.equal(second.message.id, first.message.id);
  const tool = second.message.parts.find((p) => p.type === 'tool-send_email');
  assert.equal(tool.state, 'output-available');
  const text = second.message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
  assert.match(text, /^send_email returned: /);
  assert.doesNotMatch(text, /not run/);
  // One tool part: the continuation did not repeat the call.
  assert.equal(second.message.parts.filter((p) => p.type === 'tool-send_email').length, 1);
});

test('reconnectToStream: null when no answer runs; the running answer from its start otherwise', async (t) => {
  const name = someone();
  const alice = await makeClient(server.url, name);
  const other = await makeClient(server.url, name);
  t.after(() => {
    alice.close();
    other.close();
  });
  const chatId = convId('ai-reconnect');
  const transport = new MarieChatTransport(other);
  assert.equal(await transport.reconnectToStream({ chatId }), null);
  const conv = await alice.join(chatId);
  const text = words(30, 'r');
  await conv.send(text);
  await waitFor(conv, (s) => s.running !== null && s.running.lastSeq >= 5);
  const stream = await transport.reconnectToStream({ chatId });
  assert.ok(stream, 'a stream while the answer runs');
  const { message, chunks } = await read(stream);
  assert.equal(message.parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), text);
  assert.equal(chunks.at(-1).type, 'finish');
  assert.equal(await transport.reconnectToStream({ chatId }), null);
});

test('regenerate-message: a new answer to the same question', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const transport = new MarieChatTransport(client);
  const chatId = convId('ai-regen');
  const q = user('say it twice');
  const first = await read(await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: undefined, messages: [q], abortSignal: undefined }));
  const again = await read(await transport.sendMessages({ trigger: 'regenerate-message', chatId, messageId: first.message.id, messages: [q], abortSignal: undefined }));
  assert.notEqual(again.message.id, first.message.id);
  assert.equal(again.message.parts.find((p) => p.type === 'text').text, 'say it twice');
  const s = await waitFor(client.conversation(chatId), (x) => x.running === null && x.messages[1]?.id === again.message.id && x.messages[1].siblings?.length === 2, 5_000);
  assert.deepEqual(s.messages[1].siblings, [first.message.id, again.message.id]);
});

const TIME_TOOL = {
  description: 'The current time in a time zone',
  parameters: { type: 'object', properties: { zone: { type: 'string' } } },
};

test('a client tool the UI answers: the stream stops at its call; the output posted back is submitted and the answer goes on', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const transport = new MarieChatTransport(client, { tools: { get_time: TIME_TOOL } });
  const chatId = convId('ai-ctool');
  const question = user('what is get_time');
  const first = await read(await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: undefined, messages: [question], abortSignal: undefined }));
  assert.deepEqual(first.chunks.at(-1), { type: 'finish', finishReason: 'tool-calls' });
  const part = first.message.parts.find((p) => p.type === 'tool-get_time');
  assert.ok(part, `a get_time call (parts: ${JSON.stringify(first.message.parts.map((p) => p.type))})`);
  assert.equal(part.state, 'input-available');
  // What useChat posts after addToolOutput.
  const answered = { ...first.message, parts: first.message.parts.map((p) => (p === part ? { ...p, state: 'output-available', output: { time: '09:00' } } : p)) };
  const second = await read(
    await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: answered.id, messages: [question, answered], abortSignal: undefined }),
    answered,
  );
  const tool = second.message.parts.find((p) => p.type === 'tool-get_time');
  assert.equal(tool.state, 'output-available');
  assert.deepEqual(tool.output, { time: '09:00' });
  const text = second.message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
  assert.match(text, /get_time returned: .*09:00/);
});

test('a client tool registered with execute on the client: answered by the client, one stream to the end', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  client.registerTool('get_time', { ...TIME_TOOL, execute: () => ({ time: '10:30' }) });
  const transport = new MarieChatTransport(client);
  const { chunks, message } = await read(
    await transport.sendMessages({ trigger: 'submit-message', chatId: convId('ai-ctool-run'), messageId: undefined, messages: [user('what is get_time')], abortSignal: undefined }),
  );
  assert.deepEqual(chunks.at(-1), { type: 'finish', finishReason: 'stop' });
  const tool = message.parts.find((p) => p.type === 'tool-get_time');
  assert.equal(tool.state, 'output-available');
  assert.deepEqual(tool.output, { time: '10:30' });
  assert.match(message.parts.at(-1).text, /10:30/);
});

test('abort: stop() cancels the answer and ends the stream with abort', async (t) => {
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const transport = new MarieChatTransport(client);
  const chatId = convId('ai-abort');
  const controller = new AbortController();
  const stream = await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: undefined, messages: [user(words(40, 'a'))], abortSignal: controller.signal });
  const reader = stream.getReader();
  const chunks = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    if (chunks.filter((c) => c.type === 'text-delta').length === 3) controller.abort();
  }
  await assertValidChunks(chunks);
  assert.equal(chunks.at(-1).type, 'abort');
  const s = await waitFor(client.conversation(chatId), (x) => x.running === null && x.messages.length === 2, 5_000);
  assert.equal(s.messages[1].status, 'cancelled');
  assert.ok(s.messages[1].content.length < words(40, 'a').length);
});

test("the AI SDK's own Chat (what useChat runs): an approval answered with addToolApprovalResponse is sent back by itself and the answer completes", async (t) => {
  const { AbstractChat, lastAssistantMessageIsCompleteWithApprovalResponses } = await import('ai');
  /** The smallest ChatState: arrays, and a listener told of every change. */
  class State {
    status = 'ready';
    error = undefined;
    messages = [];
    listeners = new Set();
    changed() {
      for (const l of [...this.listeners]) l();
    }
    pushMessage = (m) => {
      this.messages = [...this.messages, m];
      this.changed();
    };
    popMessage = () => {
      this.messages = this.messages.slice(0, -1);
      this.changed();
    };
    replaceMessage = (i, m) => {
      this.messages = this.messages.map((x, j) => (j === i ? m : x));
      this.changed();
    };
    snapshot = (x) => structuredClone(x);
  }
  class Chat extends AbstractChat {
    constructor(init) {
      const state = new State();
      super({ ...init, state });
      this.s = state;
    }
    until(predicate, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (predicate(this)) {
            clearTimeout(timer);
            this.s.listeners.delete(check);
            resolve(this);
          }
        };
        const timer = setTimeout(() => {
          this.s.listeners.delete(check);
          reject(new Error(`chat: not there in time (status ${this.status}, ${JSON.stringify(this.messages.at(-1)?.parts?.map((p) => p.state ?? p.type))})`));
        }, ms);
        this.s.listeners.add(check);
        check();
      });
    }
  }
  const client = await makeClient(server.url, someone());
  t.after(() => client.close());
  const chat = new Chat({
    id: convId('ai-chat'),
    transport: new MarieChatTransport(client),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  await chat.sendMessage({ text: 'send_email to bob' });
  const asked = await chat.until((c) => c.messages.at(-1)?.parts.some((p) => p.type === 'tool-send_email' && p.state === 'approval-requested'));
  const part = asked.messages.at(-1).parts.find((p) => p.type === 'tool-send_email');
  await chat.addToolApprovalResponse({ id: part.approval.id, approved: true });
  const done = await chat.until((c) => c.messages.at(-1)?.parts.some((p) => p.type === 'text' && /send_email returned/.test(p.text)) && c.messages.at(-1).parts.find((p) => p.type === 'tool-send_email').state === 'output-available');
  assert.equal(done.messages.length, 2);
  assert.equal(done.messages[1].parts.filter((p) => p.type === 'tool-send_email').length, 1);
  const conv = client.conversation(chat.id);
  const s = await waitFor(conv, (x) => x.running === null && x.messages.length === 2);
  assert.equal(done.messages[1].id, s.messages[1].id);
});

/** The server's own UI message stream for `text` (POST /api/ai-sdk/chat), as chunks. */
async function serverChunks(url, token, chatId, text, messages = [user(text)]) {
  const res = await fetch(new URL('/api/ai-sdk/chat', url), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: chatId, messages, trigger: 'submit-message', messageId: messages.at(-1).role === 'assistant' ? messages.at(-1).id : undefined }),
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status === 404) return null; // a server without the endpoint
  assert.equal(res.status, 200, `POST /api/ai-sdk/chat: ${res.status}`);
  const body = await res.text();
  return body
    .split('\n')
    .filter((l) => l.startsWith('data: ') && l !== 'data: [DONE]')
    .map((l) => JSON.parse(l.slice(6)));
}

/** Chunks with their ids (messages, calls, approvals) numbered in order of appearance. */
function normalized(chunks) {
  const ids = new Map();
  const id = (v) => {
    if (!ids.has(v)) ids.set(v, `#${ids.size + 1}`);
    return ids.get(v);
  };
  return chunks.map((c) => {
    const out = { ...c };
    for (const key of ['messageId', 'toolCallId', 'approvalId']) if (key in out) out[key] = id(out[key]);
    // The demo e-mail tool numbers what it sends, per user: not the mapping's business.
    if (out.output && typeof out.output === 'object' && 'id' in out.output) out.output = { ...out.output, id: 'N' };
    if (typeof out.delta === 'string') out.delta = out.delta.replace(/"id":\d+/g, '"id":N');
    return out;
  });
}

test("the transport's chunks are the server endpoint's (/api/ai-sdk/chat), chunk for chunk", async (t) => {
  const { devToken } = await import('./helpers.mjs');
  const name = someone();
  const client = await makeClient(server.url, name);
  t.after(() => client.close());
  const token = await devToken(server.url, name);
  const transport = new MarieChatTransport(client);
  for (const text of ['think it over', 'calculate 12*7', 'send_email to bob']) {
    const fromServer = await serverChunks(server.url, token, convId('parity-http'), text);
    if (fromServer === null) {
      t.skip('this server has no /api/ai-sdk/chat');
      return;
    }
    const { chunks } = await read(
      await transport.sendMessages({ trigger: 'submit-message', chatId: convId('parity-ws'), messageId: undefined, messages: [user(text)], abortSignal: undefined }),
    );
    assert.deepEqual(normalized(chunks), normalized(fromServer), `the chunks of ${JSON.stringify(text)}`);
  }
  // The continuation after an approval, both ways.
  const approved = async (chunks) => {
    const stream = new ReadableStream({ start(c) { for (const x of chunks) c.enqueue(x); c.close(); } });
    let m;
    for await (const x of readUIMessageStream({ stream })) m = x;
    return { ...m, parts: m.parts.map((p) => (p.state === 'approval-requested' ? { ...p, state: 'approval-responded', approval: { id: p.approval.id, approved: true } } : p)) };
  };
  const q = user('send_email to bob');
  const httpChat = convId('parity-http');
  const first = await serverChunks(server.url, token, httpChat, '', [q]);
  const fromServer = await serverChunks(server.url, token, httpChat, '', [q, await approved(first)]);
  const wsChat = convId('parity-ws');
  const mine = await read(await transport.sendMessages({ trigger: 'submit-message', chatId: wsChat, messageId: undefined, messages: [q], abortSignal: undefined }));
  const answered = await approved(mine.chunks);
  const { chunks } = await read(await transport.sendMessages({ trigger: 'submit-message', chatId: wsChat, messageId: answered.id, messages: [q, answered], abortSignal: undefined }), answered);
  assert.deepEqual(normalized(chunks), normalized(fromServer), 'the continuation after an approval');
});

test('loadMessages: the active branch as UIMessages, valid for the AI SDK, as the server endpoint gives them', async (t) => {
  const { validateUIMessages } = await import('ai');
  const { devToken } = await import('./helpers.mjs');
  const name = someone();
  const client = await makeClient(server.url, name);
  t.after(() => client.close());
  const transport = new MarieChatTransport(client);
  const chatId = convId('load');
  for (const text of ['think first', 'calculate 2*21']) {
    await read(await transport.sendMessages({ trigger: 'submit-message', chatId, messageId: undefined, messages: [user(text)], abortSignal: undefined }));
  }
  await waitFor(client.conversation(chatId), (s) => s.running === null && s.messages.length === 4);
  const messages = await transport.loadMessages(chatId);
  await validateUIMessages({ messages });
  assert.deepEqual(messages.map((m) => [m.role, m.parts.map((p) => p.type)]), [
    ['user', ['text']],
    ['assistant', ['step-start', 'reasoning', 'text']],
    ['user', ['text']],
    ['assistant', ['step-start', 'tool-calculate', 'step-start', 'text']],
  ]);
  assert.deepEqual(messages[3].parts[1].output, { expression: '2*21', value: 42 });
  const res = await fetch(new URL(`/api/ai-sdk/chat/${chatId}/messages`, server.url), {
    headers: { authorization: `Bearer ${await devToken(server.url, name)}` },
  });
  if (res.status === 404) {
    t.skip('this server has no /api/ai-sdk/chat/{id}/messages');
    return;
  }
  assert.deepEqual(messages, await res.json());
});
