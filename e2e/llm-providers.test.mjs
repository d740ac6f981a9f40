// The chat example with a real model provider, end to end: MARIE_LLM=openai (and
// =ollama) pointed at a local fake model server that streams what the real API sends,
// byte for byte and paced; the official socket.io-client receives the answer.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { OPENAI_TOKENS, fakeModelServer, openaiAnswerer, sleep } from './fake-llm.mjs';
import { Recorder, devToken, launchChromium, openChatPage, reloadChatPage, startChat } from './helpers.mjs';

/** How many times each message was asked (of the Anthropic fake). */
const answered = new Map();
const openaiAnswer = openaiAnswerer();

// What Ollama's /api/chat sends: NDJSON, the last line with done:true and the counts.
const OLLAMA_TOKENS = ['Grüße', ' aus', ' 東京'];

async function ollamaAnswer(req, body, res) {
  if (req.url !== '/api/chat') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  for (const t of OLLAMA_TOKENS) {
    const line = Buffer.from(`${JSON.stringify({ model: 'llama3.2', created_at: new Date().toISOString(), message: { role: 'assistant', content: t }, done: false })}\n`);
    // Each line goes out in two writes, cut inside it.
    const cut = Math.floor(line.length / 2);
    res.write(line.subarray(0, cut));
    await sleep(10);
    res.write(line.subarray(cut));
    await sleep(10);
  }
  res.end(`${JSON.stringify({
    model: 'llama3.2', created_at: new Date().toISOString(), message: { role: 'assistant', content: '' },
    done_reason: 'stop', done: true, total_duration: 4883583458, load_duration: 1334875,
    prompt_eval_count: 13, prompt_eval_duration: 342546000, eval_count: OLLAMA_TOKENS.length, eval_duration: 4535599000,
  })}\n`);
}

/** Connects as `user`, joins a fresh conversation; resolves to { socket, rec, conversationId }. */
async function joinedClient(url, user, sockets) {
  const { body } = await devToken(url, user);
  const socket = io(url, { auth: { token: body.token }, reconnection: false, forceNew: true, autoConnect: false });
  sockets.push(socket);
  const rec = new Recorder(socket);
  socket.connect();
  await rec.waitFor('connected');
  const conversationId = `llm-${randomBytes(6).toString('hex')}`;
  const ack = await socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: conversationId });
  assert.equal(ack.status, 'ok', JSON.stringify(ack));
  return { socket, rec, conversationId };
}

/** The first `stream_end` or `stream_error` matching `pred`, recorded at `from` or later. */
function terminalOf(rec, pred, from, ms = 10_000) {
  const matches = (r) => (r.event === 'stream_end' || r.event === 'stream_error') && pred(r.data);
  const seen = rec.events.slice(from).find(matches);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const waiter = {
      matches,
      done: (r) => {
        clearTimeout(timer);
        rec.waiters.delete(waiter);
        resolve(r);
      },
    };
    const timer = setTimeout(() => {
      rec.waiters.delete(waiter);
      reject(new Error(`no stream_end or stream_error within ${ms} ms`));
    }, ms);
    rec.waiters.add(waiter);
  });
}

/** Sends `message` and collects the answer: start, chunks, and the terminal event. */
async function ask({ socket, rec, conversationId }, message) {
  const mark = rec.mark();
  socket.emit('send_message', { conversation_id: conversationId, message });
  const start = await rec.waitFor('stream_start', (d) => d.conversation_id === conversationId, { from: mark, ms: 10_000 });
  const ours = (d) => d.stream_id === start.stream_id;
  const terminal = await terminalOf(rec, ours, mark);
  const numbered = rec.events.slice(mark)
    .filter((r) => (r.event === 'stream_chunk' || r.event === 'stream_reset') && ours(r.data));
  numbered.forEach((r, i) => assert.equal(r.data.seq, i + 1, 'seq 1, 2, 3, ... without gaps, resets included'));
  const resets = numbered.filter((r) => r.event === 'stream_reset').map((r) => r.data);
  // What a client keeps: a reset drops the chunks after its after_seq.
  let chunks = [];
  for (const r of numbered) {
    if (r.event === 'stream_reset') chunks = chunks.filter((c) => c.seq <= r.data.after_seq);
    else {
      assert.ok(r.data.content.length > 0);
      chunks.push(r.data);
    }
  }
  return { start, chunks, resets, terminal };
}

describe('chat example with MARIE_LLM=openai against a local OpenAI-compatible server', () => {
  let fake;
  let chat;
  const sockets = [];

  before(async () => {
    fake = await fakeModelServer(openaiAnswer);
    chat = await startChat({
      env: {
        MARIE_LLM: 'openai',
        OPENAI_BASE_URL: `${fake.url}/v1`,
        OPENAI_API_KEY: 'sk-e2e-secret',
        OPENAI_MODEL: 'gpt-4o-mini',
        // These suites count and read every request an answer makes: no title requests
        // (TitlePolicy::AskModel is tested in marie-core's engine tests).
        MARIE_TITLES: 'off',
      },
    });
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (chat) await chat.stop();
    if (fake) await fake.close();
  });

  it('streams the model answer to a socket.io client, with the usage the server reported', async () => {
    const client = await joinedClient(chat.url, 'alice', sockets);
    const { chunks, terminal } = await ask(client, 'Say hello');
    assert.equal(terminal.event, 'stream_end', JSON.stringify(terminal.data));
    assert.deepEqual(chunks.map((c) => c.content), OPENAI_TOKENS);
    assert.equal(terminal.data.status, 'complete');
    assert.equal(terminal.data.full_content, OPENAI_TOKENS.join(''));
    assert.deepEqual(terminal.data.usage, { prompt_tokens: 21, completion_tokens: OPENAI_TOKENS.length, total_tokens: 21 + OPENAI_TOKENS.length });
    assert.equal(terminal.data.finish_reason, 'stop');

    const request = fake.requests.at(-1);
    assert.equal(request.method, 'POST');
    assert.equal(request.headers.authorization, 'Bearer sk-e2e-secret');
    assert.equal(request.body.model, 'gpt-4o-mini');
    assert.equal(request.body.stream, true);
    assert.deepEqual(request.body.stream_options, { include_usage: true });
    assert.deepEqual(request.body.messages.at(-1), { role: 'user', content: 'Say hello' });
  });

  it('turns a rejected key into stream_error provider_unavailable, not retryable, with nothing upstream leaked', async () => {
    const client = await joinedClient(chat.url, 'bob', sockets);
    const before = fake.requests.length;
    const { chunks, terminal } = await ask(client, 'please fail');
    assert.equal(terminal.event, 'stream_error');
    assert.equal(chunks.length, 0);
    assert.equal(terminal.data.code, 'provider_unavailable');
    assert.equal(terminal.data.retryable, false);
    assert.equal(terminal.data.after_seq, 0);
    assert.ok(!JSON.stringify(terminal.data).includes('sk-'), JSON.stringify(terminal.data));
    assert.equal(fake.requests.length - before, 1, '401 is never retried');
  });

  it('asks again a step whose connection breaks mid-answer: stream_reset, then the whole answer', async () => {
    const client = await joinedClient(chat.url, 'carol', sockets);
    const before = fake.requests.length;
    const { chunks, resets, terminal } = await ask(client, 'break once');
    assert.equal(terminal.event, 'stream_end', JSON.stringify(terminal.data));
    assert.deepEqual(resets.map((r) => [r.after_seq, r.attempt]), [[0, 1]]);
    assert.ok(resets[0].reason.length > 0);
    assert.equal(chunks.map((c) => c.content).join(''), OPENAI_TOKENS.join(''), 'the broken attempt is dropped');
    assert.equal(terminal.data.full_content, OPENAI_TOKENS.join(''));
    assert.equal(fake.requests.length - before, 2);
  });

  it('shows only the retried answer on the page when a step breaks mid-answer (headless Chromium)', async () => {
    const browser = await launchChromium();
    const errors = [];
    try {
      const page = await openChatPage(browser, chat.url, 'erin', errors);
      await page.getByTestId('new-conversation-button').click();
      await page.locator('[data-testid="message-input"]:enabled').waitFor();
      // A message of its own: the fake breaks the first attempt of each message once.
      const message = `break once ${randomBytes(3).toString('hex')}`;
      // Every text the streaming answer shows, as it changes.
      await page.evaluate(() => {
        window.__texts = [];
        const list = document.querySelector('[data-testid="messages"]');
        new MutationObserver(() => {
          for (const el of list.querySelectorAll('[data-testid="assistant-message"][data-status="streaming"]')) {
            window.__texts.push(el.querySelector('[data-testid="message-text"]').textContent);
          }
        }).observe(list, { subtree: true, childList: true, characterData: true, attributes: true });
      });
      await page.getByTestId('message-input').fill(message);
      await page.getByTestId('send-button').click();
      const done = page.locator('[data-testid="assistant-message"][data-status="complete"] [data-testid="message-text"]');
      await done.waitFor();
      assert.equal(await done.textContent(), OPENAI_TOKENS.join(''));
      const texts = await page.evaluate(() => window.__texts);
      assert.ok(texts.includes('Half an'), `the broken attempt was shown while it streamed: ${JSON.stringify(texts)}`);
      assert.ok(texts.every((t) => !t.startsWith('Half anHello')), `the reset took it back before the retry: ${JSON.stringify(texts)}`);
      assert.ok(texts.some((t) => t.startsWith('Hello')), JSON.stringify(texts));
      assert.deepEqual(errors, [], 'no script errors in the page');
    } finally {
      await browser.close().catch(() => {});
    }
  });

  it('ends an answer whose connection keeps breaking with a retryable stream_error after two retries', async () => {
    const client = await joinedClient(chat.url, 'carol', sockets);
    const { chunks, resets, terminal } = await ask(client, 'break off');
    assert.equal(terminal.event, 'stream_error');
    assert.equal(resets.length, 2);
    assert.equal(chunks.map((c) => c.content).join(''), 'Half an', 'the last attempt\'s chunks');
    assert.equal(terminal.data.code, 'provider_unavailable');
    assert.equal(terminal.data.retryable, true);
    assert.equal(terminal.data.after_seq, 8, 'two chunks, a reset, two, a reset, two');
  });
});

describe('chat example with MARIE_LLM=ollama against a local Ollama-compatible server', () => {
  let fake;
  let chat;
  const sockets = [];

  before(async () => {
    fake = await fakeModelServer(ollamaAnswer);
    chat = await startChat({ env: { MARIE_LLM: 'ollama', OLLAMA_HOST: fake.url, OLLAMA_MODEL: 'llama3.2', MARIE_TITLES: 'off' } });
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (chat) await chat.stop();
    if (fake) await fake.close();
  });

  it('streams the NDJSON answer to a socket.io client, lines cut across writes included', async () => {
    const client = await joinedClient(chat.url, 'dave', sockets);
    const { chunks, terminal } = await ask(client, 'Grüß mich');
    assert.equal(terminal.event, 'stream_end', JSON.stringify(terminal.data));
    assert.deepEqual(chunks.map((c) => c.content), OLLAMA_TOKENS);
    assert.equal(terminal.data.full_content, OLLAMA_TOKENS.join(''));
    assert.deepEqual(terminal.data.usage, { prompt_tokens: 13, completion_tokens: OLLAMA_TOKENS.length, total_tokens: 13 + OLLAMA_TOKENS.length });
    const request = fake.requests.at(-1);
    assert.equal(request.url, '/api/chat');
    assert.equal(request.body.model, 'llama3.2');
    assert.equal(request.body.stream, true);
  });
});

// What Anthropic's Messages API sends with stream:true: `event:` and `data:` lines.
const ANTHROPIC_TOKENS = ['Bonjour', ' de', ' Claude', ' ✓'];
const ANTHROPIC_SIGNATURE = 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds';
/** The encrypted data of a `redacted_thinking` block. */
const ANTHROPIC_REDACTED = 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP';
const anthropicEvent = (data) => `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;
const lastAnthropicUserText = (body) => {
  const last = body?.messages?.filter((m) => m.role === 'user').at(-1)?.content;
  return typeof last === 'string' ? last : null;
};

async function anthropicAnswer(req, body, res) {
  if (req.url !== '/v1/messages') {
    res.writeHead(404).end();
    return;
  }
  const message = lastAnthropicUserText(body);
  if (message === 'please fail') {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } }));
    return;
  }
  const askedBefore = answered.get(`anthropic:${message}`) || 0;
  answered.set(`anthropic:${message}`, askedBefore + 1);
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  res.write(anthropicEvent({
    type: 'message_start',
    message: {
      id: 'msg_01e2e', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [],
      stop_reason: null, stop_sequence: null, usage: { input_tokens: 17, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 },
    },
  }));
  res.write('event: ping\ndata: {"type": "ping"}\n\n');
  let index = 0;
  if (message === 'think first' || message.startsWith('think redacted')) {
    res.write(anthropicEvent({ type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } }));
    res.write(anthropicEvent({ type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: 'A greeting.' } }));
    res.write(anthropicEvent({ type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: ANTHROPIC_SIGNATURE } }));
    res.write(anthropicEvent({ type: 'content_block_stop', index }));
    index += 1;
  }
  if (message.startsWith('think redacted')) {
    // All of a redacted block comes with its start: no deltas.
    res.write(anthropicEvent({ type: 'content_block_start', index, content_block: { type: 'redacted_thinking', data: ANTHROPIC_REDACTED } }));
    await sleep(10);
    res.write(anthropicEvent({ type: 'content_block_stop', index }));
    index += 1;
  }
  res.write(anthropicEvent({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } }));
  const overloadOnce = message === 'overload once' && askedBefore === 0;
  for (const t of overloadOnce ? ['Half', ' an'] : ANTHROPIC_TOKENS) {
    await sleep(10);
    res.write(anthropicEvent({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: t } }));
  }
  if (overloadOnce) {
    await sleep(10);
    res.end('event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n');
    return;
  }
  res.write(anthropicEvent({ type: 'content_block_stop', index }));
  res.write(anthropicEvent({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: ANTHROPIC_TOKENS.length } }));
  res.end(anthropicEvent({ type: 'message_stop' }));
}

/** Sends `message` and waits for its terminal event (reasoning and resets allowed). */
async function askForTerminal({ socket, rec, conversationId }, message) {
  const mark = rec.mark();
  socket.emit('send_message', { conversation_id: conversationId, message });
  const start = await rec.waitFor('stream_start', (d) => d.conversation_id === conversationId, { from: mark, ms: 10_000 });
  return terminalOf(rec, (d) => d.stream_id === start.stream_id, mark);
}

describe('chat example with MARIE_LLM=anthropic against a local Messages API server', () => {
  let fake;
  let chat;
  const sockets = [];

  before(async () => {
    fake = await fakeModelServer(anthropicAnswer);
    chat = await startChat({
      env: {
        MARIE_LLM: 'anthropic',
        ANTHROPIC_BASE_URL: fake.url,
        ANTHROPIC_API_KEY: 'sk-ant-e2e-secret',
        ANTHROPIC_MODEL: 'claude-sonnet-4-5',
        ANTHROPIC_MAX_TOKENS: '2048',
        MARIE_DEMO_TOOLS: 'off',
        MARIE_TITLES: 'off',
      },
    });
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (chat) await chat.stop();
    if (fake) await fake.close();
  });

  it('streams the answer to a socket.io client, with the headers and body the API wants', async () => {
    const client = await joinedClient(chat.url, 'alice', sockets);
    const { chunks, terminal } = await ask(client, 'Say hello');
    assert.equal(terminal.event, 'stream_end', JSON.stringify(terminal.data));
    assert.deepEqual(chunks.map((c) => c.content), ANTHROPIC_TOKENS);
    assert.equal(terminal.data.full_content, ANTHROPIC_TOKENS.join(''));
    assert.deepEqual(terminal.data.usage, { prompt_tokens: 17, completion_tokens: ANTHROPIC_TOKENS.length, total_tokens: 17 + ANTHROPIC_TOKENS.length });
    assert.equal(terminal.data.finish_reason, 'stop');
    const request = fake.requests.at(-1);
    assert.equal(request.url, '/v1/messages');
    assert.equal(request.headers['x-api-key'], 'sk-ant-e2e-secret');
    assert.equal(request.headers['anthropic-version'], '2023-06-01');
    assert.equal(request.headers.authorization, undefined);
    assert.deepEqual(request.body, {
      model: 'claude-sonnet-4-5', max_tokens: 2048, stream: true,
      messages: [{ role: 'user', content: 'Say hello' }],
    });
  });

  it('keeps a thinking block\'s signature and sends it back with the next request', async () => {
    const client = await joinedClient(chat.url, 'bob', sockets);
    const first = await askForTerminal(client, 'think first');
    assert.equal(first.event, 'stream_end', JSON.stringify(first.data));
    assert.deepEqual(first.data.parts, [
      { type: 'reasoning', content: 'A greeting.', signature: ANTHROPIC_SIGNATURE },
      { type: 'text', content: ANTHROPIC_TOKENS.join('') },
    ]);
    const second = await askForTerminal(client, 'and you?');
    assert.equal(second.event, 'stream_end', JSON.stringify(second.data));
    assert.deepEqual(fake.requests.at(-1).body.messages, [
      { role: 'user', content: 'think first' },
      { role: 'assistant', content: [
        { type: 'thinking', thinking: 'A greeting.', signature: ANTHROPIC_SIGNATURE },
        { type: 'text', text: ANTHROPIC_TOKENS.join('') },
      ] },
      { role: 'user', content: 'and you?' },
    ]);
  });

  it('keeps redacted thinking out of the stream, in the parts, and sends it back in its place', async () => {
    const client = await joinedClient(chat.url, 'bob', sockets);
    const mark = client.rec.mark();
    const first = await askForTerminal(client, 'think redacted');
    assert.equal(first.event, 'stream_end', JSON.stringify(first.data));
    assert.deepEqual(first.data.parts, [
      { type: 'reasoning', content: 'A greeting.', signature: ANTHROPIC_SIGNATURE },
      { type: 'redacted_reasoning', data: ANTHROPIC_REDACTED },
      { type: 'text', content: ANTHROPIC_TOKENS.join('') },
    ]);
    const streamed = client.rec.events.slice(mark).filter((r) => r.event !== 'stream_end');
    assert.deepEqual(streamed.filter((r) => r.event === 'stream_reasoning').map((r) => r.data.content), ['A greeting.']);
    assert.ok(!JSON.stringify(streamed).includes(ANTHROPIC_REDACTED), 'no streamed event carries the redacted data');
    const second = await askForTerminal(client, 'and then?');
    assert.equal(second.event, 'stream_end', JSON.stringify(second.data));
    assert.deepEqual(fake.requests.at(-1).body.messages, [
      { role: 'user', content: 'think redacted' },
      { role: 'assistant', content: [
        { type: 'thinking', thinking: 'A greeting.', signature: ANTHROPIC_SIGNATURE },
        { type: 'redacted_thinking', data: ANTHROPIC_REDACTED },
        { type: 'text', text: ANTHROPIC_TOKENS.join('') },
      ] },
      { role: 'user', content: 'and then?' },
    ]);
  });

  it('shows a note for redacted reasoning in the page, never its data, live and from the history', async () => {
    const browser = await launchChromium();
    const errors = [];
    try {
      const page = await openChatPage(browser, chat.url, 'frank', errors);
      await page.getByTestId('new-conversation-button').click();
      await page.locator('[data-testid="message-input"]:enabled').waitFor();
      await page.getByTestId('message-input').fill('think redacted, then greet');
      await page.getByTestId('send-button').click();
      const done = '[data-testid="assistant-message"][data-status="complete"]';
      await page.locator(`${done} [data-testid="message-text"]`).waitFor();
      const thoughts = page.locator(`${done} [data-testid="reasoning-text"]`);
      assert.equal(await thoughts.textContent(), 'A greeting.\n(reasoning redacted by the provider)');
      assert.ok(!(await page.content()).includes(ANTHROPIC_REDACTED), 'the page never shows the data');
      // The history draws it the same way.
      const conversationId = (await page.getByTestId('current-conversation').textContent()).trim();
      await reloadChatPage(page, 'frank');
      await page.getByTestId('conversation-id').fill(conversationId);
      await page.getByTestId('join-button').click();
      await page.locator(done).waitFor();
      assert.equal(await thoughts.textContent(), 'A greeting.\n(reasoning redacted by the provider)');
      assert.ok(!(await page.content()).includes(ANTHROPIC_REDACTED), 'nor from the history');
      assert.deepEqual(errors, [], 'no script errors in the page');
    } finally {
      await browser.close().catch(() => {});
    }
  });

  it('asks again a step the model was overloaded in: stream_reset, then the whole answer', async () => {
    const client = await joinedClient(chat.url, 'carol', sockets);
    const before = fake.requests.length;
    const { chunks, resets, terminal } = await ask(client, 'overload once');
    assert.equal(terminal.event, 'stream_end', JSON.stringify(terminal.data));
    assert.deepEqual(resets.map((r) => [r.after_seq, r.attempt]), [[0, 1]]);
    assert.equal(chunks.map((c) => c.content).join(''), ANTHROPIC_TOKENS.join(''));
    assert.equal(fake.requests.length - before, 2);
  });

  it('turns a rejected key into a stream_error that is not retried', async () => {
    const client = await joinedClient(chat.url, 'dave', sockets);
    const before = fake.requests.length;
    const { terminal } = await ask(client, 'please fail');
    assert.equal(terminal.event, 'stream_error');
    assert.equal(terminal.data.code, 'provider_unavailable');
    assert.equal(terminal.data.retryable, false);
    assert.ok(!JSON.stringify(terminal.data).includes('x-api-key'));
    assert.equal(fake.requests.length - before, 1, '401 is never retried');
  });
});
