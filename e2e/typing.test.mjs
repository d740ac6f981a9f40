// "bob is typing…" on the chat page in headless Chromium: typing in one page shows in the
// other member's page, and goes away when the message is sent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, openChatPage, startChat } from './helpers.mjs';

describe('typing indicator in headless Chromium', () => {
  let server;
  let browser;
  const pageErrors = [];

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
  });

  it('shows who is typing to the others, and hides it when they send', async () => {
    const kim = await openChatPage(browser, server.url, 'kim', pageErrors);
    await kim.getByTestId('new-conversation-button').click();
    await kim.locator('[data-testid="message-input"]:enabled').waitFor();
    const conversation = (await kim.getByTestId('current-conversation').textContent()).trim();
    await kim.getByTestId('invite-user').fill('lee');
    await kim.getByTestId('invite-button').click();
    const lee = await openChatPage(browser, server.url, 'lee', pageErrors);
    await lee.getByTestId('conversation-id').fill(conversation);
    await lee.getByTestId('join-button').click();
    await lee.locator('[data-testid="message-input"]:enabled').waitFor();

    await lee.getByTestId('message-input').pressSequentially('hello the', { delay: 20 });
    const indicator = kim.getByTestId('typing-indicator');
    await indicator.waitFor({ state: 'visible' });
    assert.equal(await indicator.textContent(), 'lee is typing…');
    assert.equal(await lee.getByTestId('typing-indicator').isHidden(), true, 'not shown to the typer');

    await lee.getByTestId('message-input').press('Enter');
    await indicator.waitFor({ state: 'hidden' });
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  });
});
