// stream_reset end to end: the chat example talks to a fake OpenAI-compatible model (a local
// HTTP server) whose stream breaks after it began; the engine asks the step again and tells
// clients `stream_reset {after_seq}`. (The echo provider cannot fail mid-stream.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { waitFor } from '../dist/index.js';
import { UIChunkMapper } from '../dist/ai-sdk.js';
import { readUIMessageStream } from 'ai';
import { assertValidChunks } from './ai-check.mjs';
import { convId, makeClient, startChat } from './helpers.mjs';

/** Scripts of the fake model, one per request, in order: each a list of SSE data or 'CUT'. */
const scripts = [];
let fake;
let server;

const delta = (d, finish) => JSON.stringify({ id: 'x', object: 'chat.completion.chunk', choices: [{ index: 0, delta: d, ...(finish ? { finish_reason: finish } : {}) }] });
const text = (t) => delta({ content: t });
const end = (reason = 'stop') => [delta({}, reason), '[DONE]'];

before(async () => {
  fake = http.createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      const script = scripts.shift() ?? [text('(no script)'), ...end()];
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const item of script) {
        if (item === 'CUT') {
          res.socket.destroy();
          return;
        }
        res.write(`data: ${item}\n\n`);
        await new Promise((r) => setTimeout(r, 15));
      }
      res.end();
    });
  });
  await new Promise((r) => fake.listen(0, '127.0.0.1', r));
  server = await startChat({
    env: {
      MARIE_LLM: 'openai',
      OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1`,
      OPENAI_API_KEY: 'test',
      MARIE_TITLES: 'off',
    },
  });
});
after(async () => {
  await server?.stop();
  await new Promise((r) => fake?.close(r) ?? r());
});

test('a step that breaks mid-stream is taken back (stream_reset) and the retry kept', async (t) => {
  // Step 1 calls the calculator (completes); step 2 breaks after two words; its retry answers.
  scripts.push(
    [
      delta({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'calculate', arguments: '' } }] }),
      delta({ tool_calls: [{ index: 0, function: { arguments: '{"expression":"2+3"}' } }] }),
      ...end('tool_calls'),
    ],
    [text('Broken '), text('attempt '), 'CUT'],
    [text('The answer '), text('is 5.'), ...end()],
  );
  const client = await makeClient(server.url, 'alice');
  t.after(() => client.close());
  const conv = await client.join(convId('reset'));
  const events = [];
  conv.observeAnswers((e) => events.push(e));
  let sawBroken = false;
  let sawRetry = null;
  conv.subscribe(() => {
    const r = conv.getSnapshot().running;
    if (r && r.text.includes('Broken')) sawBroken = true;
    if (r && r.retry) sawRetry = r;
  });
  await conv.send('what is 2+3?');
  const done = await waitFor(conv, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  const reset = events.find((e) => e.event === 'stream_reset');
  assert.ok(reset, 'the server sent a stream_reset');
  assert.ok(reset.data.after_seq > 0, 'the completed tool step is kept');
  assert.ok(sawBroken, 'the failed attempt was shown while it streamed');
  // Right after the reset: the tool step stays, the broken text is gone.
  assert.equal(sawRetry.retry.afterSeq, reset.data.after_seq);
  assert.ok(!sawRetry.text.includes('Broken'), `after the reset: ${JSON.stringify(sawRetry.text)}`);
  assert.equal(sawRetry.parts[0].type, 'tool');
  const answer = done.messages.at(-1);
  assert.equal(answer.content, 'The answer is 5.');
  assert.deepEqual(answer.parts.map((p) => p.type), ['tool', 'text']);
  assert.equal(answer.parts[0].name, 'calculate');
  assert.equal(answer.parts[0].state, 'output-available');
  assert.equal(answer.parts[0].output.value, 5);
  // The last view of the running answer, before its end, already was the final answer.
  const lastChunkSeq = Math.max(...events.filter((e) => e.data.seq).map((e) => e.data.seq));
  assert.ok(lastChunkSeq > reset.data.seq);
  // The UI chunks of the same events are valid for the AI SDK, and reset-step takes the
  // failed attempt back there too.
  const mapper = new UIChunkMapper();
  const chunks = events.flatMap((e) => mapper.map(e));
  await assertValidChunks(chunks);
  assert.ok(chunks.some((c) => c.type === 'reset-step'));
  let message;
  const stream = new ReadableStream({ start(c) { for (const x of chunks) c.enqueue(x); c.close(); } });
  for await (const m of readUIMessageStream({ stream, terminateOnError: true })) message = m;
  assert.deepEqual(message.parts.filter((p) => p.type === 'text').map((p) => p.text), ['The answer is 5.']);
  assert.equal(message.parts.find((p) => p.type === 'tool-calculate').state, 'output-available');
});
