// What the AI SDK accepts of a UI message chunk: its own schema, and this mapping's fields only.
import assert from 'node:assert/strict';
import { uiMessageChunkSchema } from 'ai';

const ALLOWED = {
  start: ['type', 'messageId'],
  'start-step': ['type'],
  'finish-step': ['type'],
  'reset-step': ['type'],
  'text-start': ['type', 'id'],
  'text-delta': ['type', 'id', 'delta'],
  'text-end': ['type', 'id'],
  'reasoning-start': ['type', 'id'],
  'reasoning-delta': ['type', 'id', 'delta'],
  'reasoning-end': ['type', 'id'],
  'tool-input-start': ['type', 'toolCallId', 'toolName'],
  'tool-input-delta': ['type', 'toolCallId', 'inputTextDelta'],
  'tool-input-available': ['type', 'toolCallId', 'toolName', 'input'],
  'tool-approval-request': ['type', 'approvalId', 'toolCallId'],
  'tool-approval-response': ['type', 'approvalId', 'approved', 'reason'],
  'tool-output-available': ['type', 'toolCallId', 'output'],
  'tool-output-error': ['type', 'toolCallId', 'errorText'],
  'tool-output-denied': ['type', 'toolCallId'],
  finish: ['type', 'finishReason'],
  error: ['type', 'errorText'],
  abort: ['type', 'reason'],
};

/** Checks each chunk against the AI SDK's own schema and this mapping's field list. */
export async function assertValidChunks(chunks) {
  const schema = uiMessageChunkSchema();
  for (const c of chunks) {
    const allowed = ALLOWED[c.type];
    assert.ok(allowed, `unexpected chunk type ${c.type}`);
    for (const key of Object.keys(c)) assert.ok(allowed.includes(key), `extra field ${key} in ${JSON.stringify(c)}`);
    const r = await schema.validate(c);
    assert.ok(r.success, `invalid chunk ${JSON.stringify(c)}: ${r.error}`);
  }
}

