// Branches of a conversation (docs/protocol.md section 7): edit_message, regenerate and
// switch_branch as the official socket.io-client sees them, and the chat page's Edit,
// Regenerate and `< 1/2 >` switcher in two pages of headless Chromium.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { Recorder, devToken, launchChromium, openChatPage, startChat } from './helpers.mjs';

describe('branches over socket.io-client', () => {
  let server;
  const sockets = [];
  const clients = {};
  const conversationId = `branches-${randomBytes(6).toString('hex')}`;

  async function connectAs(user) {
    const { body } = await devToken(server.url, user);
    const socket = io(server.url, { auth: { token: body.token }, reconnection: false, forceNew: true, autoConnect: false });
    sockets.push(socket);
    const rec = new Recorder(socket);
    socket.connect();
    await rec.waitFor('connected');
    clients[user] = { socket, rec };
  }

  const ack = (user, event, payload) => clients[user].socket.timeout(5_000).emitWithAck(event, payload);
  const ended = (user, streamId) => clients[user].rec.waitFor('stream_end', (d) => d.stream_id === streamId, { ms: 10_000 });

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5' } });
    await connectAs('alice');
    await connectAs('bob');
    assert.equal((await ack('alice', 'join_conversation', { conversation_id: conversationId })).status, 'ok');
    assert.equal((await ack('alice', 'invite', { conversation_id: conversationId, user_id: 'bob' })).status, 'ok');
    assert.equal((await ack('bob', 'join_conversation', { conversation_id: conversationId })).status, 'ok');
  });

  after(async () => {
    for (const socket of sockets) socket.disconnect();
    if (server) await server.stop();
  });

  it('edits a question: a sibling, its answer, and siblings in get_history; only its author may', async () => {
    const sent = await ack('alice', 'send_message', { conversation_id: conversationId, message: 'first question' });
    assert.equal(sent.status, 'ok', JSON.stringify(sent));
    const firstAnswer = await ended('bob', sent.stream_id);
    await ended('alice', sent.stream_id);

    const edited = await ack('alice', 'edit_message', { conversation_id: conversationId, message_id: sent.message_id, message: 'second question' });
    assert.equal(edited.status, 'ok', JSON.stringify(edited));
    assert.equal(edited.duplicate, false);
    assert.notEqual(edited.message_id, sent.message_id, 'a new user message');
    for (const user of ['alice', 'bob']) {
      const end = await ended(user, edited.stream_id);
      assert.equal(end.status, 'complete');
      assert.equal(end.full_content, 'second question');
    }

    const history = await ack('bob', 'get_history', { conversation_id: conversationId });
    assert.equal(history.status, 'ok');
    const [question, answer, ...rest] = history.messages;
    assert.deepEqual(rest, [], 'the active branch only');
    assert.equal(question.message_id, edited.message_id);
    assert.equal(question.content, 'second question');
    assert.equal(question.parent_id, null);
    assert.deepEqual(question.siblings, [sent.message_id, edited.message_id], 'oldest first, itself included');
    assert.equal(answer.role, 'assistant');
    assert.equal(answer.parent_id, edited.message_id);
    assert.equal(answer.siblings, undefined, 'no siblings: no field');
    assert.notEqual(answer.message_id, firstAnswer.message_id);

    // Bob may not edit Alice's question, and nothing starts.
    const mark = clients.bob.rec.mark();
    const forbidden = await ack('bob', 'edit_message', { conversation_id: conversationId, message_id: edited.message_id, message: 'hijacked' });
    assert.equal(forbidden.status, 'error');
    assert.equal(forbidden.code, 'forbidden');
    const again = await ack('bob', 'get_history', { conversation_id: conversationId });
    assert.deepEqual(again.messages.map((m) => m.content), ['second question', 'second question']);
    assert.deepEqual(clients.bob.rec.events.slice(mark).filter((r) => r.event === 'stream_start'), []);
  });

  it('regenerates an answer beside the old one', async () => {
    const before = await ack('alice', 'get_history', { conversation_id: conversationId });
    const [question, answer] = before.messages;
    const regenerated = await ack('bob', 'regenerate', { conversation_id: conversationId, message_id: answer.message_id });
    assert.equal(regenerated.status, 'ok', JSON.stringify(regenerated));
    assert.equal(regenerated.message_id, question.message_id, 'the question answered');
    const end = await ended('alice', regenerated.stream_id);
    assert.equal(end.full_content, 'second question');
    const history = await ack('alice', 'get_history', { conversation_id: conversationId });
    assert.deepEqual(history.messages.map((m) => m.message_id), [question.message_id, end.message_id]);
    assert.deepEqual(history.messages[1].siblings, [answer.message_id, end.message_id]);
    const wrong = await ack('alice', 'regenerate', { conversation_id: conversationId, message_id: question.message_id });
    assert.equal(wrong.code, 'bad_request', 'a question is edited, not regenerated');
  });

  it('switches branches: branch_switched to every member, and get_history follows', async () => {
    const history = await ack('alice', 'get_history', { conversation_id: conversationId });
    const first = history.messages[0].siblings[0];
    const mark = clients.bob.rec.mark();
    const switched = await ack('alice', 'switch_branch', { conversation_id: conversationId, message_id: first });
    assert.equal(switched.status, 'ok', JSON.stringify(switched));
    const seen = await clients.bob.rec.waitFor('branch_switched', (d) => d.conversation_id === conversationId, { from: mark });
    assert.deepEqual(seen, { conversation_id: conversationId, message_id: first, leaf_id: switched.leaf_id, user_id: 'alice' });
    await clients.alice.rec.waitFor('branch_switched', (d) => d.message_id === first, { from: 0 });

    const now = await ack('bob', 'get_history', { conversation_id: conversationId });
    assert.deepEqual(now.messages.map((m) => m.content), ['first question', 'first question']);
    assert.equal(now.messages[0].message_id, first);
    assert.equal(now.messages[1].message_id, switched.leaf_id, 'down to the newest leaf');
    assert.deepEqual(now.messages[0].siblings, history.messages[0].siblings);

    const unknown = await ack('bob', 'switch_branch', { conversation_id: conversationId, message_id: 'no-such-message' });
    assert.equal(unknown.code, 'not_found');
  });
});

describe('Edit, Regenerate and the version switcher on the page in headless Chromium', () => {
  const ORIGINAL = 'what colour is the sky today';
  const EDITED = 'what colour is the sea today';
  const QUESTIONS = '[data-testid="user-message"] > [data-testid="message-text"]';
  const ANSWERS = '[data-testid="assistant-message"] > [data-testid="message-text"]';
  const STREAMING = '[data-testid="assistant-message"][data-status="streaming"]';
  const QUESTION_POSITIONS = '[data-testid="user-message"] [data-testid="sibling-position"]';
  const ANSWER_POSITIONS = '[data-testid="assistant-message"] [data-testid="sibling-position"]';
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '60' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  /**
   * What a page shows: the texts of each selector in `sels` and how many answers stream; with
   * `wanted`, whether that is it. Runs in the page.
   */
  function snapshot([sels, streaming, wanted]) {
    const got = { streaming: document.querySelectorAll(streaming).length };
    for (const [key, sel] of Object.entries(sels)) got[key] = [...document.querySelectorAll(sel)].map((el) => el.textContent);
    return wanted ? JSON.stringify(got) === JSON.stringify(wanted) : got;
  }

  /** Waits until `page` shows the conversation as `expected`, no answer streaming, else fails showing what it has. */
  async function shows(page, expected, what) {
    const selectors = { questions: QUESTIONS, answers: ANSWERS, questionPositions: QUESTION_POSITIONS, answerPositions: ANSWER_POSITIONS };
    const want = { streaming: 0, ...expected };
    try {
      await page.waitForFunction(snapshot, [selectors, STREAMING, want], { timeout: 15_000 });
    } catch {
      const lines = await page.getByTestId('system-line').allTextContents();
      assert.deepEqual(await page.evaluate(snapshot, [selectors, STREAMING, null]), want, `${what} (system lines: ${JSON.stringify(lines)})`);
    }
  }

  it('edits, regenerates and switches back, in both members\' pages', async () => {
    const ann = await openChatPage(browser, server.url, 'ann', pageErrors);
    await ann.getByTestId('new-conversation-button').click();
    await ann.locator('[data-testid="message-input"]:enabled').waitFor();
    const conversation = (await ann.getByTestId('current-conversation').textContent()).trim();
    await ann.getByTestId('invite-user').fill('ben');
    await ann.getByTestId('invite-button').click();
    await ann.getByTestId('members').filter({ hasText: 'ben' }).waitFor();
    const ben = await openChatPage(browser, server.url, 'ben', pageErrors);
    await ben.getByTestId('conversation-id').fill(conversation);
    await ben.getByTestId('join-button').click();
    await ben.locator('[data-testid="message-input"]:enabled').waitFor();

    await ann.getByTestId('message-input').fill(ORIGINAL);
    await ann.getByTestId('send-button').click();
    const plain = { questions: [ORIGINAL], answers: [ORIGINAL], questionPositions: [], answerPositions: [] };
    await shows(ann, plain, 'ann, after the first answer');
    await shows(ben, plain, 'ben, after the first answer');
    assert.equal(await ben.getByTestId('edit-button').count(), 0, 'ben may not edit ann\'s question');

    // Edit: an inline editor with the text; Cancel gives the message back unchanged.
    const question = ann.getByTestId('user-message');
    await question.getByTestId('edit-button').click();
    assert.equal(await question.getByTestId('edit-input').inputValue(), ORIGINAL);
    await question.getByTestId('edit-cancel').click();
    await question.getByTestId('edit-input').waitFor({ state: 'detached' });
    await question.getByTestId('message-text').filter({ hasText: ORIGINAL }).waitFor();

    // An edit the server refuses (over 32 KiB: payload_too_large) is shown in the editor, which stays.
    await question.getByTestId('edit-button').click();
    await question.getByTestId('edit-input').fill('é'.repeat(20_000));
    await question.getByTestId('edit-save').click();
    await question.getByTestId('edit-error').filter({ hasText: 'payload_too_large' }).waitFor();
    await question.getByTestId('edit-save').waitFor({ state: 'visible' });

    await question.getByTestId('edit-input').fill(EDITED);
    await question.getByTestId('edit-save').click();
    // While its answer streams, no page offers Edit, Regenerate or the switcher.
    await ben.waitForFunction((streaming) => {
      const controls = [...document.querySelectorAll('[data-testid="messages"] button')];
      return document.querySelector(streaming) && controls.length > 0 && controls.every((b) => b.disabled);
    }, STREAMING);
    const edited = { questions: [EDITED], answers: [EDITED], questionPositions: ['2/2'], answerPositions: [] };
    await shows(ann, edited, 'ann, after the edit');
    await shows(ben, edited, 'ben, after the edit');

    // Regenerate: a second answer, and the switcher on it.
    await ann.getByTestId('regenerate-button').click();
    const regenerated = { ...edited, answerPositions: ['2/2'] };
    await shows(ann, regenerated, 'ann, after the regeneration');
    await shows(ben, regenerated, 'ben, after the regeneration');

    // < on the question: the first version, in both pages (ben's through branch_switched).
    await ann.getByTestId('user-message').getByTestId('sibling-prev').click();
    const first = { ...plain, questionPositions: ['1/2'] };
    await shows(ann, first, 'ann, after switching back');
    await shows(ben, first, 'ben, after switching back');
    assert.equal(await ben.getByTestId('sibling-prev').isDisabled(), true, 'no version before the first');
    assert.equal(await ben.getByTestId('sibling-next').isEnabled(), true);

    // > from the other page: the edited version, down to its newest answer.
    await ben.getByTestId('sibling-next').click();
    await shows(ann, regenerated, 'ann, after ben switched forward');
    await shows(ben, regenerated, 'ben, after switching forward');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});
