// Group conversations (docs/protocol.md section 10): every message reaches the room as
// `message_added` before the answer to it starts, `answer_policy` and `send_message.answer`
// say who answers, `@name` picks the assistant, and `unread` / `mark_read` keep count. First
// over the official socket.io-client, then in two members' pages in headless Chromium.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { Recorder, devToken, launchChromium, openChatPage, reloadChatPage, startChat } from './helpers.mjs';

/** Polls `read` until `check` holds on what it returns, or fails with what was last seen. */
async function until(read, check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  let seen;
  for (;;) {
    seen = await read();
    if (check(seen)) return seen;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(seen)} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A connected socket.io-client socket of `user` (dev token), with a recorder of what it gets. */
async function connectAs(url, user, sockets) {
  const { status, body } = await devToken(url, user);
  assert.equal(status, 200, JSON.stringify(body));
  const socket = io(url, { auth: { token: body.token }, reconnection: false, forceNew: true, autoConnect: false });
  sockets.push(socket);
  const rec = new Recorder(socket);
  socket.connect();
  await rec.waitFor('connected');
  return { socket, rec, ask: (event, payload) => socket.timeout(5_000).emitWithAck(event, payload) };
}

describe('group conversations over socket.io-client', () => {
  let server;
  const sockets = [];
  const conversationId = `group-${randomBytes(6).toString('hex')}`;
  let carol;
  let dave;

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5' } });
    carol = await connectAs(server.url, 'carol', sockets);
    dave = await connectAs(server.url, 'dave', sockets);
    assert.equal((await carol.ask('join_conversation', { conversation_id: conversationId })).status, 'ok');
    assert.equal((await carol.ask('invite', { conversation_id: conversationId, user_id: 'dave' })).status, 'ok');
    assert.equal((await dave.ask('join_conversation', { conversation_id: conversationId })).status, 'ok');
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (server) await server.stop();
  });

  it('tells every member (the sender too) a message before the answer to it starts', async () => {
    const from = { carol: carol.rec.mark(), dave: dave.rec.mark() };
    const sent = await carol.ask('send_message', { conversation_id: conversationId, message: 'hello dave', client_message_id: 'g-1' });
    assert.equal(sent.status, 'ok', JSON.stringify(sent));
    assert.equal(typeof sent.stream_id, 'string', 'answered: the policy is "always" by default');
    for (const [who, { rec }] of [['carol', carol], ['dave', dave]]) {
      await rec.waitFor('stream_end', (d) => d.stream_id === sent.stream_id, { from: from[who] });
      const events = rec.events.slice(from[who]);
      const added = events.findIndex((r) => r.event === 'message_added' && r.data.message.message_id === sent.message_id);
      const started = events.findIndex((r) => r.event === 'stream_start' && r.data.stream_id === sent.stream_id);
      assert.ok(added >= 0, `${who} got message_added`);
      assert.ok(added < started, `${who}: message_added (${added}) before stream_start (${started})`);
      assert.equal(events.filter((r) => r.event === 'message_added').length, 1, `${who}: the message is told once`);
      const { data } = events[added];
      assert.equal(data.conversation_id, conversationId);
      assert.equal(data.message.role, 'user');
      assert.equal(data.message.content, 'hello dave');
      assert.equal(data.message.user_id, 'carol');
      assert.equal(data.message.parent_id, null, 'the first message');
      assert.equal(typeof data.message.created_at, 'number');
      const start = events[started].data;
      assert.equal(start.parent_id, sent.message_id, 'the answer answers it');
      assert.equal(start.assistant, 'assistant', 'the first assistant answers a message that names none');
    }
  });

  it('answers only on @mention once the policy says so, by the assistant named', async () => {
    const updated = dave.rec.waitFor('conversation_updated', (d) => d.conversation_id === conversationId && d.answer_policy === 'mention');
    const res = await carol.ask('update_conversation', { conversation_id: conversationId, answer_policy: 'mention' });
    assert.equal(res.status, 'ok', JSON.stringify(res));
    assert.equal(res.answer_policy, 'mention');
    assert.equal((await updated).updated_by, 'carol');
    const details = await dave.ask('get_conversation', { conversation_id: conversationId });
    assert.equal(details.answer_policy, 'mention');
    assert.deepEqual(details.assistants.map((a) => a.name), ['assistant', 'calc']);

    const from = carol.rec.mark();
    const chat = await dave.ask('send_message', { conversation_id: conversationId, message: 'just chatting' });
    assert.equal(chat.status, 'ok', JSON.stringify(chat));
    assert.equal(chat.answered, false);
    assert.equal(chat.stream_id, undefined, 'no answer, no stream');
    const told = await carol.rec.waitFor('message_added', (d) => d.message.message_id === chat.message_id, { from });
    assert.equal(told.message.user_id, 'dave');
    assert.equal(told.message.content, 'just chatting');

    const asked = await carol.ask('send_message', { conversation_id: conversationId, message: '@calc 12*7' });
    assert.equal(asked.status, 'ok', JSON.stringify(asked));
    const end = await dave.rec.waitFor('stream_end', (d) => d.stream_id === asked.stream_id, { ms: 10_000 });
    assert.match(end.full_content, /calculate returned: .*84/);
    const starts = carol.rec.events.slice(from).filter((r) => r.event === 'stream_start');
    assert.deepEqual(starts.map((r) => [r.data.stream_id, r.data.assistant]), [[asked.stream_id, 'calc']],
      'one answer, by calc: "just chatting" was not answered');

    // answer:true asks the first assistant without a mention.
    const forced = await dave.ask('send_message', { conversation_id: conversationId, message: 'anyone there?', answer: true });
    const start = await carol.rec.waitFor('stream_start', (d) => d.stream_id === forced.stream_id);
    assert.equal(start.assistant, 'assistant');
    await carol.rec.waitFor('stream_end', (d) => d.stream_id === forced.stream_id);

    const history = await dave.ask('get_history', { conversation_id: conversationId });
    const calcAnswer = history.messages.find((m) => m.role === 'assistant' && m.parent_id === asked.message_id);
    assert.equal(calcAnswer.assistant, 'calc');
    assert.ok(history.messages.some((m) => m.message_id === chat.message_id && m.user_id === 'dave'));
  });

  it('counts what a member has not read, and marks it read', async () => {
    const unread = async (who) => {
      const res = await who.ask('list_conversations', {});
      return res.conversations.find((c) => c.conversation_id === conversationId).unread;
    };
    // Dave never marked anything: every message counts, his own too.
    const history = await dave.ask('get_history', { conversation_id: conversationId });
    assert.equal(await unread(dave), history.messages.length);
    const newest = history.messages.at(-1).message_id;
    const from = carol.rec.mark();
    const marked = await dave.ask('mark_read', { conversation_id: conversationId, message_id: newest });
    assert.equal(marked.status, 'ok', JSON.stringify(marked));
    assert.equal(marked.message_id, newest);
    const read = await carol.rec.waitFor('read', (d) => d.user_id === 'dave', { from });
    assert.deepEqual(read, { conversation_id: conversationId, user_id: 'dave', message_id: newest });
    assert.equal(await unread(dave), 0);
    await carol.ask('send_message', { conversation_id: conversationId, message: 'one more' });
    assert.equal(await unread(dave), 1);
  });
});

describe('group conversations in two members\' pages', () => {
  const LONG = Array.from({ length: 80 }, (_, i) => `word${i + 1}`).join(' ');
  const DONE = '[data-testid="assistant-message"][data-status="complete"]';
  let server;
  let browser;
  let alice;
  let bob;
  const sockets = [];
  const ids = {};
  const pageErrors = [];

  const item = (page, id) => page.locator(`[data-testid="conversation-item"][data-conversation-id="${id}"]`);
  const badge = (page, id) => item(page, id).getByTestId('unread-badge');
  const currentId = async (page) => (await page.getByTestId('current-conversation').textContent()).trim();
  /** "author: text" of each message shown, in order (an answer's author: its assistant). */
  const shown = (page) => page.locator('[data-testid="messages"] > li.msg').evaluateAll((lis) => lis.map((li) => {
    const who = li.dataset.testid === 'assistant-message' ? `@${li.dataset.assistant || '?'}` : li.dataset.userId;
    return `${who}: ${li.querySelector('[data-testid="message-text"]').textContent}`;
  }));

  /** Opens a new conversation on `page` and invites `user` through the members panel; resolves to its id. */
  async function newConversation(page, user) {
    const before = await currentId(page).catch(() => '');
    await page.getByTestId('new-conversation-button').click();
    await page.getByTestId('current-conversation').filter({ hasNotText: before || '\u0000' }).waitFor();
    await page.locator('[data-testid="message-input"]:enabled').waitFor();
    await page.getByTestId('invite-user').fill(user);
    await page.getByTestId('invite-button').click();
    await page.locator(`[data-testid="member"][data-user-id="${user}"]`).waitFor();
    return currentId(page);
  }

  async function write(page, text) {
    await page.getByTestId('message-input').fill(text);
    await page.getByTestId('send-button').click();
  }

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '30' } });
    browser = await launchChromium();
    alice = await openChatPage(browser, server.url, 'alice', pageErrors);
    bob = await openChatPage(browser, server.url, 'bob', pageErrors);
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('shows a badge for what came before the member opened the conversation, and clears it', async () => {
    ids.team = await newConversation(alice, 'bob');
    await write(alice, 'hi bob');
    await alice.locator(DONE).waitFor();
    // The invitation and the title (named after the first answer) are told to bob
    // (conversation_updated): his list is read again, with what he has not read there.
    await badge(bob, ids.team).filter({ hasText: '2' }).waitFor();
    assert.match(await item(bob, ids.team).getByTestId('conversation-open').getAttribute('aria-label'), /\(2 unread\)/);
    assert.equal(await badge(alice, ids.team).isHidden(), true, 'alice has read all of it');

    await item(bob, ids.team).getByTestId('conversation-open').click();
    await bob.locator(DONE).waitFor();
    await badge(bob, ids.team).waitFor({ state: 'hidden' });
    assert.deepEqual(await shown(bob), ['alice: hi bob', '@assistant: hi bob']);
    assert.equal(await bob.locator('[data-testid="user-message"] [data-testid="message-author"]').textContent(), 'alice');
    assert.equal(await bob.locator(`${DONE} [data-testid="assistant-name"]`).textContent(), 'assistant');
    assert.equal(await bob.locator(`${DONE} .avatar`).textContent(), 'A');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('shows a message posted while an answer streams above that answer, live and from the history', async () => {
    // "always": the Ask toggle starts on; bob turns it off to talk to alice alone.
    const ask = bob.getByTestId('ask-assistant');
    assert.equal(await ask.isChecked(), true);
    await write(alice, LONG);
    await bob.locator('[data-testid="assistant-message"][data-status="streaming"]').waitFor();
    await ask.uncheck();
    await write(bob, 'meanwhile');
    const expected = ['alice: hi bob', '@assistant: hi bob', `alice: ${LONG}`, 'bob: meanwhile', `@assistant: ${LONG}`];
    for (const page of [alice, bob]) {
      await page.locator(`${DONE} [data-testid="message-text"]`, { hasText: 'word80' }).waitFor();
      assert.deepEqual(await shown(page), expected);
    }
    // The server stored the answer after bob's message: the history has the same order.
    await reloadChatPage(bob, 'bob');
    await bob.locator(DONE).nth(1).waitFor();
    assert.deepEqual(await shown(bob), expected);
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('answers only an @mention once alice says so, by calc, in both pages', async () => {
    await alice.getByTestId('answer-policy-select').selectOption('mention');
    await alice.locator('[data-testid="answer-policy-select"][data-policy="mention"]:enabled').waitFor();
    // Bob's page follows (conversation_updated): the select, a line, and the Ask toggle off.
    await bob.locator('[data-testid="answer-policy-select"][data-policy="mention"]').waitFor();
    await bob.locator('[data-testid="system-line"]', { hasText: 'alice set who answers: on @mention.' }).waitFor();
    assert.equal(await bob.getByTestId('ask-assistant').isChecked(), false);
    assert.equal(await bob.getByTestId('ask-assistant').isVisible(), true);

    await write(bob, 'hello alice');
    await alice.locator('[data-testid="user-message"][data-user-id="bob"]', { hasText: 'hello alice' }).waitFor();
    await bob.locator('[data-testid="user-message"][data-status="sent"]', { hasText: 'hello alice' }).waitFor();

    // @completion: "@ca" offers calc; Tab takes it.
    const input = alice.getByTestId('message-input');
    await input.fill('');
    await input.pressSequentially('@ca');
    const options = alice.getByTestId('mention-option');
    await alice.getByTestId('mention-list').waitFor();
    assert.deepEqual(await options.allTextContents(), ['C@calc']);
    assert.equal(await input.getAttribute('aria-expanded'), 'true');
    await input.press('Tab');
    assert.equal(await input.inputValue(), '@calc ');
    await alice.getByTestId('mention-list').waitFor({ state: 'hidden' });
    // "@" alone offers every assistant; Enter picks the highlighted one instead of sending.
    await input.fill('');
    await input.pressSequentially('@');
    assert.deepEqual(await options.evaluateAll((o) => o.map((x) => x.dataset.name)), ['assistant', 'calc']);
    await input.press('ArrowDown');
    await input.press('Enter');
    assert.equal(await input.inputValue(), '@calc ');
    await input.pressSequentially('12*7');
    await alice.getByTestId('send-button').click();

    for (const page of [alice, bob]) {
      const answer = page.locator(DONE).filter({ hasText: '84' });
      await answer.waitFor();
      assert.equal(await answer.count(), 1);
      assert.equal(await answer.getByTestId('assistant-name').textContent(), 'calc');
      assert.equal(await answer.locator('.avatar').textContent(), 'C');
      assert.match(await answer.getByTestId('message-text').textContent(), /calculate returned: .*84/);
      const all = await shown(page);
      assert.equal(all.filter((m) => m.startsWith('@')).length, 3, `one answer more, none to "hello alice": ${JSON.stringify(all)}`);
      assert.deepEqual(all.slice(-3), ['bob: hello alice', 'alice: @calc 12*7', all.at(-1)]);
      assert.match(all.at(-1), /^@calc: /);
    }

    // "never": people only; bob's page has no Ask toggle then.
    await alice.getByTestId('answer-policy-select').selectOption('never');
    await bob.locator('[data-testid="answer-policy-select"][data-policy="never"]').waitFor();
    await bob.getByTestId('ask-assistant').waitFor({ state: 'hidden' });
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('shows a badge for another conversation that got messages while bob was elsewhere, cleared once he opens it', async () => {
    ids.news = await newConversation(alice, 'bob');
    await write(alice, 'news for bob');
    await alice.locator(DONE).filter({ hasText: 'news for bob' }).waitFor();
    // Bob still has the first conversation open: only the other one has a badge.
    await badge(bob, ids.news).filter({ hasText: '2' }).waitFor();
    assert.equal(await badge(bob, ids.team).isHidden(), true);

    await item(bob, ids.news).getByTestId('conversation-open').click();
    await bob.locator(DONE).filter({ hasText: 'news for bob' }).waitFor();
    await badge(bob, ids.news).waitFor({ state: 'hidden' });
    // The page marked it read on the server (mark_read), not only in the page.
    const bobSocket = await connectAs(server.url, 'bob', sockets);
    await until(async () => {
      const res = await bobSocket.ask('list_conversations', {});
      return res.conversations.find((c) => c.conversation_id === ids.news).unread;
    }, (n) => n === 0, 'bob\'s unread count on the server');
    // Back in the first one, the list read again still has no badge on it.
    await item(bob, ids.team).getByTestId('conversation-open').click();
    await bob.getByTestId('current-conversation').filter({ hasText: ids.team }).waitFor();
    await bob.getByTestId('conversations-refresh').click();
    await bob.locator('[data-testid="conversation-list"][aria-busy="false"]').waitFor();
    assert.equal(await badge(bob, ids.news).isHidden(), true);
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});
