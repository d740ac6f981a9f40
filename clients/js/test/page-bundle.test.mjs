// The chat page's bundle (examples/chat/static/marie-client.js) is committed, because the Rust
// example embeds it: it must be exactly what `npm run build:page` makes from this source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import vm from 'node:vm';
import { buildPage, PAGE_BUNDLE } from '../scripts/build-page.mjs';

test('the committed page bundle is the fresh build of this source (run `npm run build:page` after a change)', async () => {
  const fresh = await buildPage();
  const committed = await readFile(PAGE_BUNDLE, 'utf8').catch(() => '');
  assert.ok(committed, `${PAGE_BUNDLE} is missing: run npm run build:page`);
  assert.ok(committed === fresh, `${PAGE_BUNDLE} is stale: run npm run build:page (and commit it)`);
  assert.ok(Buffer.byteLength(fresh) < 120 * 1024, `the bundle is ${Buffer.byteLength(fresh)} bytes`);
});

test('the page bundle defines the global Marie with the client, the stores and socket.io', async () => {
  const code = await readFile(PAGE_BUNDLE, 'utf8');
  const context = vm.createContext({ setTimeout, clearTimeout, queueMicrotask, console, TextEncoder, TextDecoder, crypto: globalThis.crypto });
  vm.runInContext(code, context);
  const Marie = context.Marie;
  for (const name of ['MarieClient', 'MarieError', 'Conversation', 'ConversationList', 'AnswerTracker', 'UIChunkMapper', 'waitFor', 'io']) {
    assert.equal(typeof Marie[name], 'function', `Marie.${name}`);
  }
  // The reducer works in there too.
  const t = new Marie.AnswerTracker('c', 's');
  assert.equal(t.offer({ event: 'stream_chunk', data: { conversation_id: 'c', stream_id: 's', seq: 2, content: 'b' } }), 'gap');
  assert.equal(t.offer({ event: 'stream_chunk', data: { conversation_id: 'c', stream_id: 's', seq: 1, content: 'a' } }), 'applied');
  assert.equal(t.view().text, 'a');
});
