// Client tools (PROTOCOL section 11): `send_message.client_tools`, a call with `client: true`,
// `submit_tool_result`. These need the server side of client tools; a server without it
// refuses the field, and the client then sends without it (the answer is a plain echo).
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

const TIME_TOOL = {
  description: 'The current time in a time zone',
  parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] },
};

/** Fails with a clear word when the server does not take client tools yet. */
function assertServerCalledTool(snapshot, name) {
  const tool = snapshot.messages.at(-1)?.parts.find((p) => p.type === 'tool' && p.name === name);
  assert.ok(
    tool,
    `no call of the client tool ${name}: the server does not support client tools yet (send_message.client_tools)? ` +
      `last answer: ${JSON.stringify(snapshot.messages.at(-1)?.content)}`,
  );
  return tool;
}

test('a registered client tool is run by the client that asked, its result reaches the room, the answer completes', async (t) => {
  const alice = await makeClient(server.url, 'alice');
  const bob = await makeClient(server.url, 'bob');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const calls = [];
  alice.registerTool('get_time', {
    ...TIME_TOOL,
    execute: async (args, ctx) => {
      calls.push({ args, ctx });
      return { time: '12:34', zone: args.zone };
    },
  });
  const id = convId('ctool');
  const a = await alice.join(id);
  await a.invite('bob');
  const b = await bob.join(id);
  const results = [];
  b.observeAnswers((e) => {
    if (e.event === 'tool_result') results.push(e.data);
  });
  await a.send('what is get_time Europe/Paris');
  const done = await waitFor(a, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  const tool = assertServerCalledTool(done, 'get_time');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].ctx.conversationId, id);
  assert.equal(tool.client, true);
  assert.equal(tool.state, 'output-available');
  assert.deepEqual(tool.output, { time: '12:34', zone: calls[0].args.zone });
  // The room (bob) got the result as tool_result.
  await waitFor(b, (s) => s.messages.length === done.messages.length, 5_000);
  assert.equal(results.length, 1);
  assert.deepEqual(results[0].output, tool.output);
  assert.match(done.messages.at(-1).content, /get_time returned/);
});

test('a client tool without execute waits in pendingToolCalls; a member answers it by hand, a second answer is conflict', async (t) => {
  const alice = await makeClient(server.url, 'alice');
  const bob = await makeClient(server.url, 'bob');
  t.after(() => {
    alice.close();
    bob.close();
  });
  const id = convId('ctool-hand');
  const a = await alice.join(id);
  await a.invite('bob');
  const b = await bob.join(id);
  await a.send('what is get_time UTC', { tools: { get_time: TIME_TOOL } });
  const waiting = await waitFor(b, (s) => s.pendingToolCalls.length === 1 || (s.running === null && s.messages.length === 2), 15_000);
  if (!waiting.pendingToolCalls.length) assertServerCalledTool(waiting, 'get_time');
  const call = waiting.pendingToolCalls[0];
  assert.equal(call.name, 'get_time');
  assert.equal(call.mine, false);
  assert.equal((await waitFor(a, (s) => s.pendingToolCalls.length === 1)).pendingToolCalls[0].mine, true);
  const ack = await b.submitToolResult(call.toolCallId, { output: { time: 'noon' } });
  assert.equal(ack.status, 'ok');
  await assert.rejects(a.submitToolResult(call.toolCallId, { output: { time: 'late' } }), (err) => err instanceof MarieError && err.code === 'conflict');
  const done = await waitFor(a, (s) => s.running === null && s.messages.some((m) => m.role === 'assistant'), 15_000);
  const tool = assertServerCalledTool(done, 'get_time');
  assert.deepEqual(tool.output, { time: 'noon' });
  assert.equal(done.pendingToolCalls.length, 0);
});
