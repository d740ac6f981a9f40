// The React hooks, rendered with react-dom/server against a real server's state.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createElement as h } from 'react';
import { renderToString } from 'react-dom/server';
import { waitFor } from '../dist/index.js';
import { useConnection, useConversation, useConversations } from '../dist/react.js';
import { convId, makeClient, startChat } from './helpers.mjs';

let server;
before(async () => {
  server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5' } });
});
after(async () => {
  await server?.stop();
});

function Chat({ client, id }) {
  const conn = useConnection(client);
  const c = useConversation(client, id, { join: false });
  const list = useConversations(client, { load: false });
  return h(
    'div',
    null,
    h('p', { id: 'who' }, `${conn.status}:${conn.userId}`),
    h('ul', null, c.messages.map((m) => h('li', { key: m.id, 'data-role': m.role }, m.content))),
    h('p', { id: 'list' }, list.items.map((i) => i.title).join('|')),
    h('p', { id: 'actions' }, typeof c.send === 'function' && typeof c.approve === 'function' ? 'bound' : 'missing'),
  );
}

test('useConversation, useConversations and useConnection read the stores', async (t) => {
  const client = await makeClient(server.url, 'alice');
  t.after(() => client.close());
  const id = convId('react');
  const conv = await client.join(id);
  await conv.send('hello react');
  await waitFor(conv, (s) => s.running === null && s.messages.length === 2, 10_000);
  await client.conversations.load();
  await waitFor(client.conversations, (l) => l.items.some((i) => i.id === id && i.title === 'hello react'), 5_000);
  const html = renderToString(h(Chat, { client, id }));
  assert.match(html, /<p id="who">connected:alice<\/p>/);
  assert.match(html, /<li data-role="user">hello react<\/li><li data-role="assistant">hello react<\/li>/);
  assert.match(html, /<p id="list">hello react<\/p>/);
  assert.match(html, /bound/);
  // Without a client: empty, and no throw.
  const empty = renderToString(h(Chat, { client: null, id: null }));
  assert.match(empty, /<p id="who">idle:null<\/p><ul><\/ul>/);
});
