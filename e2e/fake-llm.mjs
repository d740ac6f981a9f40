// A fake model server for the end-to-end tests: a local HTTP server that answers as a
// model provider's API does, byte for byte and paced, and records every request. The chat
// example is pointed at it with MARIE_LLM=openai (OPENAI_BASE_URL), =anthropic or =ollama.
import { createServer } from 'node:http';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A fake model server on 127.0.0.1:<ephemeral>. `answer(req, body, res)` writes the
 * response; every request is recorded with its headers and JSON body.
 */
export async function fakeModelServer(answer) {
  const requests = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { raw += chunk; });
    req.on('end', () => {
      let body = null;
      try { body = JSON.parse(raw); } catch { /* recorded as null */ }
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      answer(req, body, res).catch((err) => res.destroy(err));
    });
  });
  server.on('connection', (socket) => socket.setNoDelay(true));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

/** The text of the last user message of an OpenAI (or Ollama) request body. */
export const lastUserMessage = (body) => body?.messages?.filter((m) => m.role === 'user').at(-1)?.content;

// What OpenAI's chat completions API sends with stream:true and include_usage.
export function openaiChunk(delta, finishReason = null) {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-e2e0123456789', object: 'chat.completion.chunk', created: 1733000000,
    model: 'gpt-4o-mini-2024-07-18', service_tier: 'default', system_fingerprint: 'fp_0ba0d124f1',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }], usage: null,
  })}\n\n`;
}
export function openaiUsage(prompt, completion) {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-e2e0123456789', object: 'chat.completion.chunk', created: 1733000000,
    model: 'gpt-4o-mini-2024-07-18', service_tier: 'default', system_fingerprint: 'fp_0ba0d124f1',
    choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  })}\n\n`;
}

/** What the fake OpenAI answers, token by token. */
export const OPENAI_TOKENS = ['Hello', ' from', ' a', ' fake', ' GPT', ' ✓'];
/** What an attempt that breaks says before its connection breaks. */
export const OPENAI_BROKEN = ['Half', ' an'];

/**
 * The fake OpenAI chat completions API (`/v1/chat/completions`), by the last user message:
 * - `please fail`: 401, as for a wrong key;
 * - `break off`: every attempt streams `OPENAI_BROKEN`, then the connection breaks;
 * - `break once…`: the first time it is asked, the same; then it answers;
 * - anything else: `OPENAI_TOKENS`, the finish reason `stop` and the usage (21 prompt tokens).
 * Each call makes an answerer with its own count of the messages asked.
 */
export function openaiAnswerer() {
  const answered = new Map();
  return async function openaiAnswer(req, body, res) {
    if (req.url !== '/v1/chat/completions') {
      res.writeHead(404).end();
      return;
    }
    const message = lastUserMessage(body);
    if (message === 'please fail') {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'Incorrect API key provided: sk-e2e-***', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }));
      return;
    }
    // 'break once' breaks the first time it is asked, then answers: the engine asks again.
    const askedBefore = answered.get(message) || 0;
    answered.set(message, askedBefore + 1);
    if (message === 'break off' || (message?.startsWith('break once') && askedBefore === 0)) {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.write(openaiChunk({ role: 'assistant', content: '', refusal: null }));
      for (const t of OPENAI_BROKEN) {
        await sleep(10);
        res.write(openaiChunk({ content: t }));
      }
      await sleep(10);
      res.destroy(); // the connection breaks mid-answer
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    res.write(openaiChunk({ role: 'assistant', content: '', refusal: null }));
    for (const t of OPENAI_TOKENS) {
      await sleep(15);
      res.write(openaiChunk({ content: t }));
    }
    res.write(openaiChunk({}, 'stop'));
    res.write(openaiUsage(21, OPENAI_TOKENS.length));
    res.end('data: [DONE]\n\n');
  };
}
