// Files (POST /api/chat/files, GET /api/chat/files/{id}, send_message.attachments): uploads
// and downloads with fetch next to the official socket.io-client, the refusals each with its
// reason and nothing stored, and the chat page's attach button, strip and thumbnails in two
// members' pages of headless Chromium.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { io } from 'socket.io-client';
import { Recorder, devToken, launchChromium, openChatPage, reloadChatPage, startChat } from './helpers.mjs';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));

// ------------------------------------------------------------------ test files

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k += 1) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A valid RGB PNG of `width` x `height` pixels, a gradient (so that any decoder shows it). */
function makePng(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: RGB
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3); // filter byte 0, then pixels
    for (let x = 0; x < width; x += 1) {
      row[1 + x * 3] = (x * 255) / Math.max(1, width - 1);
      row[2 + x * 3] = (y * 255) / Math.max(1, height - 1);
      row[3 + x * 3] = 160;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(Buffer.concat(rows))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const PNG = makePng(24, 16);
const TEXT = Buffer.from('Notes for the meeting:\n- files work\n- héllo, UTF-8\n', 'utf8');
const PDF = Buffer.from('%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n', 'latin1');
const ZIP = Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x21, 0x00]);

/** What the echo provider adds for a file it was given. */
const echoed = (name, type, size) => `[attached: ${name} (${type}, ${size} bytes)]`;

// ------------------------------------------------------------------ HTTP helpers

/** POST /api/chat/files; resolves to { status, body } (body parsed when JSON). */
async function upload(baseUrl, token, conversationId, { name, type, bytes }) {
  const form = new FormData();
  if (conversationId !== null) form.append('conversation_id', conversationId);
  form.append('file', new Blob([bytes], type ? { type } : {}), name);
  const res = await fetch(new URL('/api/chat/files', baseUrl), {
    method: 'POST',
    headers: token ? { authorization: `Bearer ${token}` } : {},
    body: form,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}

/**
 * POST /api/chat/files with the multipart body built here and sent in one piece. The server
 * reads what is left of a refused upload's body before it answers, up to the route's limit
 * (the file limit and 64 KiB); past that it answers and closes, and a client that writes
 * its body part by part, as fetch does with FormData, may get EPIPE instead of the answer.
 */
async function uploadInOnePiece(baseUrl, token, conversationId, { name, type, bytes }) {
  const boundary = `marie-e2e-${randomBytes(8).toString('hex')}`;
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="conversation_id"\r\n\r\n${conversationId}\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: ${type}\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const res = await fetch(new URL('/api/chat/files', baseUrl), {
    method: 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': `multipart/form-data; boundary=${boundary}` },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.json() };
}

/** GET /api/chat/files/{id}; resolves to { status, headers, bytes }. */
async function download(baseUrl, token, fileId) {
  const res = await fetch(new URL(`/api/chat/files/${encodeURIComponent(fileId)}`, baseUrl), {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

// ------------------------------------------------------------------ socket.io-client

/** Alice, bob and carol over socket.io-client, with their tokens; `ack`, `ended` as in branches.test.mjs. */
function socketClients(server) {
  const sockets = [];
  const clients = {};
  return {
    clients,
    async connectAs(user) {
      const { body } = await devToken(server().url, user);
      const socket = io(server().url, { auth: { token: body.token }, reconnection: false, forceNew: true, autoConnect: false });
      sockets.push(socket);
      const rec = new Recorder(socket);
      socket.connect();
      await rec.waitFor('connected');
      clients[user] = { socket, rec, token: body.token };
    },
    ack: (user, event, payload) => clients[user].socket.timeout(5_000).emitWithAck(event, payload),
    ended: (user, streamId) => clients[user].rec.waitFor('stream_end', (d) => d.stream_id === streamId, { ms: 10_000 }),
    close() { for (const socket of sockets) socket.disconnect(); },
  };
}

describe('files over HTTP and socket.io-client', () => {
  const MAX = 64 * 1024;       // MARIE_MAX_FILE_BYTES
  const QUOTA = 4 * MAX;       // MARIE_FILE_QUOTA_BYTES
  let server;
  const c = socketClients(() => server);
  const { clients, ack, ended } = c;
  const shared = `files-${randomBytes(6).toString('hex')}`;  // alice and bob
  const alicesOwn = `files-own-${randomBytes(6).toString('hex')}`; // alice only
  let png;
  let text;

  before(async () => {
    server = await startChat({ env: { MARIE_ECHO_DELAY_MS: '5', MARIE_MAX_FILE_BYTES: String(MAX), MARIE_FILE_QUOTA_BYTES: String(QUOTA) } });
    for (const user of ['alice', 'bob', 'carol']) await c.connectAs(user);
    assert.equal((await ack('alice', 'join_conversation', { conversation_id: shared })).status, 'ok');
    assert.equal((await ack('alice', 'invite', { conversation_id: shared, user_id: 'bob' })).status, 'ok');
    assert.equal((await ack('bob', 'join_conversation', { conversation_id: shared })).status, 'ok');
    assert.equal((await ack('alice', 'join_conversation', { conversation_id: alicesOwn })).status, 'ok');
  });

  after(async () => {
    c.close();
    if (server) await server.stop();
  });

  it('uploads a PNG and a text file, sends them, the echo names both, history keeps them, GET gives the bytes back', async () => {
    const up = await upload(server.url, clients.alice.token, shared, { name: 'dot.png', type: 'image/png', bytes: PNG });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    png = up.body;
    assert.match(png.file_id, /^[A-Za-z0-9_-]+$/);
    assert.equal(png.user_id, 'alice');
    assert.equal(png.conversation_id, shared);
    assert.equal(png.name, 'dot.png');
    assert.equal(png.content_type, 'image/png');
    assert.equal(png.size, PNG.length);
    assert.equal(typeof png.created_at, 'number');

    // A Markdown file declared as such is text: the bytes decide.
    const upText = await upload(server.url, clients.alice.token, shared, { name: 'notes.md', type: 'text/markdown', bytes: TEXT });
    assert.equal(upText.status, 201, JSON.stringify(upText.body));
    text = upText.body;
    assert.equal(text.content_type, 'text/plain');
    assert.equal(text.size, TEXT.length);
    assert.notEqual(text.file_id, png.file_id);

    const sent = await ack('alice', 'send_message', { conversation_id: shared, message: 'two files for you', attachments: [png.file_id, text.file_id] });
    assert.equal(sent.status, 'ok', JSON.stringify(sent));
    for (const user of ['alice', 'bob']) {
      const end = await ended(user, sent.stream_id);
      assert.equal(end.status, 'complete');
      assert.ok(end.full_content.startsWith('two files for you'), end.full_content);
      assert.ok(end.full_content.includes(echoed('dot.png', 'image/png', PNG.length)), `the echo names the image: ${end.full_content}`);
      assert.ok(end.full_content.includes(echoed('notes.md', 'text/plain', TEXT.length)), `the echo names the text: ${end.full_content}`);
    }

    const history = await ack('bob', 'get_history', { conversation_id: shared });
    assert.equal(history.status, 'ok');
    const [question, answer] = history.messages;
    assert.equal(question.message_id, sent.message_id);
    assert.deepEqual(question.attachments, [
      { file_id: png.file_id, name: 'dot.png', content_type: 'image/png', size: PNG.length },
      { file_id: text.file_id, name: 'notes.md', content_type: 'text/plain', size: TEXT.length },
    ]);
    assert.equal(answer.role, 'assistant');
    assert.equal(answer.attachments, undefined, 'no files: no field');

    // Every member reads the exact bytes back, with the stored type.
    const image = await download(server.url, clients.bob.token, png.file_id);
    assert.equal(image.status, 200);
    assert.ok(image.bytes.equals(PNG), 'the PNG comes back byte for byte');
    assert.equal(image.headers.get('content-type'), 'image/png');
    assert.equal(image.headers.get('x-content-type-options'), 'nosniff');
    assert.match(image.headers.get('content-disposition'), /^inline;/);
    const notes = await download(server.url, clients.alice.token, text.file_id);
    assert.equal(notes.status, 200);
    assert.ok(notes.bytes.equals(TEXT), 'the text comes back byte for byte');
    assert.equal(notes.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.match(notes.headers.get('content-disposition'), /^attachment;/);
  });

  it('refuses uploads with a clear reason, and stores none of them', async () => {
    const { token } = clients.carol;
    const carols = `files-carol-${randomBytes(6).toString('hex')}`;
    assert.equal((await ack('carol', 'join_conversation', { conversation_id: carols })).status, 'ok');
    const refused = async (file, status, code, message, conversation = carols, who = token, send = upload) => {
      const res = await send(server.url, who, conversation, file);
      assert.equal(res.status, status, `${file.name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, code, `${file.name}: ${JSON.stringify(res.body)}`);
      assert.equal(typeof res.body.message, 'string');
      if (message) assert.match(res.body.message, message, file.name);
      assert.equal(res.body.file_id, undefined);
    };

    // Written part by part (FormData): the server reads the rest before it answers.
    await refused({ name: 'big.txt', type: 'text/plain', bytes: Buffer.alloc(MAX + 1, 'a') }, 413, 'payload_too_large', /larger than 65536 bytes/, carols, token);
    await refused({ name: 'huge.txt', type: 'text/plain', bytes: Buffer.alloc(4 * MAX, 'a') }, 413, 'payload_too_large', /larger than/, carols, token, uploadInOnePiece);
    await refused({ name: 'archive.zip', type: 'application/zip', bytes: ZIP }, 415, 'unsupported_file_type', /application\/zip/);
    await refused({ name: 'noise.bin', bytes: Buffer.from([0x00, 0x01, 0x02, 0xff, 0xfe, 0x00, 0x9c]) }, 415, 'unsupported_file_type');
    await refused({ name: 'report.png', type: 'image/png', bytes: PDF }, 415, 'unsupported_file_type', /application\/pdf/);
    await refused({ name: 'empty.txt', type: 'text/plain', bytes: Buffer.alloc(0) }, 400, 'bad_request');
    await refused({ name: 'notes.txt', type: 'text/plain', bytes: TEXT }, 401, 'unauthorized', null, carols, null);
    await refused({ name: 'notes.txt', type: 'text/plain', bytes: TEXT }, 400, 'bad_request', /conversation_id/, null);
    // A conversation carol, or bob, may not enter (alice's own).
    await refused({ name: 'notes.txt', type: 'text/plain', bytes: TEXT }, 403, 'forbidden', null, alicesOwn);
    await refused({ name: 'notes.txt', type: 'text/plain', bytes: TEXT }, 403, 'forbidden', null, alicesOwn, clients.bob.token);

    // Nothing was stored: carol's quota takes exactly four files of the largest size, and
    // then not one byte more.
    for (let i = 0; i < 4; i += 1) {
      const ok = await upload(server.url, token, carols, { name: `full-${i}.txt`, type: 'text/plain', bytes: Buffer.alloc(MAX, 'b') });
      assert.equal(ok.status, 201, `file ${i} within the quota: ${JSON.stringify(ok.body)}`);
    }
    await refused({ name: 'one-more.txt', type: 'text/plain', bytes: Buffer.from('x') }, 413, 'quota_exceeded');

    // And the PDF is fine when it says what it is.
    const pdf = await upload(server.url, clients.alice.token, shared, { name: 'report.pdf', type: 'application/pdf', bytes: PDF });
    assert.equal(pdf.status, 201, JSON.stringify(pdf.body));
    assert.equal(pdf.body.content_type, 'application/pdf');
  });

  it('refuses sends that attach files that are not the sender\'s to attach, and nothing starts', async () => {
    const before = await ack('bob', 'get_history', { conversation_id: shared });
    const mark = clients.bob.rec.mark();
    const alicesFile = (await upload(server.url, clients.alice.token, shared, { name: 'mine.txt', type: 'text/plain', bytes: TEXT })).body;
    const elsewhere = (await upload(server.url, clients.alice.token, alicesOwn, { name: 'private.png', type: 'image/png', bytes: PNG })).body;
    const bobsFile = (await upload(server.url, clients.bob.token, shared, { name: 'bob.txt', type: 'text/plain', bytes: TEXT })).body;
    assert.ok(alicesFile.file_id && elsewhere.file_id && bobsFile.file_id);

    const refusedSend = async (user, attachments, code, conversation = shared) => {
      const from = clients[user].rec.mark();
      const res = await ack(user, 'send_message', { conversation_id: conversation, message: 'with files', attachments });
      assert.equal(res.status, 'error', JSON.stringify(res));
      assert.equal(res.code, code, JSON.stringify(res));
      // The `error` event says it too.
      const error = await clients[user].rec.waitFor('error', (d) => d.event === 'send_message', { from });
      assert.equal(error.code, code);
    };
    // Alice's file, in a conversation both are in: bob may see it, not send it.
    await refusedSend('bob', [alicesFile.file_id], 'forbidden');
    // A file of a conversation bob is not in does not exist for him.
    await refusedSend('bob', [elsewhere.file_id], 'not_found');
    await refusedSend('bob', ['0123456789abcdef0123456789abcdef'], 'not_found');
    // Alice's own file of her other conversation: upload it here instead.
    await refusedSend('alice', [elsewhere.file_id], 'bad_request');
    await refusedSend('bob', [bobsFile.file_id, bobsFile.file_id], 'bad_request');
    await refusedSend('bob', Array(9).fill(bobsFile.file_id), 'bad_request');

    const afterwards = await ack('bob', 'get_history', { conversation_id: shared });
    assert.deepEqual(afterwards.messages.map((m) => m.message_id), before.messages.map((m) => m.message_id), 'no message was stored');
    assert.deepEqual(clients.bob.rec.events.slice(mark).filter((r) => r.event === 'stream_start'), [], 'no answer started');

    // Reading: a member reads any file of the conversation; to anyone else it does not exist.
    assert.equal((await download(server.url, clients.bob.token, alicesFile.file_id)).status, 200);
    const hidden = await download(server.url, clients.bob.token, elsewhere.file_id);
    assert.equal(hidden.status, 404);
    assert.equal(JSON.parse(hidden.bytes.toString()).code, 'not_found');
    assert.equal((await download(server.url, clients.carol.token, png.file_id)).status, 404);
    assert.equal((await download(server.url, null, png.file_id)).status, 401);
    assert.equal((await download(server.url, clients.alice.token, elsewhere.file_id)).status, 200);
  });
});

// ------------------------------------------------------------------ the page

describe('the page attaches files in headless Chromium', () => {
  const PICTURE = makePng(40, 30);
  const STRIP = '[data-testid="pending-attachment"]';
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

  /** Whether every image of `selector` in `page` has loaded and shows pixels. */
  const imagesShown = (page, selector, count) => page.waitForFunction(([sel, n]) => {
    const images = [...document.querySelectorAll(sel)];
    return images.length === n && images.every((img) => img.complete && img.naturalWidth > 0);
  }, [selector, count]);

  it('uploads from the file input, shows the strip, sends, and both members see the thumbnail', async () => {
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

    // The paper clip is the label of the file input: one control, named "Attach files".
    const attach = ann.getByRole('button', { name: 'Attach files' });
    assert.equal(await attach.isEnabled(), true);
    assert.equal(await attach.getAttribute('type'), 'file');
    assert.equal(await ann.getByLabel('Attach files').getAttribute('id'), 'file-input');

    // Uploads are held until the test lets them go: meanwhile the files are pending and
    // Send waits for them.
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    const arrived = [];
    let onArrival;
    await ann.route('**/api/chat/files', async (route) => {
      arrived.push(route.request().method());
      if (onArrival) onArrival();
      await held;
      await route.continue();
    });
    const bothArrived = new Promise((resolve) => { onArrival = () => { if (arrived.length === 2) resolve(); }; });
    await ann.getByTestId('file-input').setInputFiles([
      { name: 'pixel.png', mimeType: 'image/png', buffer: PICTURE },
      { name: 'archive.zip', mimeType: 'application/zip', buffer: ZIP },
    ]);
    await bothArrived;
    assert.deepEqual(arrived, ['POST', 'POST']);
    await ann.locator(`${STRIP}[data-state="uploading"]`).nth(1).waitFor();
    assert.equal(await ann.locator(`${STRIP}[data-state="uploading"] progress`).count(), 2, 'a progress bar each');
    await ann.getByTestId('message-input').fill('a picture for you');
    assert.equal(await ann.getByTestId('send-button').isDisabled(), true, 'Send waits for the uploads');
    // The preview of the local file is there before the upload ends.
    await imagesShown(ann, '[data-testid="pending-attachment-preview"]', 1);
    assert.equal(await ann.getByTestId('pending-attachment-preview').getAttribute('alt'), 'pixel.png');
    assert.match(await ann.getByTestId('pending-attachment-preview').getAttribute('src'), /^blob:/);
    release();

    // The PNG is ready; the ZIP is refused with the server's reason, next to it.
    await ann.locator(`${STRIP}[data-state="uploaded"][data-name="pixel.png"]`).waitFor();
    const refused = ann.locator(`${STRIP}[data-state="failed"][data-name="archive.zip"]`);
    await refused.waitFor();
    assert.match(await refused.getByTestId('pending-attachment-error').textContent(), /\(unsupported_file_type\)$/);
    assert.match(await refused.getByTestId('pending-attachment-error').textContent(), /application\/zip/);
    await ann.locator('[data-testid="send-button"]:enabled').waitFor();
    await ann.unroute('**/api/chat/files');

    // Send: only the uploaded file goes, the strip clears, the thumbnail shows in the message.
    await ann.getByTestId('send-button').click();
    await ann.getByTestId('attachment-strip').waitFor({ state: 'hidden' });
    assert.equal(await ann.locator(STRIP).count(), 0, 'the strip is empty');
    const mine = ann.locator('[data-testid="user-message"]', { hasText: 'a picture for you' });
    await mine.waitFor();
    await imagesShown(ann, '[data-testid="user-message"] [data-testid="attachment-image"]', 1);
    assert.equal(await mine.getByTestId('attachment-image').getAttribute('alt'), 'pixel.png');
    assert.equal(await mine.getByTestId('attachment').count(), 1, 'the refused file was not sent');
    const answer = ann.locator('[data-testid="assistant-message"][data-status="complete"] > [data-testid="message-text"]');
    await answer.waitFor();
    assert.equal(await answer.textContent(), `a picture for you ${echoed('pixel.png', 'image/png', PICTURE.length)}`);
    // Its accessible name is the file name.
    assert.equal(await ann.getByRole('img', { name: 'pixel.png' }).count(), 1);
    await mkdir(ARTIFACTS, { recursive: true });
    await ann.screenshot({ path: `${ARTIFACTS}files.png` });

    // Ben's page shows the question from the history as its answer starts: the thumbnail is
    // read with his token in the header, into an object URL.
    await ben.locator('[data-testid="assistant-message"][data-status="complete"]').waitFor();
    await imagesShown(ben, '[data-testid="user-message"] [data-testid="attachment-image"]', 1);
    const live = await ben.getByTestId('attachment-image').getAttribute('src');
    assert.match(live, /^blob:/);

    // After a reload, from get_history.
    await reloadChatPage(ben, 'ben');
    await ben.getByTestId('join-button').click();
    await ben.locator('[data-testid="assistant-message"][data-status="complete"]').waitFor();
    await imagesShown(ben, '[data-testid="user-message"] [data-testid="attachment-image"]', 1);
    assert.match(await ben.getByRole('img', { name: 'pixel.png' }).getAttribute('title'), /^pixel\.png \(\d+(\.\d)? (B|KB)\)$/);
    const fromHistory = await ben.getByTestId('attachment-image').getAttribute('src');

    // Leaving the conversation revokes the object URL of its thumbnail.
    await ben.evaluate(() => {
      window.__revoked = [];
      const revoke = URL.revokeObjectURL.bind(URL);
      URL.revokeObjectURL = (url) => { window.__revoked.push(url); revoke(url); };
    });
    await ben.getByTestId('new-conversation-button').click();
    await ben.waitForFunction((url) => window.__revoked.includes(url), fromHistory);

    assert.deepEqual(pageErrors.filter((e) => !/status of 415/.test(e)), [], 'no script errors in the pages');
    await ann.context().close();
    await ben.context().close();
  });

  it('a text file goes as a chip that downloads the same bytes, for the other member too; Remove deletes; files alone make a message', async () => {
    const ann = await openChatPage(browser, server.url, 'ann', pageErrors);
    await ann.getByTestId('new-conversation-button').click();
    await ann.locator('[data-testid="message-input"]:enabled').waitFor();
    const conversation = (await ann.getByTestId('current-conversation').textContent()).trim();
    await ann.getByTestId('invite-user').fill('ben');
    await ann.getByTestId('invite-button').click();
    await ann.getByTestId('members').filter({ hasText: 'ben' }).waitFor();

    await ann.getByTestId('file-input').setInputFiles([{ name: 'notes.txt', mimeType: 'text/plain', buffer: TEXT }]);
    const chip = ann.locator(`${STRIP}[data-state="uploaded"][data-name="notes.txt"]`);
    await chip.waitFor();
    assert.equal(await chip.getByTestId('pending-attachment-preview').count(), 0, 'no image preview for text');
    // Remove takes a file out of the strip, and deletes it on the server (freeing the
    // quota); choose it again.
    const deleted = ann.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/api/chat/files/'));
    await chip.getByRole('button', { name: 'Remove notes.txt' }).click();
    assert.equal((await deleted).status(), 204, 'Remove deletes the uploaded file');
    await ann.getByTestId('attachment-strip').waitFor({ state: 'hidden' });
    await ann.getByTestId('file-input').setInputFiles([{ name: 'notes.txt', mimeType: 'text/plain', buffer: TEXT }]);
    await chip.waitFor();
    await ann.getByTestId('message-input').fill('read this');
    await ann.getByTestId('message-input').press('Enter');
    const answer = ann.locator('[data-testid="assistant-message"][data-status="complete"] > [data-testid="message-text"]');
    await answer.waitFor();
    assert.equal(await answer.textContent(), `read this ${echoed('notes.txt', 'text/plain', TEXT.length)}`);

    // Files alone make a message: with a file ready, the text may stay empty.
    await ann.getByTestId('file-input').setInputFiles([{ name: 'notes.txt', mimeType: 'text/plain', buffer: TEXT }]);
    await chip.waitFor();
    await ann.getByTestId('message-input').press('Enter');
    const answers = ann.locator('[data-testid="assistant-message"][data-status="complete"] > [data-testid="message-text"]');
    await answers.nth(1).waitFor();
    assert.equal(await answers.nth(1).textContent(), echoed('notes.txt', 'text/plain', TEXT.length));

    const ben = await openChatPage(browser, server.url, 'ben', pageErrors);
    await ben.getByTestId('conversation-id').fill(conversation);
    await ben.getByTestId('join-button').click();
    // Two messages carried notes.txt (with text, and alone): the first one's chip.
    const download = ben.getByRole('button', { name: /^Download notes\.txt/ }).first();
    await download.waitFor();
    const [file] = await Promise.all([ben.waitForEvent('download'), download.click()]);
    assert.equal(file.suggestedFilename(), 'notes.txt');
    assert.ok((await readFile(await file.path())).equals(TEXT), 'the download has the bytes uploaded');
    await ann.context().close();
    await ben.context().close();
  });

  it('keeps working when the server takes no files (404): the error is shown, the button goes', async () => {
    const dee = await openChatPage(browser, server.url, 'dee', pageErrors);
    await dee.getByTestId('new-conversation-button').click();
    await dee.locator('[data-testid="message-input"]:enabled').waitFor();
    await dee.route('**/api/chat/files', (route) => route.fulfill({
      status: 404,
      contentType: 'application/json',
      body: JSON.stringify({ code: 'not_found', message: 'this server takes no files' }),
    }));
    await dee.getByTestId('file-input').setInputFiles([{ name: 'pixel.png', mimeType: 'image/png', buffer: PICTURE }]);
    const failed = dee.locator(`${STRIP}[data-state="failed"]`);
    await failed.waitFor();
    assert.equal(await failed.getByTestId('pending-attachment-error').textContent(), 'this server takes no files (not_found)');
    await dee.getByTestId('attach-button').waitFor({ state: 'hidden' });
    // Messages still go, without the file.
    await dee.getByTestId('message-input').fill('just text');
    await dee.getByTestId('send-button').click();
    const answer = dee.locator('[data-testid="assistant-message"][data-status="complete"] > [data-testid="message-text"]');
    await answer.waitFor();
    assert.equal(await answer.textContent(), 'just text');
    assert.equal(await dee.locator('[data-testid="user-message"] [data-testid="attachment"]').count(), 0);
    assert.equal(await dee.locator(STRIP).count(), 0);
    assert.deepEqual(pageErrors.filter((e) => !/status of (404|415)/.test(e)), [], 'no script errors in the pages');
    await dee.context().close();
  });
});
