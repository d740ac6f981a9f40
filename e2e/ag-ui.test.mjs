// AG-UI 1.0's own client, @ag-ui/client's HttpAgent, running the chat example as an agent at
// /api/ag-ui (PROTOCOL.md section 12). Each run POSTs a RunAgentInput and reads SSE. The
// client checks every event against @ag-ui/core's schemas and its order rules (RUN_STARTED
// first, content inside START/END, everything closed before RUN_FINISHED, nothing after it).
// A run that breaks a rule rejects runAgent(). On top of that, each raw event here is
// parsed with EventSchemas and held to the keys its schema names.
//
// Client tools follow the AG-UI convention. A call of a tool from RunAgentInput.tools ends the
// run after its TOOL_CALL_END (no TOOL_CALL_RESULT). The application runs the tool and starts
// a new run whose messages end with a role:"tool" message carrying the result, and that run
// streams the rest of the answer.
// Approvals are AG-UI 1.0 interrupts. A call that needs one ends the run after its
// TOOL_CALL_END with RUN_FINISHED {outcome: {type: "interrupt", interrupts: [{id: the approval's
// id, reason: "tool_approval", toolCallId}]}}. The client keeps them in agent.pendingInterrupts
// and must answer each in the next run's `resume` (resolved approves, cancelled denies). That
// run streams the rest of the answer.
// Errors: a request refused before its run starts (bad credentials, a conversation of another
// user) is an HTTP status with a JSON {code, message}, which HttpAgent turns into a rejected
// runAgent() with `.status` and `.payload`. A failure after RUN_STARTED is RUN_ERROR.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { HttpAgent, buildResumeArray } from '@ag-ui/client';
import { EventSchemas } from '@ag-ui/core/schemas';
import { devToken, startChat, within } from './helpers.mjs';

const REASONING = 'The user wants to see me think. I am a demo without a model, so I will repeat their message, word by word.';
const WEATHER = {
  name: 'get_weather',
  description: 'The weather in a city, as the user\'s device knows it',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

const newId = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;
const KEYS = new Map(EventSchemas.options.map((schema) => [schema.shape.type.value, Object.keys(schema.shape)]));
const TERMINAL = new Set(['RUN_FINISHED', 'RUN_ERROR']);

/** The JSON of each `data:` event of an SSE body. */
function sseData(text) {
  return text.split('\n\n').filter((e) => e.trim()).flatMap((event) => {
    const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
    return data.length ? [JSON.parse(data.join('\n'))] : [];
  });
}

/**
 * Checks the events of one run as they came off the wire. Each fits EventSchemas and has
 * only the keys its schema names. None has a null field. RUN_STARTED comes first and names
 * the run. Exactly one RUN_FINISHED or RUN_ERROR comes last.
 */
function assertRun(events, { threadId, runId }) {
  const names = events.map((e) => e.type).join(', ');
  for (const event of events) {
    EventSchemas.parse(event);
    for (const [key, value] of Object.entries(event)) {
      assert.ok(KEYS.get(event.type).includes(key), `${event.type} has no key ${key}: ${JSON.stringify(event)}`);
      assert.notEqual(value, null, `null ${key} on ${JSON.stringify(event)}`);
    }
  }
  assert.equal(events[0]?.type, 'RUN_STARTED', names);
  assert.equal(events[0].threadId, threadId);
  assert.equal(events[0].runId, runId);
  assert.equal(events.filter((e) => TERMINAL.has(e.type)).length, 1, `exactly one RUN_FINISHED or RUN_ERROR: ${names}`);
  assert.ok(TERMINAL.has(events.at(-1).type), names);
  if (events.at(-1).type === 'RUN_FINISHED') {
    assert.equal(events.at(-1).threadId, threadId);
    assert.equal(events.at(-1).runId, runId);
  }
}

const contentOf = (events, type = 'TEXT_MESSAGE_CONTENT') => events.filter((e) => e.type === type).map((e) => e.delta).join('');

describe('AG-UI over HTTP (@ag-ui/client HttpAgent)', () => {
  let server;
  let aliceToken;
  let bobToken;

  /**
   * An HttpAgent for `token` whose responses are also kept raw. run(params) runs it once and
   * resolves to { events (raw, checked by assertRun), seen (as the client applied them),
   * finished (the onRunFinishedEvent params), response, input (the RunAgentInput posted) }.
   */
  function agentFor(token, threadId = newId('thread')) {
    const responses = [];
    const inputs = [];
    const agent = new HttpAgent({
      url: `${server.url}/api/ag-ui`,
      headers: { Authorization: `Bearer ${token}` },
      threadId,
      fetch: async (url, init) => {
        inputs.push(JSON.parse(init.body));
        const res = await fetch(url, init);
        responses.push({ status: res.status, headers: res.headers, text: res.clone().text() });
        return res;
      },
    });
    async function run(params = {}) {
      const runId = params.runId ?? newId('run');
      const seen = [];
      let finished;
      await within(agent.runAgent({ ...params, runId }, {
        onEvent: ({ event }) => { seen.push(event); },
        onRunFinishedEvent: (p) => { finished = p; },
      }), 15_000, `run ${runId}`);
      const response = responses.at(-1);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type'), /^text\/event-stream/);
      const text = await response.text;
      assert.ok(!text.includes('\r'), 'events are separated by \\n\\n');
      const events = sseData(text);
      assertRun(events, { threadId: agent.threadId, runId });
      assert.deepEqual(seen.map((e) => e.type), events.map((e) => e.type), 'the client applied every event');
      return { events, seen, finished, response, input: inputs.at(-1) };
    }
    return { agent, run, inputs };
  }

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '10' } });
    aliceToken = (await devToken(server.url, 'alice')).body.token;
    bobToken = (await devToken(server.url, 'bob')).body.token;
  });

  after(async () => {
    if (server) await server.stop();
  });

  let textThread;

  it('answers with one assistant text message, then takes only the new user message of the next run', async () => {
    const { agent, run } = agentFor(aliceToken);
    agent.addMessage({ id: newId('u'), role: 'user', content: 'hello from AG-UI' });
    const { events, finished } = await run();
    assert.deepEqual([...new Set(events.map((e) => e.type))],
      ['RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'RUN_FINISHED']);
    const start = events.find((e) => e.type === 'TEXT_MESSAGE_START');
    assert.equal(start.role, 'assistant');
    assert.ok(events.filter((e) => e.messageId !== undefined).every((e) => e.messageId === start.messageId), 'one message');
    assert.equal(contentOf(events), 'hello from AG-UI');
    assert.equal(finished.outcome, 'success');
    assert.deepEqual(finished.pendingToolCallIds, []);
    assert.deepEqual(agent.messages.map((m) => [m.role, m.content]), [['user', 'hello from AG-UI'], ['assistant', 'hello from AG-UI']]);
    assert.equal(agent.messages[1].id, start.messageId);

    // The next run posts the whole history; only the new user message is a new question.
    agent.addMessage({ id: newId('u'), role: 'user', content: 'and a second one' });
    const second = await run();
    assert.equal(contentOf(second.events), 'and a second one');
    assert.notEqual(second.events.find((e) => e.type === 'TEXT_MESSAGE_START').messageId, start.messageId);
    assert.deepEqual(agent.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    textThread = agent.threadId;
  });

  it('streams the reasoning first when the message starts with think', async () => {
    const { agent, run } = agentFor(aliceToken);
    agent.addMessage({ id: newId('u'), role: 'user', content: 'think about rivers' });
    const { events } = await run();
    const types = events.map((e) => e.type);
    const order = ['REASONING_START', 'REASONING_MESSAGE_START', 'REASONING_MESSAGE_END', 'REASONING_END', 'TEXT_MESSAGE_START'];
    const at = order.map((t) => types.indexOf(t));
    assert.ok(at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1])), types.join());
    assert.equal(events.find((e) => e.type === 'REASONING_MESSAGE_START').role, 'reasoning');
    assert.equal(contentOf(events, 'REASONING_MESSAGE_CONTENT'), REASONING);
    assert.ok(types.lastIndexOf('REASONING_MESSAGE_CONTENT') < types.indexOf('REASONING_MESSAGE_END'));
    assert.equal(contentOf(events), 'think about rivers');
  });

  it('calls the server tool calculate: TOOL_CALL_START, ARGS, END, RESULT, then the text', async () => {
    const { agent, run } = agentFor(aliceToken);
    agent.addMessage({ id: newId('u'), role: 'user', content: 'calculate 12*7' });
    const { events, finished } = await run();
    const types = events.map((e) => e.type);
    const start = events.find((e) => e.type === 'TOOL_CALL_START');
    assert.equal(start.toolCallName, 'calculate');
    const args = events.filter((e) => e.type === 'TOOL_CALL_ARGS' && e.toolCallId === start.toolCallId).map((e) => e.delta).join('');
    assert.deepEqual(JSON.parse(args), { expression: '12*7' });
    const result = events.find((e) => e.type === 'TOOL_CALL_RESULT');
    assert.equal(result.toolCallId, start.toolCallId);
    assert.equal(typeof result.content, 'string');
    assert.deepEqual(JSON.parse(result.content), { expression: '12*7', value: 84 });
    const textIds = new Set(events.filter((e) => e.type === 'TEXT_MESSAGE_START').map((e) => e.messageId));
    assert.ok(!textIds.has(result.messageId), 'the result is its own message');
    if (start.parentMessageId !== undefined) {
      assert.ok(!textIds.has(start.parentMessageId), 'the text after the result is a new message, after the tool message');
    }
    assert.ok(types.indexOf('TOOL_CALL_END') < types.indexOf('TOOL_CALL_RESULT'), types.join());
    assert.ok(types.indexOf('TOOL_CALL_RESULT') < types.lastIndexOf('TEXT_MESSAGE_START'), types.join());
    assert.match(contentOf(events), /calculate returned: .*"value":84/);
    assert.deepEqual(finished.pendingToolCallIds, [], 'nothing left for the client');
    const call = agent.messages.find((m) => m.toolCalls?.some((c) => c.id === start.toolCallId));
    assert.equal(call.role, 'assistant');
    assert.equal(agent.messages.find((m) => m.role === 'tool').toolCallId, start.toolCallId);
  });

  it('leaves a call of a client tool to the client, and goes on in the next run with its result', async () => {
    const { agent, run } = agentFor(aliceToken);
    agent.addMessage({ id: newId('u'), role: 'user', content: 'get_weather Paris' });
    const first = await run({ tools: [WEATHER] });
    const start = first.events.find((e) => e.type === 'TOOL_CALL_START');
    assert.equal(start.toolCallName, 'get_weather');
    const args = first.events.filter((e) => e.type === 'TOOL_CALL_ARGS').map((e) => e.delta).join('');
    assert.deepEqual(JSON.parse(args), { city: 'Paris' });
    assert.ok(first.events.some((e) => e.type === 'TOOL_CALL_END' && e.toolCallId === start.toolCallId));
    assert.ok(!first.events.some((e) => e.type === 'TOOL_CALL_RESULT'), 'the server does not run it');
    assert.equal(first.events.at(-1).type, 'RUN_FINISHED', 'the run ends, waiting for the client');
    const outcome = first.events.at(-1).outcome;
    if (outcome !== undefined) assert.deepEqual(outcome, { type: 'success', pendingToolCallIds: [start.toolCallId] });
    assert.deepEqual(first.finished.pendingToolCallIds, [start.toolCallId]);

    agent.addMessage({ id: newId('tool'), role: 'tool', toolCallId: start.toolCallId, content: JSON.stringify({ city: 'Paris', forecast: 'sunny' }) });
    const second = await run({ tools: [WEATHER] });
    assert.ok(!second.events.some((e) => e.type === 'TOOL_CALL_START' && e.toolCallId === start.toolCallId), 'the call is not made again');
    assert.match(contentOf(second.events), /get_weather returned: .*sunny/);
    assert.deepEqual(second.finished.pendingToolCallIds, []);
    assert.deepEqual(agent.messages.map((m) => m.role), ['user', 'assistant', 'tool', 'assistant']);
  });

  /**
   * A run that asks for `send_email to <to>`: it must end at the approval, as an interrupt
   * the client holds in pendingInterrupts. Resolves to { agent, run, call, interrupt }.
   */
  async function interruptedRun(to) {
    const { agent, run, inputs } = agentFor(aliceToken);
    agent.addMessage({ id: newId('u'), role: 'user', content: `send_email to ${to}` });
    const { events, finished } = await run();
    const call = events.find((e) => e.type === 'TOOL_CALL_START');
    assert.equal(call?.toolCallName, 'send_email', events.map((e) => e.type).join());
    const args = events.filter((e) => e.type === 'TOOL_CALL_ARGS' && e.toolCallId === call.toolCallId).map((e) => e.delta).join('');
    assert.deepEqual(JSON.parse(args), { to });
    const types = events.map((e) => e.type);
    assert.ok(types.indexOf('TOOL_CALL_END') > types.indexOf('TOOL_CALL_START'), types.join());
    assert.ok(!types.includes('TOOL_CALL_RESULT'), `nothing ran yet: ${types.join()}`);
    assert.ok(!types.includes('TEXT_MESSAGE_START'), `no text before the decision: ${types.join()}`);

    const last = events.at(-1);
    assert.equal(last.type, 'RUN_FINISHED');
    assert.equal(last.outcome?.type, 'interrupt', `an interrupt outcome: ${JSON.stringify(last)}`);
    assert.equal(last.outcome.interrupts.length, 1);
    const [interrupt] = last.outcome.interrupts;
    assert.equal(typeof interrupt.id, 'string');
    assert.ok(interrupt.id.length > 0);
    assert.equal(interrupt.reason, 'tool_approval');
    assert.equal(interrupt.toolCallId, call.toolCallId);
    if (interrupt.message !== undefined) assert.match(interrupt.message, /send_email/);
    // What the client made of it.
    assert.equal(finished.outcome, 'interrupt');
    assert.deepEqual(finished.interrupts, last.outcome.interrupts);
    assert.deepEqual(agent.pendingInterrupts, last.outcome.interrupts);
    const held = agent.messages.find((m) => m.toolCalls?.some((c) => c.id === call.toolCallId));
    assert.equal(held?.role, 'assistant', 'the client holds the call');
    // A run that does not answer the interrupt is refused by the client, before any request.
    agent.addMessage({ id: newId('u'), role: 'user', content: 'never mind' });
    const posted = inputs.length;
    await assert.rejects(agent.runAgent({ runId: newId('run') }), /pending interrupt/);
    assert.equal(inputs.length, posted);
    agent.messages = agent.messages.slice(0, -1);
    return { agent, run, call, interrupt };
  }

  it('asks for the approval of send_email as an interrupt, and runs it when the next run resumes it resolved', async () => {
    const { agent, run, call, interrupt } = await interruptedRun('bob');
    const resume = buildResumeArray(agent.pendingInterrupts, { [interrupt.id]: { status: 'resolved', payload: { approved: true } } });
    const { events, finished, input } = await run({ resume });
    assert.deepEqual(input.resume, [{ interruptId: interrupt.id, status: 'resolved', payload: { approved: true } }]);
    const types = events.map((e) => e.type);
    assert.ok(!events.some((e) => e.type === 'TOOL_CALL_START' && e.toolCallId === call.toolCallId), `the call is not made again: ${types.join()}`);
    const result = events.find((e) => e.type === 'TOOL_CALL_RESULT');
    assert.equal(result?.toolCallId, call.toolCallId, types.join());
    const output = JSON.parse(result.content);
    assert.equal(output.to, 'bob');
    assert.equal(output.status, 'sent (simulated)');
    assert.ok(types.indexOf('TOOL_CALL_RESULT') < types.indexOf('TEXT_MESSAGE_START'), types.join());
    assert.match(contentOf(events), /send_email returned: .*sent \(simulated\)/);
    assert.equal(finished.outcome, 'success');
    assert.deepEqual(finished.pendingToolCallIds, []);
    assert.deepEqual(agent.pendingInterrupts, [], 'nothing left to answer');
    assert.deepEqual(agent.messages.map((m) => m.role), ['user', 'assistant', 'tool', 'assistant']);
    assert.equal(agent.messages[2].toolCallId, call.toolCallId);
    assert.match(agent.messages[3].content, /send_email returned: .*sent \(simulated\)/);
  });

  it('does not run send_email when the next run resumes its interrupt cancelled', async () => {
    const { agent, run, call, interrupt } = await interruptedRun('carol');
    const resume = buildResumeArray(agent.pendingInterrupts, { [interrupt.id]: { status: 'cancelled' } });
    const { events, finished, input } = await run({ resume });
    assert.deepEqual(input.resume, [{ interruptId: interrupt.id, status: 'cancelled' }]);
    const types = events.map((e) => e.type);
    // The call's result is the refusal the model was told, not the tool's output.
    const results = events.filter((e) => e.type === 'TOOL_CALL_RESULT');
    assert.equal(results.length, 1, types.join());
    assert.equal(results[0].toolCallId, call.toolCallId);
    assert.match(results[0].content, /alice denied the call/);
    assert.ok(!results[0].content.includes('sent (simulated)'), 'the tool did not run');
    const text = contentOf(events);
    assert.match(text, /send_email returned: .*alice denied the call/);
    assert.ok(!text.includes('sent (simulated)'), text);
    assert.equal(finished.outcome, 'success');
    assert.deepEqual(agent.pendingInterrupts, []);
    assert.equal(agent.messages.at(-1).role, 'assistant');
    assert.match(agent.messages.at(-1).content, /denied the call/);
  });

  it('refuses bad credentials with 401 and a thread of another user with 403', async () => {
    const stranger = agentFor('not-a-token');
    stranger.agent.addMessage({ id: newId('u'), role: 'user', content: 'hello?' });
    await assert.rejects(stranger.agent.runAgent({ runId: newId('run') }), (e) => e.status === 401);

    assert.ok(textThread, 'the first test ran');
    const bob = agentFor(bobToken, textThread);
    bob.agent.addMessage({ id: newId('u'), role: 'user', content: 'let me in' });
    await assert.rejects(bob.agent.runAgent({ runId: newId('run') }), (e) => e.status === 403 && e.payload?.code === 'forbidden');
  });
});
