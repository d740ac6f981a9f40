// uploadFile with onProgress goes through XMLHttpRequest (fetch cannot tell an upload's
// progress): here a fake one, as a browser's would behave. No server.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { MarieClient, MarieError } from '../dist/index.js';

/** A fake XMLHttpRequest: `FakeXHR.next` says how the next request ends. */
class FakeXHR {
  static sent = [];
  static next = { status: 201, body: '{}', progress: [] };
  constructor() {
    this.headers = {};
    this.listeners = {};
    this.upload = { listeners: {}, addEventListener: (type, fn) => { (this.upload.listeners[type] ||= []).push(fn); } };
  }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  #fire(on, type, event = {}) { for (const fn of on[type] || []) fn(event); }
  open(method, url) { this.method = method; this.url = url; }
  setRequestHeader(name, value) { this.headers[name.toLowerCase()] = value; }
  send(body) {
    this.body = body;
    FakeXHR.sent.push(this);
    const plan = FakeXHR.next;
    if (plan.hang) return; // until abort()
    setTimeout(() => {
      for (const [loaded, total] of plan.progress) this.#fire(this.upload.listeners, 'progress', { lengthComputable: true, loaded, total });
      this.status = plan.status;
      this.responseText = plan.body;
      this.#fire(this.listeners, 'load');
    }, 1);
  }
  abort() { setTimeout(() => this.#fire(this.listeners, 'abort'), 1); }
}

const saved = globalThis.XMLHttpRequest;
globalThis.XMLHttpRequest = FakeXHR;
const client = new MarieClient({ url: 'http://127.0.0.1:9', token: async () => 'tok', autoConnect: false });
after(() => {
  client.close();
  globalThis.XMLHttpRequest = saved;
});

test('onProgress: the upload goes through XMLHttpRequest with the token, and its progress is told', async () => {
  FakeXHR.next = {
    status: 201,
    progress: [[5, 10], [10, 10]],
    body: JSON.stringify({ file_id: 'f1', user_id: 'ann', conversation_id: 'c1', name: 'a.txt', content_type: 'text/plain', size: 10, created_at: 7 }),
  };
  const progress = [];
  const record = await client.uploadFile('c1', new Blob(['0123456789']), { name: 'a.txt', onProgress: (sent, total) => progress.push([sent, total]) });
  assert.deepEqual(record, { fileId: 'f1', userId: 'ann', conversationId: 'c1', name: 'a.txt', contentType: 'text/plain', size: 10, createdAt: 7 });
  assert.deepEqual(progress, [[5, 10], [10, 10]]);
  const xhr = FakeXHR.sent.at(-1);
  assert.equal(xhr.method, 'POST');
  assert.equal(xhr.url, 'http://127.0.0.1:9/api/chat/files');
  assert.equal(xhr.headers.authorization, 'Bearer tok');
  assert.equal(xhr.body.get('conversation_id'), 'c1');
  assert.equal(xhr.body.get('file').name, 'a.txt');
});

test('a refusal rejects with the server\'s code; an answer without JSON with the status', async () => {
  FakeXHR.next = { status: 415, progress: [], body: JSON.stringify({ code: 'unsupported_file_type', message: 'application/zip is not accepted' }) };
  await assert.rejects(client.uploadFile('c1', new Blob(['PK']), { name: 'a.zip', onProgress() {} }), (err) =>
    err instanceof MarieError && err.code === 'unsupported_file_type' && /application\/zip/.test(err.message));
  FakeXHR.next = { status: 404, progress: [], body: '<html>no such route</html>' };
  await assert.rejects(client.uploadFile('c1', new Blob(['x']), { onProgress() {} }), (err) =>
    err instanceof MarieError && err.code === 'not_found' && err.message === 'HTTP 404');
});

test('the signal aborts an upload under way: aborted', async () => {
  FakeXHR.next = { hang: true };
  const stop = new AbortController();
  const upload = client.uploadFile('c1', new Blob(['x']), { signal: stop.signal, onProgress() {} });
  await new Promise((resolve) => setTimeout(resolve, 5));
  stop.abort();
  await assert.rejects(upload, (err) => err instanceof MarieError && err.code === 'aborted');
});
