// The chat page's conversations in headless Chromium (docs/protocol.md section 9): the list
// in the sidebar (order, live titles, search, rename, archive, delete), the model picker,
// the members panel, a login that survives a reload, answers in sanitised markdown, and a
// layout that never scrolls sideways.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, openChatPage, reloadChatPage, startChat } from './helpers.mjs';

// Each is longer than six words: its title is its first six words and "…".
const APPLES = 'apples grow on tall green trees every autumn';
const BANANAS = 'bananas ripen slowly in the warm sun';
const CHERRIES = 'cherries make a lovely summer pie for everyone';
const titleOf = (message) => `${message.split(' ').slice(0, 6).join(' ')}…`;

const DONE = '[data-testid="assistant-message"][data-status="complete"]';

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

const titles = (page) => page.getByTestId('conversation-title').allTextContents();
const item = (page, id) => page.locator(`[data-testid="conversation-item"][data-conversation-id="${id}"]`);
const currentId = async (page) => (await page.getByTestId('current-conversation').textContent()).trim();

async function titlesAre(page, expected, what) {
  await until(() => titles(page), (seen) => JSON.stringify(seen) === JSON.stringify(expected), what);
}

/** Starts a conversation on `page`, sends `message` and waits for its answer; resolves to its id. */
async function startConversation(page, message) {
  const before = await currentId(page).catch(() => '');
  await page.getByTestId('new-conversation-button').click();
  await page.getByTestId('current-conversation').filter({ hasNotText: before || '\u0000' }).waitFor();
  await page.locator('[data-testid="message-input"]:enabled').waitFor();
  const id = await currentId(page);
  if (message) await send(page, message);
  return id;
}

/** Sends `message` in the conversation shown and resolves to the text of its answer. */
async function send(page, message) {
  const answers = await page.locator(DONE).count();
  await page.getByTestId('message-input').fill(message);
  await page.getByTestId('send-button').click();
  const answer = page.locator(DONE).nth(answers);
  await answer.waitFor();
  return answer;
}

describe('the conversations page in headless Chromium', () => {
  let server;
  let browser;
  let erin;
  let finn;
  const ids = {};
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_MODELS: 'alpha,beta', MARIE_ECHO_DELAY_MS: '5' } });
    browser = await launchChromium();
    erin = await openChatPage(browser, server.url, 'erin', pageErrors);
    finn = await openChatPage(browser, server.url, 'finn', pageErrors);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('lists the conversations most recently active first, titled as they are named, and searches them', async () => {
    assert.deepEqual(await titles(erin), [], 'nothing yet');
    assert.match(await erin.getByTestId('conversation-list-note').textContent(), /No conversations yet/);

    // A new conversation enters the list at once, untitled; its first answer names it, live.
    ids.apples = await startConversation(erin);
    await titlesAre(erin, ['New conversation'], 'the new conversation, untitled');
    assert.equal(await item(erin, ids.apples).getByTestId('conversation-preview').textContent(), 'No messages yet');
    await send(erin, APPLES);
    await titlesAre(erin, [titleOf(APPLES)], 'named after its first answer');
    assert.equal(await item(erin, ids.apples).getByTestId('conversation-preview').textContent(), APPLES, 'the answer is the preview');

    ids.bananas = await startConversation(erin, BANANAS);
    ids.cherries = await startConversation(erin, CHERRIES);
    await titlesAre(erin, [titleOf(CHERRIES), titleOf(BANANAS), titleOf(APPLES)], 'most recent first');
    assert.equal(await erin.locator('[data-testid="conversation-item"].active').getAttribute('data-conversation-id'), ids.cherries,
      'the one shown is marked');

    // A new message moves its conversation to the top.
    await erin.getByTestId('conversation-open').filter({ hasText: titleOf(APPLES) }).click();
    await erin.getByTestId('current-conversation').filter({ hasText: ids.apples }).waitFor();
    await erin.locator(DONE).first().waitFor();
    await send(erin, 'and pears');
    await titlesAre(erin, [titleOf(APPLES), titleOf(CHERRIES), titleOf(BANANAS)], 'the conversation with the newest message first');
    assert.equal(await item(erin, ids.apples).getByTestId('conversation-preview').textContent(), 'and pears');

    // The search asks the server (titles, any case), after a pause in the typing.
    await erin.getByTestId('conversation-search').fill('BANANA');
    await titlesAre(erin, [titleOf(BANANAS)], 'searching "BANANA"');
    await erin.getByTestId('conversation-search').fill('zucchini');
    await titlesAre(erin, [], 'searching for nothing there');
    assert.match(await erin.getByTestId('conversation-list-note').textContent(), /No conversation matches the search/);
    await erin.getByTestId('conversation-search').fill('');
    await titlesAre(erin, [titleOf(APPLES), titleOf(CHERRIES), titleOf(BANANAS)], 'the search cleared');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('shows a shared conversation in the other member\'s list, and a rename there without a reload', async () => {
    // Erin (the conversation shown is apples) invites finn; the members panel shows the roles.
    await erin.getByTestId('invite-user').fill('finn');
    await erin.getByTestId('invite-button').click();
    await erin.locator('[data-testid="member"][data-user-id="finn"][data-role="member"]').waitFor();
    assert.equal(await erin.locator('[data-testid="member"][data-user-id="erin"]').getAttribute('data-role'), 'owner');

    // An invitation is not announced: finn's list shows it once it is read again.
    await finn.getByTestId('conversations-refresh').click();
    await titlesAre(finn, [titleOf(APPLES)], 'finn\'s list after the invitation');
    assert.equal(await item(finn, ids.apples).getByTestId('conversation-delete').isHidden(), true, 'only its owner may delete it');

    // Escape cancels a rename.
    await item(erin, ids.bananas).getByTestId('conversation-rename').click();
    await item(erin, ids.bananas).getByTestId('conversation-rename-input').fill('not this');
    await item(erin, ids.bananas).getByTestId('conversation-rename-input').press('Escape');
    await item(erin, ids.bananas).getByTestId('conversation-rename-input').waitFor({ state: 'detached' });
    assert.equal(await item(erin, ids.bananas).getByTestId('conversation-title').textContent(), titleOf(BANANAS));

    // Enter saves it: both lists show it, moved to the top, and so does erin's heading.
    await item(erin, ids.apples).getByTestId('conversation-rename').click();
    const input = item(erin, ids.apples).getByTestId('conversation-rename-input');
    assert.equal(await input.inputValue(), titleOf(APPLES), 'the field starts from the title');
    await input.fill('Orchard notes');
    await input.press('Enter');
    await titlesAre(erin, ['Orchard notes', titleOf(CHERRIES), titleOf(BANANAS)], 'erin\'s list after the rename');
    await erin.getByTestId('conversation-heading').filter({ hasText: 'Orchard notes' }).waitFor();
    await titlesAre(finn, ['Orchard notes'], 'finn\'s list after erin\'s rename, without a reload');
    assert.equal(await titles(erin).then((t) => t.includes(titleOf(BANANAS))), true, 'the cancelled rename changed nothing');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('archives and unarchives a conversation', async () => {
    await item(erin, ids.bananas).getByTestId('conversation-archive').click();
    await titlesAre(erin, ['Orchard notes', titleOf(CHERRIES)], 'the archived one leaves the list');
    await erin.getByTestId('show-archived').check();
    await titlesAre(erin, [titleOf(BANANAS)], 'the archive');
    await item(erin, ids.bananas).getByTestId('conversation-unarchive').click();
    await titlesAre(erin, [], 'the archive, emptied');
    await erin.getByTestId('show-archived').uncheck();
    await titlesAre(erin, ['Orchard notes', titleOf(CHERRIES), titleOf(BANANAS)], 'back in the list');
  });

  it('deletes after a confirmation in the page: gone from both lists, and finn, who had it open, is told', async () => {
    await finn.getByTestId('conversation-open').click();
    await finn.getByTestId('current-conversation').filter({ hasText: ids.apples }).waitFor();
    await finn.locator(DONE).nth(1).waitFor();
    assert.equal(await finn.getByTestId('leave-conversation').isVisible(), true, 'a member may leave');
    assert.equal(await finn.getByTestId('delete-conversation').isHidden(), true, 'a member may not delete');

    const dialog = erin.getByTestId('confirm-dialog');
    await item(erin, ids.apples).getByTestId('conversation-delete').click();
    await dialog.waitFor();
    assert.match(await erin.getByTestId('confirm-text').textContent(), /Delete “Orchard notes” for everyone\?/);
    await erin.getByTestId('confirm-cancel').click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await item(erin, ids.apples).count(), 1, 'Cancel deletes nothing');

    await item(erin, ids.apples).getByTestId('conversation-delete').click();
    await erin.getByTestId('confirm-ok').click();
    await titlesAre(erin, [titleOf(CHERRIES), titleOf(BANANAS)], 'erin\'s list after the delete');
    await titlesAre(finn, [], 'finn\'s list after erin\'s delete');
    const told = finn.locator('[data-testid="system-line"][data-kind="closed"]');
    await told.waitFor();
    assert.equal(await told.textContent(), 'This conversation was deleted by erin.');
    assert.equal(await finn.getByTestId('message-input').isDisabled(), true, 'nothing more can be sent there');
    assert.equal(await finn.locator('[data-testid="user-message"], [data-testid="assistant-message"]').count(), 0, 'its messages are gone');
    assert.equal(await finn.getByTestId('current-conversation').isHidden(), true);
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('lists the members with their roles: the owner removes one, a member leaves', async () => {
    // Cherries: erin invites finn, who opens it and sees no Remove buttons.
    await item(erin, ids.cherries).getByTestId('conversation-open').click();
    await erin.getByTestId('current-conversation').filter({ hasText: ids.cherries }).waitFor();
    await erin.getByTestId('invite-user').fill('finn');
    await erin.getByTestId('invite-button').click();
    await erin.locator('[data-testid="member"][data-user-id="finn"]').getByTestId('member-remove').waitFor();
    await finn.getByTestId('conversations-refresh').click();
    await item(finn, ids.cherries).getByTestId('conversation-open').click();
    await finn.locator('[data-testid="member"][data-user-id="erin"][data-role="owner"]').waitFor();
    assert.equal(await finn.getByTestId('member-remove').count(), 0, 'a member removes nobody');

    // Finn leaves, once he confirmed: his list and his chat drop it; erin's members panel too.
    await finn.getByTestId('leave-conversation').click();
    await finn.getByTestId('confirm-ok').click();
    await finn.locator('[data-testid="system-line"][data-kind="closed"]', { hasText: 'You left this conversation.' }).waitFor();
    await titlesAre(finn, [], 'finn\'s list after leaving');
    await erin.locator('[data-testid="member"][data-user-id="finn"]').waitFor({ state: 'detached' });

    // Bananas: erin invites finn again and removes him; his list drops it at once.
    await item(erin, ids.bananas).getByTestId('conversation-open').click();
    await erin.getByTestId('current-conversation').filter({ hasText: ids.bananas }).waitFor();
    await erin.getByTestId('invite-user').fill('finn');
    await erin.getByTestId('invite-button').click();
    await finn.getByTestId('conversations-refresh').click();
    await titlesAre(finn, [titleOf(BANANAS)], 'finn\'s list, invited to bananas');
    await erin.locator('[data-testid="member"][data-user-id="finn"]').getByTestId('member-remove').click();
    await erin.getByTestId('confirm-ok').click();
    await erin.locator('[data-testid="member"][data-user-id="finn"]').waitFor({ state: 'detached' });
    await titlesAre(finn, [], 'finn\'s list, removed from bananas');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('answers with the model picked for the conversation', async () => {
    ids.models = await startConversation(erin);
    const picker = erin.getByTestId('model-select');
    await picker.waitFor();
    assert.deepEqual(await picker.locator('option').allTextContents(), ['alpha (default)', 'beta']);
    assert.equal(await picker.inputValue(), 'alpha');
    await picker.selectOption('beta');
    await erin.locator('[data-testid="model-select"][data-model="beta"]:enabled').waitFor();
    // The echo provider names the model it was asked for when asked exactly "which model".
    const answer = await send(erin, 'Which model?');
    assert.equal(await answer.getByTestId('message-text').textContent(), 'This conversation uses the model beta.');
    // The app lets members give the conversation instructions, up to its limit.
    await erin.getByTestId('system-prompt-box').locator('summary').click();
    const prompt = erin.getByTestId('system-prompt-input');
    assert.equal(await prompt.getAttribute('maxlength'), '4000');
    await prompt.fill('Answer briefly.');
    await erin.getByTestId('system-prompt-save').click();
    await erin.getByTestId('system-prompt-status').filter({ hasText: 'Saved' }).waitFor();
    // Back to the default model.
    await picker.selectOption('alpha');
    await erin.locator('[data-testid="model-select"][data-model="alpha"]:enabled').waitFor();
    const again = await send(erin, 'which model');
    assert.equal(await again.getByTestId('message-text').textContent(), 'This conversation uses the model alpha.');
    await picker.selectOption('beta');
    await erin.locator('[data-testid="model-select"][data-model="beta"]:enabled').waitFor();
  });

  it('shows answers as sanitised markdown, with a Copy button on code blocks', async () => {
    await erin.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    const markdown = '**bold** and `code`\n\n```js\nlet answer = 6 * 7;\n```\n\nsee [the docs](https://example.com/docs) or [this](javascript:window.__pwned=3)';
    const answer = await send(erin, markdown);
    const text = answer.getByTestId('message-text');
    assert.equal(await text.locator('strong').textContent(), 'bold');
    assert.equal(await text.locator('p > code').textContent(), 'code');
    assert.equal(await text.locator('pre > code').textContent(), 'let answer = 6 * 7;\n');
    const link = text.locator('a[href="https://example.com/docs"]');
    assert.equal(await link.getAttribute('target'), '_blank');
    assert.match(await link.getAttribute('rel'), /noopener/);
    assert.equal(await text.locator('a[href^="javascript"]').count(), 0, 'no javascript: link');
    // Copy: the code, without its last line break, into the clipboard.
    const copy = text.getByTestId('copy-code');
    assert.equal(await copy.count(), 1);
    await copy.click();
    await text.locator('[data-testid="copy-code"][data-state="copied"]').waitFor();
    assert.equal(await erin.evaluate(() => navigator.clipboard.readText()), 'let answer = 6 * 7;');
    // The user's own message stays plain text.
    assert.equal(await erin.locator('[data-testid="user-message"] [data-testid="message-text"]').last().textContent(), markdown);

    // Raw HTML in an answer is shown as text: nothing of it runs or loads.
    const attack = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> and <b onmouseover="window.__pwned=4">hover</b>';
    const shown = await send(erin, attack);
    assert.equal(await shown.getByTestId('message-text').textContent(), attack, 'shown as the text it is');
    assert.equal(await erin.evaluate(() => window.__pwned), undefined);
    const list = erin.getByTestId('messages');
    assert.equal(await list.locator('script').count(), 0, 'no script element');
    assert.equal(await list.locator('img').count(), 0, 'no image element');
    assert.equal(await list.locator('[onerror], [onmouseover], b').count(), 0, 'no element of the answer\'s HTML');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });

  it('never scrolls sideways, at 1280 px and at 390 px wide', async () => {
    const overflow = () => erin.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
    }));
    const fits = async (what) => {
      const { scroll, client } = await overflow();
      assert.ok(scroll <= client, `${what}: ${scroll} px wide in ${client} px`);
    };
    await erin.setViewportSize({ width: 1280, height: 800 });
    await erin.getByTestId('conversation-list').waitFor();
    assert.equal(await erin.getByTestId('sidebar-toggle').isHidden(), true, 'no drawer on a wide screen');
    await fits('1280 px, a conversation open');

    await erin.setViewportSize({ width: 390, height: 844 });
    await erin.getByTestId('sidebar-toggle').waitFor();
    await erin.getByTestId('conversation-list').waitFor({ state: 'hidden' });
    await fits('390 px, the conversation');
    assert.equal(await erin.getByTestId('message-input').isVisible(), true);
    await erin.getByTestId('sidebar-toggle').click();
    await erin.getByTestId('conversation-list').waitFor();
    await fits('390 px, the sidebar open');
    // A conversation chosen in the drawer closes it.
    await item(erin, ids.cherries).getByTestId('conversation-open').click();
    await erin.getByTestId('current-conversation').filter({ hasText: ids.cherries }).waitFor({ state: 'attached' });
    await erin.getByTestId('conversation-list').waitFor({ state: 'hidden' });
    await erin.locator(DONE).first().waitFor();
    await fits('390 px, another conversation');
    await erin.setViewportSize({ width: 1100, height: 720 });
  });

  it('keeps the login over a reload, and forgets it on Log out', async () => {
    await item(erin, ids.models).getByTestId('conversation-open').click();
    await erin.getByTestId('current-conversation').filter({ hasText: ids.models }).waitFor();
    await reloadChatPage(erin, 'erin');
    assert.equal(await erin.getByTestId('session-user').textContent(), 'erin');
    // The conversation of the URL is open again, with its history and its model.
    await erin.getByTestId('current-conversation').filter({ hasText: ids.models }).waitFor();
    await erin.locator(DONE).first().waitFor();
    await erin.locator('[data-testid="model-select"][data-model="beta"]').waitFor();
    const listed = await until(() => titles(erin), (t) => t.length === 3, 'the list after the reload');
    assert.equal(listed[0], 'Which model?', 'the conversation used last comes first, with its title');
    assert.ok(listed.includes(titleOf(CHERRIES)) && listed.includes(titleOf(BANANAS)), JSON.stringify(listed));

    await erin.getByTestId('logout-button').click();
    await erin.getByTestId('login-user').waitFor();
    await erin.reload();
    await erin.getByTestId('login-user').waitFor();
    assert.equal(await erin.getByTestId('connection-status').getAttribute('data-state'), 'disconnected');
    assert.equal(await erin.getByTestId('conversation-list').isHidden(), true);
    assert.equal(await erin.evaluate(() => sessionStorage.length), 0, 'nothing of the login is kept');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});
