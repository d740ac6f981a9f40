// A step asked again, as the AI SDK sees it: the chat example with MARIE_LLM=openai against
// the fake OpenAI server of fake-llm.mjs, whose connection breaks mid-answer. MARIE asks the
// model again and sends `stream_reset`, which /api/ai-sdk/chat sends as the `reset-step`
// chunk (PROTOCOL.md section 12). `ai` 7's readUIMessageStream drops the current step's
// parts on it, so the message it builds holds the retried answer only. `ai` checks every
// chunk against its schema: one it does not accept fails the test where it arrives.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DefaultChatTransport, readUIMessageStream, validateUIMessages } from 'ai';
import { OPENAI_BROKEN, OPENAI_TOKENS, fakeModelServer, lastUserMessage, openaiAnswerer, openaiChunk, openaiUsage, sleep } from './fake-llm.mjs';
import { devToken, startChat, within } from './helpers.mjs';

const ANSWER = OPENAI_TOKENS.join('');
const BROKEN = OPENAI_BROKEN.join('');

/** The chunk types /api/ai-sdk/chat sends (PROTOCOL.md section 12, with `reset-step`). */
const CHUNK_TYPES = new Set(['start', 'start-step', 'finish-step', 'reset-step', 'text-start', 'text-delta',
  'text-end', 'reasoning-start', 'reasoning-delta', 'reasoning-end', 'tool-input-start', 'tool-input-delta',
  'tool-input-available', 'tool-approval-request', 'tool-approval-response', 'tool-output-available',
  'tool-output-error', 'tool-output-denied', 'finish', 'error', 'abort']);

const newId = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;
const userMessage = (text) => ({ id: newId('u'), role: 'user', parts: [{ type: 'text', text }] });
const typesOf = (chunks) => chunks.map((c) => c.type);
const textOf = (chunks) => chunks.filter((c) => c.type === 'text-delta').map((c) => c.delta).join('');
const textParts = (message) => message.parts.filter((p) => p.type === 'text');

/**
 * The fake OpenAI for a message that starts with `calculate`: the first step calls the demo
 * tool calculate (12*7), streamed as OpenAI streams tool calls. The first attempt of the
 * step after it breaks, having said `OPENAI_BROKEN` when the message says `after text`, or
 * nothing; the next attempt answers `OPENAI_TOKENS`. Anything else: `openaiAnswerer()`.
 */
function fakeAnswer() {
  const plain = openaiAnswerer();
  const attempts = new Map();
  return async (req, body, res) => {
    const message = lastUserMessage(body);
    if (req.url !== '/v1/chat/completions' || !message?.startsWith('calculate')) return plain(req, body, res);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    if (body.messages.at(-1).role === 'user') {
      const id = `call_${randomBytes(8).toString('hex')}`;
      res.write(openaiChunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id, type: 'function', function: { name: 'calculate', arguments: '' } }] }));
      for (const part of ['{"expression"', ':"12*7"}']) {
        await sleep(10);
        res.write(openaiChunk({ tool_calls: [{ index: 0, function: { arguments: part } }] }));
      }
      res.write(openaiChunk({}, 'tool_calls'));
      res.write(openaiUsage(30, 8));
      res.end('data: [DONE]\n\n');
      return;
    }
    const attempt = (attempts.get(message) || 0) + 1;
    attempts.set(message, attempt);
    res.write(openaiChunk({ role: 'assistant', content: '', refusal: null }));
    if (attempt === 1) {
      for (const t of message.includes('after text') ? OPENAI_BROKEN : []) {
        await sleep(10);
        res.write(openaiChunk({ content: t }));
      }
      await sleep(10);
      res.destroy(); // the connection breaks mid-answer
      return;
    }
    for (const t of OPENAI_TOKENS) {
      await sleep(10);
      res.write(openaiChunk({ content: t }));
    }
    res.write(openaiChunk({}, 'stop'));
    res.write(openaiUsage(40, OPENAI_TOKENS.length));
    res.end('data: [DONE]\n\n');
  };
}

/**
 * Checks a response's chunks: documented types, no null field, `start` first. A delta or an
 * end needs its part open in the current attempt: a `reset-step` drops the parts it had open
 * (as the client does), so the retry must start its own.
 */
function assertWellFormed(chunks) {
  const names = typesOf(chunks).join(', ');
  assert.equal(chunks[0]?.type, 'start', names);
  const open = new Set();
  for (const chunk of chunks) {
    assert.ok(CHUNK_TYPES.has(chunk.type), `undocumented chunk type ${chunk.type}`);
    for (const [key, value] of Object.entries(chunk)) assert.notEqual(value, null, `null ${key} on ${JSON.stringify(chunk)}`);
    if (chunk.type === 'reset-step') open.clear();
    if (chunk.type === 'text-start') open.add(chunk.id);
    if (chunk.type === 'text-delta' || chunk.type === 'text-end') assert.ok(open.has(chunk.id), `${chunk.type} ${chunk.id} without its start: ${names}`);
    if (chunk.type === 'text-end') open.delete(chunk.id);
  }
}

/**
 * Every text the message shows while `chunks` stream (one entry per snapshot
 * readUIMessageStream gives, as useChat renders them), the last message, and the errors it
 * reported.
 */
async function render(chunks) {
  const texts = [];
  const errors = [];
  let last;
  for await (const snapshot of readUIMessageStream({ stream: ReadableStream.from(chunks), onError: (e) => errors.push(e) })) {
    texts.push(textParts(snapshot).map((p) => p.text).join(''));
    last = snapshot;
  }
  return { texts, message: last, errors };
}

describe('a step asked again (stream_reset) over the AI SDK UI message stream', () => {
  let fake;
  let chat;
  let transport;
  let token;

  before(async () => {
    fake = await fakeModelServer(fakeAnswer());
    chat = await startChat({
      env: {
        MARIE_LLM: 'openai',
        OPENAI_BASE_URL: `${fake.url}/v1`,
        OPENAI_API_KEY: 'sk-e2e-secret',
        OPENAI_MODEL: 'gpt-4o-mini',
        // Every request the fake gets is an attempt of the answer: no title requests.
        MARIE_TITLES: 'off',
      },
    });
    token = (await devToken(chat.url, 'alice')).body.token;
    transport = new DefaultChatTransport({ api: `${chat.url}/api/ai-sdk/chat`, headers: { Authorization: `Bearer ${token}` } });
  });

  after(async () => {
    if (chat) await chat.stop();
    if (fake) await fake.close();
  });

  /** One POST of `text` in a new chat: resolves to { chatId, chunks }. */
  async function ask(text) {
    const chatId = newId('ai-reset');
    const stream = await transport.sendMessages({ chatId, messages: [userMessage(text)], trigger: 'submit-message', messageId: undefined, abortSignal: undefined });
    const chunks = [];
    await within((async () => { for await (const chunk of stream) chunks.push(chunk); })(), 10_000, `the answer in ${chatId}`);
    return { chatId, chunks };
  }

  it('sends reset-step when the connection breaks mid-answer, and the message holds the retried answer only', async () => {
    const asked = fake.requests.length;
    const { chatId, chunks } = await ask('break once, then answer');
    assertWellFormed(chunks);
    const types = typesOf(chunks);
    assert.equal(fake.requests.length - asked, 2, 'the model was asked twice');
    assert.equal(types.filter((t) => t === 'reset-step').length, 1, types.join());
    const at = types.indexOf('reset-step');
    const failed = chunks.slice(0, at);
    const retried = chunks.slice(at + 1);
    assert.equal(textOf(failed), BROKEN, 'the broken attempt streamed first');
    assert.equal(textOf(retried), ANSWER, 'then the whole answer');
    assert.ok(typesOf(retried).includes('text-start'), `the retry starts its own text part: ${types.join()}`);
    assert.ok(!typesOf(failed).includes('finish-step'), `the failed step is reset, not finished: ${types.join()}`);
    assert.deepEqual(types.slice(-3), ['text-end', 'finish-step', 'finish'], types.join());
    assert.equal(chunks.at(-1).finishReason, 'stop');

    const { texts, message, errors } = await render(chunks);
    assert.deepEqual(errors, []);
    assert.equal(message.id, chunks[0].messageId);
    assert.ok(texts.includes(BROKEN), `the broken attempt was shown while it streamed: ${JSON.stringify(texts)}`);
    assert.ok(texts.every((t) => !t.includes(BROKEN) || t === BROKEN), `the reset took it back before the retry: ${JSON.stringify(texts)}`);
    assert.deepEqual(textParts(message).map((p) => [p.text, p.state]), [[ANSWER, 'done']]);
    assert.deepEqual(message.parts.map((p) => p.type), ['step-start', 'text'], JSON.stringify(message.parts));

    // The history holds the same.
    const res = await fetch(`${chat.url}/api/ai-sdk/chat/${chatId}/messages`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const stored = await validateUIMessages({ messages: await res.json() });
    assert.equal(stored.at(-1).id, message.id);
    assert.deepEqual(textParts(stored.at(-1)).map((p) => p.text), [ANSWER]);
  });

  // The step after a tool call is asked again: only that step is taken back, so the call
  // and its output stay in the message, whether the failed attempt had said something or not.
  for (const [name, text] of [['had streamed text', 'calculate 12*7, break after text'], ['had streamed nothing', 'calculate 12*7, break at once']]) {
    it(`takes back only the step after a tool call when it breaks (the failed attempt ${name})`, async () => {
      const asked = fake.requests.length;
      const { chunks } = await ask(text);
      assertWellFormed(chunks);
      const types = typesOf(chunks);
      assert.equal(fake.requests.length - asked, 3, 'the call, the broken step, the step again');
      const output = chunks.find((c) => c.type === 'tool-output-available');
      assert.equal(output?.output?.value, 84, types.join());
      assert.equal(textOf(chunks.slice(types.lastIndexOf('reset-step') + 1)), ANSWER, types.join());
      assert.equal(chunks.at(-1).finishReason, 'stop');
      if (text.includes('after text')) assert.equal(types.filter((t) => t === 'reset-step').length, 1, types.join());

      const { message, errors } = await render(chunks);
      assert.deepEqual(errors, []);
      assert.deepEqual(message.parts.map((p) => p.type), ['step-start', 'tool-calculate', 'step-start', 'text'],
        `the call's step stays, then the retried step: ${JSON.stringify(message.parts)}\nchunks: ${types.join(', ')}`);
      const tool = message.parts[1];
      assert.equal(tool.state, 'output-available');
      assert.deepEqual(tool.input, { expression: '12*7' });
      assert.equal(tool.output.value, 84);
      assert.equal(message.parts[3].text, ANSWER);
    });
  }

  it('ends an answer whose connection keeps breaking with an error chunk after two reset-steps', async () => {
    const asked = fake.requests.length;
    const { chunks } = await ask('break off');
    assertWellFormed(chunks);
    const types = typesOf(chunks);
    assert.equal(fake.requests.length - asked, 3, 'asked, then asked again twice');
    assert.equal(types.filter((t) => t === 'reset-step').length, 2, types.join());
    assert.equal(chunks.at(-1).type, 'error', types.join());
    assert.equal(typeof chunks.at(-1).errorText, 'string');
    assert.ok(chunks.at(-1).errorText.length > 0);
    assert.ok(!JSON.stringify(chunks).includes('sk-e2e'), 'nothing upstream leaked');
    assert.ok(!types.includes('finish-step'), types.join());

    const { message, errors } = await render(chunks);
    assert.equal(errors.length, 1, 'the client is told of the error');
    assert.equal(errors[0].message, chunks.at(-1).errorText);
    assert.deepEqual(textParts(message).map((p) => p.text), [BROKEN], 'the last attempt\'s text only');
  });
});
