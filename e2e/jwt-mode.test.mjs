// The chat example with MARIE_JWT_SECRET set: HS256 tokens only, no dev tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { io } from 'socket.io-client';
import { startChat, once, within } from './helpers.mjs';

const SECRET = 'e2e-test-secret-0123456789abcdef';
let server;

function b64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** Signs an HS256 JWT the way any JWT library does. */
function jwt(claims, secret = SECRET) {
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url(claims);
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const inOneHour = () => Math.floor(Date.now() / 1000) + 3600;

function connect(token) {
  return io(server.url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
}

before(async () => {
  server = await startChat({ env: { MARIE_JWT_SECRET: SECRET, MARIE_ECHO_DELAY_MS: '1' } });
});
after(async () => server?.stop());

test('reports jwt mode and refuses to mint dev tokens', async () => {
  const mode = await (await fetch(`${server.url}/api/auth/mode`)).json();
  assert.deepEqual(mode, { mode: 'jwt' });
  const res = await fetch(`${server.url}/api/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: 'mallory' }),
  });
  assert.equal(res.status, 404);
});

test('accepts a valid HS256 token: sub is the user, roles may hold admin', async () => {
  const socket = connect(jwt({ sub: 'erin', exp: inOneHour(), roles: ['admin'] }));
  try {
    const connected = await once(socket, 'connected', 5_000);
    assert.equal(connected.user_id, 'erin');
    const announcement = once(socket, 'announcement', 5_000);
    const ack = await within(socket.emitWithAck('system_announcement', { message: 'hi all' }), 5_000, 'announce ack');
    assert.equal(ack.status, 'ok');
    assert.equal((await announcement).message, 'hi all');
  } finally {
    socket.close();
  }
});

test('refuses bad tokens with connect_error "unauthorized"', async () => {
  const bad = [
    jwt({ sub: 'erin', exp: inOneHour() }, 'wrong-secret'),
    jwt({ sub: 'erin', exp: Math.floor(Date.now() / 1000) - 3600 }),
    jwt({ sub: 'erin' }),
    `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'erin', exp: inOneHour() })}.`,
    'garbage',
  ];
  for (const token of bad) {
    const socket = connect(token);
    try {
      const err = await once(socket, 'connect_error', 5_000);
      assert.equal(err.message, 'unauthorized', `token ${token}`);
    } finally {
      socket.close();
    }
  }
});
