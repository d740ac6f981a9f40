import type { ConversationDetails, ConversationSummary } from "./protocol.js";
import type { ConversationInfo, ConversationItem } from "./types.js";

/** A random id: `prefix` and 24 hex digits. */
export function randomId(prefix = ""): string {
  const bytes = new Uint8Array(12);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function itemFromWire(c: ConversationSummary): ConversationItem {
  return Object.freeze({
    id: c.conversation_id,
    title: typeof c.title === "string" ? c.title : null,
    ...(c.created_by !== undefined ? { createdBy: c.created_by } : {}),
    ...(typeof c.created_at === "number" ? { createdAt: c.created_at } : {}),
    ...(typeof c.updated_at === "number" ? { updatedAt: c.updated_at } : {}),
    ...(c.last_message !== undefined
      ? {
          lastMessage: c.last_message
            ? Object.freeze({ role: c.last_message.role, preview: c.last_message.preview, createdAt: c.last_message.created_at })
            : null,
        }
      : {}),
    ...(c.model !== undefined ? { model: c.model } : {}),
    ...(c.answer_policy !== undefined ? { answerPolicy: c.answer_policy } : {}),
    archived: c.archived === true,
    unread: typeof c.unread === "number" ? c.unread : 0,
  });
}

export function infoFromWire(c: ConversationDetails): ConversationInfo {
  return Object.freeze({
    ...itemFromWire(c),
    ...(c.system_prompt !== undefined ? { systemPrompt: c.system_prompt } : {}),
    members: Object.freeze((Array.isArray(c.members) ? c.members : []).map((m) => Object.freeze({ userId: m.user_id, role: m.role }))),
    models: Object.freeze(Array.isArray(c.models) ? [...c.models] : []),
    ...(typeof c.max_system_prompt_chars === "number" ? { maxSystemPromptChars: c.max_system_prompt_chars } : {}),
    assistants: Object.freeze((Array.isArray(c.assistants) ? c.assistants : []).map((a) => Object.freeze({ name: a.name, model: a.model ?? null }))),
  });
}

/**
 * Resolves with the store's first snapshot that satisfies `predicate` (the current one, or a
 * later one); rejects after `timeoutMs`.
 */
export function waitFor<T>(
  store: { subscribe(listener: () => void): () => void; getSnapshot(): T },
  predicate: (snapshot: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const now = store.getSnapshot();
    if (predicate(now)) {
      resolve(now);
      return;
    }
    let unsubscribe = (): void => undefined;
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`waitFor: no snapshot satisfied ${String(predicate).slice(0, 160)} within ${timeoutMs} ms`));
    }, timeoutMs);
    unsubscribe = store.subscribe(() => {
      const s = store.getSnapshot();
      let ok = false;
      try {
        ok = predicate(s);
      } catch (err) {
        clearTimeout(timer);
        unsubscribe();
        reject(err);
        return;
      }
      if (ok) {
        clearTimeout(timer);
        unsubscribe();
        resolve(s);
      }
    });
  });
}
