// Busy conversations and token budgets (docs/protocol.md section 7): `on_busy:"enqueue"`,
// `queued`, cancelling a queued send and `get_usage` as the official socket.io-client sees
// them, and the chat page's queue of waiting messages and budget line in headless Chromium.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { Recorder, devToken, launchChromium, openChatPage, startChat } from './helpers.mjs';

/** `n` distinct words: the echo provider answers one word per MARIE_ECHO_DELAY_MS. */
const words = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(3, '0')}`).join(' ');

describe('queued sends and usage over socket.io-client', () => {
  const LIMIT = 100_000;
  let server;
  const sockets = [];
  const clients = {};
  const conversationId = `queue-${randomBytes(6).toString('hex')}`;

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
  const ended = (user, streamId) => clients[user].rec.waitFor('stream_end', (d) => d.stream_id === streamId, { ms: 15_000 });

  before(async () => {
    // 40 words at 50 ms: the first answer runs for about 2 s.
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '50', MARIE_TOKEN_BUDGET: `${LIMIT}/day` } });
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

  it('get_usage: nothing used yet, the limit, its period and when it starts again', async () => {
    const usage = await ack('alice', 'get_usage', {});
    assert.equal(usage.status, 'ok', JSON.stringify(usage));
    assert.equal(usage.used, 0);
    assert.equal(usage.limit, LIMIT);
    assert.equal(usage.period, 'day');
    assert.equal(typeof usage.resets_at, 'number');
    assert.ok(usage.resets_at > Date.now() && usage.resets_at <= Date.now() + 86_400_000, `next UTC midnight: ${usage.resets_at}`);
    assert.equal(usage.resets_at % 86_400_000, 0, 'a day starts at UTC midnight');
  });

  it('enqueues a send behind the running answer, tells the room, cancels one, answers the other in turn', async () => {
    const LONG = words(40, 'w');
    const first = await ack('alice', 'send_message', { conversation_id: conversationId, message: LONG });
    assert.equal(first.status, 'ok', JSON.stringify(first));
    assert.equal(first.queued, undefined, 'nothing ran: answered at once');
    await clients.bob.rec.waitFor('stream_start', (d) => d.stream_id === first.stream_id);

    const queued = await ack('bob', 'send_message', { conversation_id: conversationId, message: 'queued question', on_busy: 'enqueue' });
    assert.equal(queued.status, 'ok', JSON.stringify(queued));
    assert.equal(queued.queued, 1, 'next in line');
    assert.equal(queued.duplicate, false);
    assert.notEqual(queued.stream_id, first.stream_id);
    const notice = await clients.alice.rec.waitFor('queued', (d) => d.stream_id === queued.stream_id);
    assert.deepEqual(notice, {
      conversation_id: conversationId,
      stream_id: queued.stream_id,
      message_id: queued.message_id,
      user_id: 'bob',
      message: 'queued question',
      position: 1,
    });

    // A second one waits behind it; cancelled while it waits, its stream ends without starting.
    const second = await ack('alice', 'send_message', { conversation_id: conversationId, message: 'never answered', on_busy: 'enqueue' });
    assert.equal(second.queued, 2, JSON.stringify(second));
    await clients.bob.rec.waitFor('queued', (d) => d.stream_id === second.stream_id && d.position === 2);
    const cancelled = await ack('alice', 'cancel_stream', { conversation_id: conversationId, stream_id: second.stream_id });
    assert.equal(cancelled.status, 'ok', JSON.stringify(cancelled));
    const gone = await ended('bob', second.stream_id);
    assert.equal(gone.status, 'cancelled');
    assert.equal(gone.full_content, '');

    const firstEnd = await ended('alice', first.stream_id);
    assert.equal(firstEnd.status, 'complete', 'a queued send does not disturb the running answer');
    assert.equal(firstEnd.full_content, LONG);
    const answer = await ended('alice', queued.stream_id);
    assert.equal(answer.status, 'complete');
    assert.equal(answer.full_content, 'queued question');

    const seen = clients.alice.rec.events.filter((r) => r.data && [first.stream_id, queued.stream_id, second.stream_id].includes(r.data.stream_id)
      && ['stream_start', 'stream_end'].includes(r.event)).map((r) => `${r.event}:${[first.stream_id, queued.stream_id, second.stream_id].indexOf(r.data.stream_id)}`);
    assert.deepEqual(seen, ['stream_start:0', 'stream_end:2', 'stream_end:0', 'stream_start:1', 'stream_end:1'], 'in turn; the cancelled one never started');

    const history = await ack('bob', 'get_history', { conversation_id: conversationId });
    assert.deepEqual(history.messages.map((m) => m.content), [LONG, LONG, 'queued question', 'queued question']);

    // Each answer counts against its asker's budget; the cancelled send cost nothing.
    const alice = await ack('alice', 'get_usage', {});
    assert.equal(alice.used, firstEnd.usage.total_tokens);
    const bob = await clients.bob.socket.timeout(5_000).emitWithAck('get_usage'); // no payload at all
    assert.equal(bob.status, 'ok', JSON.stringify(bob));
    assert.equal(bob.used, answer.usage.total_tokens);
    assert.ok(bob.used > 0);
  });
});

describe('the queue of waiting messages on the page in headless Chromium', () => {
  const LONG = words(80, 'q');
  const BEN = 'ben asks while the answer runs';
  const ANN = 'ann asks a second question';
  const QUESTIONS = '[data-testid="user-message"] > [data-testid="message-text"]';
  const ANSWERS = '[data-testid="assistant-message"] > [data-testid="message-text"]';
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    // 80 words at 75 ms: the first answer runs for about 6 s, while the queue is used.
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '75' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  /** The texts of the queue's entries, as `author: text`. Runs in the page. */
  const queueOf = (page) => page.getByTestId('queued-message').evaluateAll((items) => items.map((li) => {
    const author = li.querySelector('[data-testid="queued-author"]').textContent;
    return `${author}: ${li.querySelector('[data-testid="queued-text"]').textContent}`;
  }));

  /** Waits until `page` shows `expected` in its queue (in order), else fails showing what it has. */
  async function queueShows(page, expected, what) {
    try {
      await page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('[data-testid="queued-message"]')].map((li) =>
        `${li.querySelector('[data-testid="queued-author"]').textContent}: ${li.querySelector('[data-testid="queued-text"]').textContent}`)) === want,
      JSON.stringify(expected), { timeout: 15_000 });
    } catch {
      assert.deepEqual(await queueOf(page), expected, what);
    }
  }

  /** What a page shows: its questions, answers and how many answers stream; with `wanted`, whether that is it. Runs in the page. */
  function snapshot([questions, answers, wanted]) {
    const got = {
      questions: [...document.querySelectorAll(questions)].map((el) => el.textContent),
      answers: [...document.querySelectorAll(answers)].map((el) => el.textContent),
      streaming: document.querySelectorAll('[data-testid="assistant-message"][data-status="streaming"]').length,
    };
    return wanted ? JSON.stringify(got) === JSON.stringify(wanted) : got;
  }

  /** Waits until `page` shows these questions and answers, none streaming, else fails showing what it has. */
  async function conversationShows(page, questions, answers, what) {
    const want = { questions, answers, streaming: 0 };
    try {
      await page.waitForFunction(snapshot, [QUESTIONS, ANSWERS, want], { timeout: 20_000 });
    } catch {
      const lines = await page.getByTestId('system-line').allTextContents();
      assert.deepEqual(await page.evaluate(snapshot, [QUESTIONS, ANSWERS, null]), want, `${what} (system lines: ${JSON.stringify(lines)})`);
    }
  }

  it('queues sends made while an answer runs, in both members\' pages; cancel takes one out; the rest is answered in turn', async () => {
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
    await ben.getByTestId('system-line').filter({ hasText: `Joined ${conversation}.` }).waitFor();

    await ann.getByTestId('message-input').fill(LONG);
    await ann.getByTestId('send-button').click();
    const running = '[data-testid="assistant-message"][data-status="streaming"]';
    await ann.locator(running).waitFor();
    await ben.locator(running).waitFor();

    // Ben may still send: his message waits, shown in both pages' queues, not in the conversation.
    assert.equal(await ben.getByTestId('send-button').isEnabled(), true, 'send stays enabled while an answer runs');
    await ben.getByTestId('message-input').fill(BEN);
    await ben.getByTestId('send-button').click();
    await queueShows(ben, [`ben (you): ${BEN}`], 'ben\'s queue, after his send');
    await queueShows(ann, [`ben: ${BEN}`], 'ann\'s queue, after ben\'s send');
    assert.equal(await ann.getByTestId('queued-cancel').count(), 0, 'ann may not cancel ben\'s message');
    assert.equal(await ben.getByTestId('message-input').inputValue(), '', 'the composer is cleared');

    await ann.getByTestId('message-input').fill(ANN);
    await ann.getByTestId('message-input').press('Enter');
    await queueShows(ann, [`ben: ${BEN}`, `ann (you): ${ANN}`], 'ann\'s queue of 2');
    await queueShows(ben, [`ben (you): ${BEN}`, `ann: ${ANN}`], 'ben\'s queue of 2');
    assert.equal(await ann.getByTestId('queue').isVisible(), true);

    // Ben cancels his: it leaves both queues.
    await ben.getByTestId('queued-message').filter({ hasText: BEN }).getByTestId('queued-cancel').click();
    await queueShows(ben, [`ann: ${ANN}`], 'ben\'s queue, after his cancel');
    await queueShows(ann, [`ann (you): ${ANN}`], 'ann\'s queue, after ben\'s cancel');
    assert.equal(await ann.locator(running).count(), 1, 'the first answer still runs: the queue was used meanwhile');

    // A page opened now learns the queue from `joined`.
    const late = await openChatPage(browser, server.url, 'ann', pageErrors);
    await late.getByTestId('conversation-id').fill(conversation);
    await late.getByTestId('join-button').click();
    await queueShows(late, [`ann (you): ${ANN}`], 'the queue of a page that joined late');
    await late.close();

    // The first answer ends; ann's queued message is then asked and answered, in both pages.
    for (const [page, who] of [[ann, 'ann'], [ben, 'ben']]) {
      await conversationShows(page, [LONG, ANN], [LONG, ANN], `${who}'s conversation at the end`);
      await page.getByTestId('queue').waitFor({ state: 'hidden' });
      assert.equal(await page.getByTestId('queued-message').count(), 0, `${who}'s queue is empty`);
      assert.equal(await page.getByTestId('messages').getByText(BEN).count(), 0, `${who}: the cancelled message was never asked`);
      assert.equal(await page.getByTestId('budget').isHidden(), true, 'no budget on this server: no budget line');
    }
    const statuses = await ann.getByTestId('assistant-message').evaluateAll((items) => items.map((li) => li.dataset.status));
    assert.deepEqual(statuses, ['complete', 'complete']);

    // The queue belongs to the conversation shown: switching empties it.
    await ann.getByTestId('message-input').fill(LONG);
    await ann.getByTestId('send-button').click();
    await ann.locator(running).waitFor();
    await ben.locator(running).waitFor();
    await ben.getByTestId('message-input').fill(BEN);
    await ben.getByTestId('send-button').click();
    await queueShows(ben, [`ben (you): ${BEN}`], 'ben\'s queue, before switching');
    await ben.getByTestId('new-conversation-button').click();
    await ben.getByTestId('current-conversation').filter({ hasNotText: conversation }).waitFor();
    assert.equal(await ben.getByTestId('queued-message').count(), 0, 'switching conversation empties the queue');
    assert.equal(await ben.getByTestId('queue').isHidden(), true);
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});

describe('the token budget on the page in headless Chromium', () => {
  const LIMIT = 200;
  const RESETS = /, resets at 00:00 UTC, in (\d+ h( \d+ min)?|\d+ min|under a minute)$/;
  // About 125 prompt tokens (estimated: 4 bytes a token): the answer reaches the budget
  // after some 75 of its 100 words.
  const LONG = words(100, 'n');
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '20', MARIE_TOKEN_BUDGET: `${LIMIT}/day` } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('shows what is left, stops an answer at the budget with a note, and refuses the next send', async () => {
    const uma = await openChatPage(browser, server.url, 'uma', pageErrors);
    await uma.getByTestId('new-conversation-button').click();
    await uma.locator('[data-testid="message-input"]:enabled').waitFor();
    const budget = uma.getByTestId('budget');
    await budget.filter({ hasText: `Budget: ${LIMIT} of ${LIMIT} tokens left today` }).waitFor();
    // When it resets, in words: a day's budget at the next UTC midnight.
    assert.match(await budget.textContent(), RESETS, 'the reset time in words');

    await uma.getByTestId('message-input').fill(LONG);
    await uma.getByTestId('send-button').click();
    const stopped = uma.locator('[data-testid="assistant-message"][data-finish-reason="budget"]');
    await stopped.waitFor();
    assert.equal(await stopped.getAttribute('data-status'), 'complete');
    assert.equal(await stopped.getByTestId('message-status').textContent(), 'stopped: token budget used up');
    const text = await stopped.locator('> [data-testid="message-text"]').textContent();
    assert.ok(text.length > 0 && text.length < LONG.length && LONG.startsWith(text), `stopped part way: ${JSON.stringify(text)}`);
    await budget.filter({ hasText: `Budget: 0 of ${LIMIT} tokens left today` }).waitFor();
    assert.equal(await budget.getAttribute('data-state'), 'empty');

    // The next send is refused, and said so where a refused send shows its error.
    await uma.getByTestId('message-input').fill('one more question');
    await uma.getByTestId('send-button').click();
    const refused = uma.locator('[data-testid="user-message"][data-status="failed"]').filter({ hasText: 'one more question' });
    const alert = refused.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /^Not sent: .+ \(budget_exceeded\)$/);
    assert.match(await alert.textContent(), /resets at 00:00 UTC, in [^()]+ \(budget_exceeded\)$/, 'the refusal says when, in words');
    assert.doesNotMatch(await alert.textContent(), /\d{12}|ms since/, 'not in milliseconds since the epoch');
    assert.equal(await uma.getByTestId('message-input').inputValue(), 'one more question', 'the text is given back');
    assert.equal(await uma.getByTestId('assistant-message').count(), 1, 'nothing was answered');
    assert.deepEqual(pageErrors, [], 'no script errors in the page');
  });
});
