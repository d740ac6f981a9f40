// The chat page in a real headless Chromium: log in, open a conversation, watch
// an answer stream in, cancel one, and find both again in the history.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { launchChromium, reloadChatPage, servePageFromDisk, startChat } from './helpers.mjs';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const MESSAGE = 'the quick brown fox jumps';
const LONG = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty';
const STEP_MS = 15_000;

describe('chat page in headless Chromium', () => {
  let server;
  let browser;
  let page;
  let conversationId;
  const pageErrors = [];

  const byTestId = (id) => page.getByTestId(id);
  const assistant = (status) => page.locator(`[data-testid="assistant-message"][data-status="${status}"] [data-testid="message-text"]`);

  /** Records every text the streaming assistant message showed, from now on. */
  async function recordAssistantTexts() {
    await page.evaluate(() => {
      window.__assistantTexts = [];
      const list = document.querySelector('[data-testid="messages"]');
      const observer = new MutationObserver(() => {
        for (const el of list.querySelectorAll('[data-testid="assistant-message"][data-status="streaming"]')) {
          window.__assistantTexts.push(el.querySelector('[data-testid="message-text"]').textContent);
        }
      });
      observer.observe(list, { subtree: true, childList: true, characterData: true, attributes: true });
    });
  }

  async function logIn(user) {
    await byTestId('login-user').fill(user);
    await byTestId('login-button').click();
    await page.locator('[data-testid="connection-status"][data-state="connected"]').waitFor();
    assert.match(await byTestId('connection-status').textContent(), new RegExp(user));
  }

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '150' } });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
    await servePageFromDisk(page.context());
    page.setDefaultTimeout(STEP_MS);
    page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`); });
    page.on('response', (res) => { if (res.status() >= 400) pageErrors.push(`HTTP ${res.status()} ${res.url()}`); });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('logs in and opens a new conversation', async () => {
    await page.goto(server.url);
    assert.equal(await page.title(), 'MARIE chat');
    await logIn('dana');
    await byTestId('new-conversation-button').click();
    await page.locator('[data-testid="message-input"]:enabled').waitFor();
    conversationId = (await byTestId('current-conversation').textContent()).trim();
    assert.match(conversationId, /^[A-Za-z0-9_.:-]{1,128}$/);
    assert.equal(await byTestId('conversation-id').inputValue(), conversationId);
  });

  it('streams the answer into the page word by word', async () => {
    await recordAssistantTexts();
    await byTestId('message-input').fill(MESSAGE);
    await byTestId('send-button').click();

    await page.locator('[data-testid="user-message"] [data-testid="message-text"]', { hasText: MESSAGE }).waitFor();
    await byTestId('cancel-button').waitFor({ state: 'visible' });
    await assistant('complete').waitFor();
    assert.equal(await assistant('complete').textContent(), MESSAGE);
    await byTestId('cancel-button').waitFor({ state: 'hidden' });
    assert.ok(await byTestId('send-button').isEnabled(), 'send is enabled again');

    const texts = await page.evaluate(() => window.__assistantTexts);
    const partial = texts.filter((t) => t.length > 0 && t.length < MESSAGE.length);
    assert.ok(partial.length > 0, `the answer was shown partially before it completed: ${JSON.stringify(texts)}`);
    for (const t of texts) assert.ok(MESSAGE.startsWith(t), `every partial text is a prefix of the answer: ${JSON.stringify(t)}`);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}chat.png` });
  });

  it('cancels a running answer with the Cancel button', async () => {
    await byTestId('message-input').fill(LONG);
    await byTestId('send-button').click();
    const streaming = assistant('streaming');
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid="assistant-message"][data-status="streaming"] [data-testid="message-text"]');
      return el && el.textContent.length > 0;
    });
    assert.ok(LONG.startsWith(await streaming.textContent()));
    await byTestId('cancel-button').click();
    await assistant('cancelled').waitFor();
    const text = await assistant('cancelled').textContent();
    assert.ok(text.length < LONG.length, `cancelled before the end: ${JSON.stringify(text)}`);
    assert.ok(LONG.startsWith(text), `what was streamed is kept: ${JSON.stringify(text)}`);
    await byTestId('cancel-button').waitFor({ state: 'hidden' });
  });

  it('shows the history after a reload', async () => {
    // The login survives the reload: the page connects again as dana by itself.
    await reloadChatPage(page, 'dana');
    assert.equal(await byTestId('conversation-id').inputValue(), conversationId, 'the conversation id is kept in the URL');
    await byTestId('join-button').click();
    await assistant('complete').first().waitFor();
    const users = await page.locator('[data-testid="user-message"] [data-testid="message-text"]').allTextContents();
    const answers = await page.locator('[data-testid="assistant-message"] [data-testid="message-text"]').allTextContents();
    assert.deepEqual(users, [MESSAGE, LONG]);
    assert.equal(answers.length, 2);
    assert.equal(answers[0], MESSAGE);
    assert.ok(LONG.startsWith(answers[1]) && answers[1].length > 0, 'the cancelled answer was stored');
    assert.deepEqual(pageErrors, [], 'no script errors in the page');
  });
});

// A member who joins while an answer streams gets the start of it from the stream log
// (`resume_stream`) and the rest live. Here the catch-up is made slower than the live tail
// (the joiner's resume_stream leaves 700 ms late), so live chunks arrive first, then the
// catch-up merged into one chunk (`first_seq` .. `seq`) that overlaps them. The page must
// keep the rule of docs/protocol.md section 3 and show the whole answer, in order, from its
// first word, while it still streams.
describe('a late joiner in headless Chromium', () => {
  const WORDS = Array.from({ length: 80 }, (_, i) => `w${i + 1}`);
  const ANSWER = WORDS.join(' ');
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '40' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  async function openPage(user, { slowResumeMs = 0 } = {}) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    await servePageFromDisk(context);
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.on('pageerror', (err) => pageErrors.push(`${user} pageerror: ${err.message}`));
    if (slowResumeMs > 0) {
      // Wraps the client class of marie-client.js (the global `Marie`) as it is defined, so
      // that the socket of this page's client sends resume_stream late. Nothing else of the
      // page changes.
      await page.addInitScript((delay) => {
        let wrapped;
        Object.defineProperty(window, 'Marie', {
          configurable: true,
          get: () => wrapped,
          set: (Marie) => {
            class SlowResumeClient extends Marie.MarieClient {
              constructor(options) {
                super(options);
                const socket = this.socket;
                const emit = socket.emit.bind(socket);
                socket.emit = (event, ...rest) => {
                  if (event !== 'resume_stream') return emit(event, ...rest);
                  window.__resumes = (window.__resumes || 0) + 1;
                  setTimeout(() => emit(event, ...rest), delay);
                  return socket;
                };
              }
            }
            wrapped = { ...Marie, MarieClient: SlowResumeClient };
          },
        });
      }, slowResumeMs);
    }
    await page.goto(server.url);
    await page.getByTestId('login-user').fill(user);
    await page.getByTestId('login-button').click();
    await page.locator('[data-testid="connection-status"][data-state="connected"]').waitFor();
    return page;
  }

  it('shows the reasoning of an answer, collapsed, live and from the history', async () => {
    const fay = await openPage('fay');
    await fay.getByTestId('new-conversation-button').click();
    await fay.locator('[data-testid="message-input"]:enabled').waitFor();
    const question = 'think: is the sky blue';
    await fay.getByTestId('message-input').fill(question);
    await fay.getByTestId('send-button').click();
    // The echo provider reasons first when a message starts with "think".
    const reasoning = fay.locator('[data-testid="assistant-message"][data-status="streaming"] [data-testid="reasoning"]');
    await reasoning.waitFor({ state: 'visible' });
    const done = '[data-testid="assistant-message"][data-status="complete"]';
    await fay.locator(done).waitFor({ timeout: 30_000 });
    assert.equal(await fay.locator(`${done} [data-testid="message-text"]`).textContent(), question);
    const thoughts = await fay.locator(`${done} [data-testid="reasoning-text"]`).textContent();
    assert.match(thoughts, /^The user wants to see me think\./);
    assert.equal(await fay.locator(`${done} details[data-testid="reasoning"]`).getAttribute('open'), null, 'collapsed');
    // The history keeps it.
    const conversationId = (await fay.getByTestId('current-conversation').textContent()).trim();
    await reloadChatPage(fay, 'fay');
    await fay.getByTestId('conversation-id').fill(conversationId);
    await fay.getByTestId('join-button').click();
    await fay.locator(done).waitFor();
    assert.equal(await fay.locator(`${done} [data-testid="reasoning-text"]`).textContent(), thoughts);
    assert.deepEqual(pageErrors, [], 'no script errors in the page');
  });

  it('shows the whole answer from its first word, never only the tail', async () => {
    const dana = await openPage('dana');
    await dana.getByTestId('new-conversation-button').click();
    await dana.locator('[data-testid="message-input"]:enabled').waitFor();
    const conversationId = (await dana.getByTestId('current-conversation').textContent()).trim();
    await dana.getByTestId('invite-user').fill('erin');
    await dana.getByTestId('invite-button').click();
    await dana.locator('[data-testid="members"]', { hasText: 'erin' }).waitFor().catch(() => {});

    const erin = await openPage('erin', { slowResumeMs: 700 });
    await erin.getByTestId('conversation-id').fill(conversationId);

    await dana.getByTestId('message-input').fill(ANSWER);
    await dana.getByTestId('send-button').click();
    // Join once a fifth of the answer is out.
    await dana.waitForFunction((n) => {
      const el = document.querySelector('[data-testid="assistant-message"][data-status="streaming"] [data-testid="message-text"]');
      return el && el.textContent.split(' ').length >= n;
    }, 16);
    await erin.evaluate(() => {
      window.__texts = [];
      const list = document.querySelector('[data-testid="messages"]');
      new MutationObserver(() => {
        for (const el of list.querySelectorAll('[data-testid="assistant-message"][data-status="streaming"] [data-testid="message-text"]')) {
          window.__texts.push(el.textContent);
        }
      }).observe(list, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await erin.getByTestId('join-button').click();

    const done = '[data-testid="assistant-message"][data-status="complete"] [data-testid="message-text"]';
    await erin.locator(done).waitFor({ timeout: 30_000 });
    assert.equal(await erin.locator(done).textContent(), ANSWER);
    assert.ok(await erin.evaluate(() => window.__resumes >= 1), 'the joiner resumed the stream');

    const texts = (await erin.evaluate(() => window.__texts)).filter((t) => t.length > 0);
    assert.ok(texts.length > 0, 'the joiner saw the answer stream');
    for (const t of texts) {
      assert.ok(ANSWER.startsWith(t), `every text shown while streaming is a prefix of the answer: ${JSON.stringify(t)}`);
    }
    // The catch-up was shown while the answer still streamed, not only by stream_end.
    assert.ok(texts.some((t) => t.split(' ').length >= 16 && t.length < ANSWER.length),
      `the start of the answer was shown before it ended: ${JSON.stringify(texts.slice(0, 5))}`);
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});
