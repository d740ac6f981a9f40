// Tool calls and approvals of the chat example (echo provider, demo tools `calculate` and
// `send_email`): the events of docs/protocol.md section 6 as the official socket.io-client
// receives them, Approve clicked on the page in headless Chromium, and the page's own client
// tool `get_time` (section 11), run by the browser that asked.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { Recorder, devToken, launchChromium, openChatPage, servePageFromDisk, startChat } from './helpers.mjs';

const ANSWER_EVENTS = new Set(['stream_start', 'stream_chunk', 'stream_reasoning', 'tool_call_start', 'tool_call_delta',
  'tool_call', 'tool_approval_request', 'tool_approval', 'tool_result', 'stream_end', 'stream_error']);

/** Checks the numbered events of one stream cover seq 1, 2, 3, ... once each, in order. */
function assertNumbered(events) {
  let held = 0;
  for (const { event, data } of events) {
    if (typeof data.seq !== 'number') continue;
    const first = typeof data.first_seq === 'number' ? data.first_seq : data.seq;
    assert.equal(first, held + 1, `${event} continues the sequence: ${JSON.stringify(events.map((e) => e.event))}`);
    held = data.seq;
  }
}

describe('tools and approvals over socket.io-client', () => {
  let server;
  const sockets = [];
  const clients = {};
  const conversationId = `tools-${randomBytes(6).toString('hex')}`;

  async function connectAs(user) {
    const { body } = await devToken(server.url, user);
    const socket = io(server.url, { auth: { token: body.token }, reconnection: false, forceNew: true, autoConnect: false });
    sockets.push(socket);
    const rec = new Recorder(socket);
    socket.connect();
    await rec.waitFor('connected');
    clients[user] = { socket, rec };
    return clients[user];
  }

  const ack = (user, event, payload) => clients[user].socket.timeout(5_000).emitWithAck(event, payload);

  /** The events of `streamId` user received so far, in order. */
  const eventsOf = (user, streamId) => clients[user].rec.events
    .filter((r) => ANSWER_EVENTS.has(r.event) && r.data.stream_id === streamId);

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5' } });
    await connectAs('alice');
    await connectAs('bob');
    await connectAs('carol');
    assert.equal((await ack('alice', 'join_conversation', { conversation_id: conversationId })).status, 'ok');
    assert.equal((await ack('alice', 'invite', { conversation_id: conversationId, user_id: 'bob' })).status, 'ok');
    assert.equal((await ack('bob', 'join_conversation', { conversation_id: conversationId })).status, 'ok');
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (server) await server.stop();
  });

  it('calls calculate, streams the call and its result, and answers with it', async () => {
    const sent = await ack('alice', 'send_message', { conversation_id: conversationId, message: 'calculate 12*7' });
    assert.equal(sent.status, 'ok', JSON.stringify(sent));
    for (const user of ['alice', 'bob']) {
      const end = await clients[user].rec.waitFor('stream_end', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
      const events = eventsOf(user, sent.stream_id);
      assertNumbered(events);
      const names = events.map((e) => e.event);
      assert.ok(names.indexOf('tool_call_start') < names.indexOf('tool_call'), names.join());
      assert.ok(names.indexOf('tool_call') < names.indexOf('tool_result'), names.join());
      assert.ok(names.indexOf('tool_result') < names.indexOf('stream_chunk'), names.join());
      const deltas = events.filter((e) => e.event === 'tool_call_delta').map((e) => e.data.delta).join('');
      const call = events.find((e) => e.event === 'tool_call').data;
      assert.equal(call.name, 'calculate');
      assert.deepEqual(call.arguments, { expression: '12*7' });
      assert.deepEqual(JSON.parse(deltas), call.arguments, 'the deltas are the arguments as text');
      const result = events.find((e) => e.event === 'tool_result').data;
      assert.deepEqual(result.output, { expression: '12*7', value: 84 });
      assert.equal(result.tool_call_id, call.tool_call_id);
      assert.equal(end.status, 'complete');
      assert.match(end.full_content, /calculate returned: .*"value":84/);
      assert.deepEqual(end.parts.map((p) => p.type), ['tool_call', 'tool_result', 'text']);
    }
    const history = await ack('bob', 'get_history', { conversation_id: conversationId });
    const answer = history.messages.at(-1);
    assert.equal(answer.parts[1].output.value, 84);
  });

  it('asks the room to approve send_email: the first decision wins, the others get conflict', async () => {
    const sent = await ack('alice', 'send_message', { conversation_id: conversationId, message: 'send_email to bob' });
    const request = await clients.bob.rec.waitFor('tool_approval_request', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
    await clients.alice.rec.waitFor('tool_approval_request', (d) => d.approval_id === request.approval_id);
    assert.equal(request.name, 'send_email');
    assert.deepEqual(request.arguments, { to: 'bob' });
    assert.ok(request.expires_at > Date.now() + 60_000, 'ten minutes by default');

    // A member who joins now sees it pending.
    const joined = await ack('bob', 'join_conversation', { conversation_id: conversationId });
    assert.equal(joined.active_stream.pending_approval.approval_id, request.approval_id);
    // Carol is no member: forbidden, and nothing changes.
    const outsider = await ack('carol', 'approve_tool', { conversation_id: conversationId, approval_id: request.approval_id, approved: false });
    assert.equal(outsider.code, 'forbidden');

    const decision = { conversation_id: conversationId, approval_id: request.approval_id };
    const [byBob, byAlice] = await Promise.all([
      ack('bob', 'approve_tool', { ...decision, approved: true }),
      ack('alice', 'approve_tool', { ...decision, approved: false, reason: 'no' }),
    ]);
    const winners = [byBob, byAlice].filter((a) => a.status === 'ok');
    assert.equal(winners.length, 1, JSON.stringify([byBob, byAlice]));
    const loser = byBob.status === 'ok' ? byAlice : byBob;
    assert.equal(loser.code, 'conflict');
    const approvedByBob = byBob.status === 'ok';

    for (const user of ['alice', 'bob']) {
      const end = await clients[user].rec.waitFor('stream_end', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
      const events = eventsOf(user, sent.stream_id);
      assertNumbered(events);
      const approval = events.find((e) => e.event === 'tool_approval').data;
      assert.equal(approval.decided_by, approvedByBob ? 'bob' : 'alice');
      assert.equal(approval.approved, approvedByBob);
      const result = events.find((e) => e.event === 'tool_result').data;
      if (approvedByBob) {
        assert.equal(result.output.to, 'bob');
        assert.equal(result.output.status, 'sent (simulated)');
      } else {
        assert.equal(result.error, 'not run: alice denied the call: no');
      }
      assert.equal(end.status, 'complete');
    }
    const late = await ack('bob', 'approve_tool', { ...decision, approved: true });
    assert.equal(late.code, 'conflict');
    const unknown = await ack('bob', 'approve_tool', { conversation_id: conversationId, approval_id: 'no-such', approved: true });
    assert.equal(unknown.code, 'not_found');
    const bad = await ack('bob', 'approve_tool', { conversation_id: conversationId, approval_id: request.approval_id });
    assert.equal(bad.code, 'bad_request');
    assert.match(bad.message, /approved/);
  });

  it('ends a waiting answer on cancel_stream; its approval is then not found', async () => {
    const sent = await ack('alice', 'send_message', { conversation_id: conversationId, message: 'send_email to carol' });
    const request = await clients.alice.rec.waitFor('tool_approval_request', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
    const cancelled = await ack('bob', 'cancel_stream', { conversation_id: conversationId });
    assert.equal(cancelled.status, 'ok');
    const end = await clients.alice.rec.waitFor('stream_end', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
    assert.equal(end.status, 'cancelled');
    assert.equal(end.parts.at(-1).type, 'tool_result');
    assert.match(end.parts.at(-1).error, /cancelled/);
    const late = await ack('alice', 'approve_tool', { conversation_id: conversationId, approval_id: request.approval_id, approved: true });
    assert.equal(late.code, 'not_found');
  });
});

describe('an approval nobody decides', () => {
  let server;
  let socket;

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5', MARIE_APPROVAL_TIMEOUT_SECS: '1' } });
  });

  after(async () => {
    if (socket) socket.disconnect();
    if (server) await server.stop();
  });

  it('expires as a denial and the answer goes on', async () => {
    const { body } = await devToken(server.url, 'gus');
    socket = io(server.url, { auth: { token: body.token }, reconnection: false, forceNew: true, autoConnect: false });
    const rec = new Recorder(socket);
    socket.connect();
    await rec.waitFor('connected');
    const conversation = `expiry-${randomBytes(4).toString('hex')}`;
    assert.equal((await socket.timeout(5_000).emitWithAck('join_conversation', { conversation_id: conversation })).status, 'ok');
    const sent = await socket.timeout(5_000).emitWithAck('send_message', { conversation_id: conversation, message: 'send_email to hal' });
    const request = await rec.waitFor('tool_approval_request', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
    const approval = await rec.waitFor('tool_approval', (d) => d.approval_id === request.approval_id, { ms: 10_000 });
    assert.equal(approval.approved, false);
    assert.equal(approval.decided_by, null);
    assert.equal(approval.reason, 'expired');
    const result = await rec.waitFor('tool_result', (d) => d.stream_id === sent.stream_id);
    assert.equal(result.error, 'not run: nobody approved the call in time');
    const end = await rec.waitFor('stream_end', (d) => d.stream_id === sent.stream_id, { ms: 10_000 });
    assert.equal(end.status, 'complete');
    const late = await socket.timeout(5_000).emitWithAck('approve_tool', { conversation_id: conversation, approval_id: request.approval_id, approved: true });
    assert.equal(late.code, 'conflict');
  });
});

describe('Approve on the page in headless Chromium', () => {
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '20' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  const openPage = (user) => openChatPage(browser, server.url, user, pageErrors);

  it('shows the call, its arguments and result, and a decision made in one page updates the other', async () => {
    const ida = await openPage('ida');
    await ida.getByTestId('new-conversation-button').click();
    await ida.locator('[data-testid="message-input"]:enabled').waitFor();
    const conversation = (await ida.getByTestId('current-conversation').textContent()).trim();
    await ida.getByTestId('invite-user').fill('jon');
    await ida.getByTestId('invite-button').click();
    const jon = await openPage('jon');
    await jon.getByTestId('conversation-id').fill(conversation);
    await jon.getByTestId('join-button').click();
    await jon.locator('[data-testid="message-input"]:enabled').waitFor();

    // calculate runs at once: the card shows the arguments and the result.
    await ida.getByTestId('message-input').fill('calculate (1+2)*14');
    await ida.getByTestId('send-button').click();
    const done = '[data-testid="assistant-message"][data-status="complete"]';
    await ida.locator(done).first().waitFor({ timeout: 30_000 });
    const calc = ida.locator(`${done} [data-testid="tool-call"]`).first();
    assert.equal(await calc.getByTestId('tool-name').textContent(), 'calculate');
    assert.deepEqual(JSON.parse(await calc.getByTestId('tool-args').textContent()), { expression: '(1+2)*14' });
    assert.match(await calc.getByTestId('tool-result').textContent(), /"value": 42/);

    // send_email waits for a decision: both pages offer Approve; jon's click decides for both.
    await ida.getByTestId('message-input').fill('send_email to jon');
    await ida.getByTestId('send-button').click();
    const waiting = '[data-testid="assistant-message"][data-status="streaming"] [data-testid="approval"]';
    await ida.locator(waiting).waitFor({ state: 'visible', timeout: 30_000 });
    await jon.locator(waiting).waitFor({ state: 'visible', timeout: 30_000 });
    await jon.locator(`${waiting} [data-testid="approve"]`).click();

    for (const page of [ida, jon]) {
      const answer = page.locator(done).last();
      await page.locator(done).nth(1).waitFor({ timeout: 30_000 });
      const card = answer.locator('[data-testid="tool-call"]');
      assert.match(await card.getByTestId('tool-status').textContent(), /^approved by jon, done in \d+ ms$/);
      assert.match(await card.getByTestId('tool-result').textContent(), /"status": "sent \(simulated\)"/);
      assert.equal(await card.getAttribute('data-decision'), 'approved');
      assert.equal(await answer.locator('[data-testid="approval"]').isHidden(), true, 'the buttons are gone');
      assert.match(await answer.getByTestId('message-text').textContent(), /^send_email returned: /);
    }
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});

describe('the page\'s client tool get_time in headless Chromium', () => {
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '10' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('the browser that asked runs it: the card shows its output, with that browser\'s time zone, and the answer says it', async () => {
    // The asker's browser is in Tokyo: the time zone in the output is its own, not the server's.
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, timezoneId: 'Asia/Tokyo' });
    await servePageFromDisk(context);
    const kai = await context.newPage();
    kai.setDefaultTimeout(15_000);
    kai.on('pageerror', (err) => pageErrors.push(`kai pageerror: ${err.message}`));
    kai.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(`kai console: ${msg.text()}`); });
    await kai.goto(server.url);
    await kai.getByTestId('login-user').fill('kai');
    await kai.getByTestId('login-button').click();
    await kai.locator('[data-testid="connection-status"][data-state="connected"]').waitFor();
    await kai.getByTestId('new-conversation-button').click();
    await kai.locator('[data-testid="message-input"]:enabled').waitFor();
    const conversation = (await kai.getByTestId('current-conversation').textContent()).trim();
    await kai.getByTestId('invite-user').fill('lia');
    await kai.getByTestId('invite-button').click();
    await kai.getByTestId('members').filter({ hasText: 'lia' }).waitFor();
    const lia = await openChatPage(browser, server.url, 'lia', pageErrors);
    await lia.getByTestId('conversation-id').fill(conversation);
    await lia.getByTestId('join-button').click();
    await lia.locator('[data-testid="message-input"]:enabled').waitFor();

    const sentAt = Date.now();
    await kai.getByTestId('message-input').fill('what is get_time');
    await kai.getByTestId('send-button').click();
    const done = '[data-testid="assistant-message"][data-status="complete"]';
    for (const page of [kai, lia]) {
      const answer = page.locator(done).first();
      await answer.waitFor({ timeout: 30_000 });
      const card = answer.getByTestId('tool-call');
      assert.equal(await card.getByTestId('tool-name').textContent(), 'get_time');
      assert.equal(await card.getByTestId('tool-client').textContent(), 'runs in your browser', 'shown as a client tool');
      assert.equal(await card.getByTestId('tool-client').isVisible(), true);
      assert.equal(await card.getAttribute('data-outcome'), 'ok');
      const output = JSON.parse(await card.getByTestId('tool-result').textContent());
      assert.equal(output.time_zone, 'Asia/Tokyo', 'the time zone of the browser that ran it');
      assert.ok(Math.abs(Date.parse(output.iso) - sentAt) < 60_000, `the browser's time: ${output.iso}`);
      const text = await answer.getByTestId('message-text').textContent();
      assert.match(text, /^get_time returned: /);
      assert.equal(await page.getByTestId('user-message').first().textContent().then((t) => t.includes('null')), false, 'nothing but the message in its item');
      assert.match(text, /"time_zone":"Asia\/Tokyo"/);
    }

    // The tool's optional argument: a time zone named in the message.
    await kai.getByTestId('message-input').fill('what is get_time Europe/Paris');
    await kai.getByTestId('send-button').click();
    const second = kai.locator(done).nth(1);
    await second.waitFor({ timeout: 30_000 });
    const output = JSON.parse(await second.getByTestId('tool-result').textContent());
    assert.equal(output.time_zone, 'Europe/Paris');
    assert.match(await second.getByTestId('message-text').textContent(), /^get_time returned: .*Europe\/Paris/);
    // A message that names no tool is echoed as before, the tool offered or not.
    await kai.getByTestId('message-input').fill('just saying hello');
    await kai.getByTestId('send-button').click();
    await kai.locator(done).nth(2).filter({ hasText: 'just saying hello' }).waitFor();
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});
