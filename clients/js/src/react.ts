// `@marie-rs/client/react`: hooks over the client's stores (React 18 or later).

import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { MarieClient, type ConnectionSnapshot, type MarieClientOptions } from "./client.js";
import type { Conversation } from "./conversation.js";
import type { ConversationListSnapshot, ConversationList } from "./list.js";
import type { Budget, ConversationSnapshot } from "./types.js";

/**
 * A MarieClient for the component's lifetime: made once (from the first options), closed
 * when the component unmounts. Pass `null` options to make none yet (not logged in).
 */
export function useMarieClient(options: MarieClientOptions | null): MarieClient | null {
  const [client, setClient] = useState<MarieClient | null>(null);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const enabled = options !== null;
  useEffect(() => {
    if (!enabled || !optionsRef.current) return undefined;
    const made = new MarieClient(optionsRef.current);
    setClient(made);
    return () => {
      made.close();
      setClient(null);
    };
  }, [enabled]);
  return client;
}

const noSubscribe = () => () => undefined;
const IDLE: ConnectionSnapshot = Object.freeze({ status: "idle", userId: null, session: null, restored: false, error: null });

/** The connection's state. */
export function useConnection(client: MarieClient | null): ConnectionSnapshot {
  return useSyncExternalStore(
    client ? client.connection.subscribe : noSubscribe,
    client ? client.connection.getSnapshot : () => IDLE,
    client ? client.connection.getSnapshot : () => IDLE,
  );
}

/** The user's token budget (`null` until read). */
export function useBudget(client: MarieClient | null): Budget | null {
  return useSyncExternalStore(
    client ? client.usage.subscribe : noSubscribe,
    client ? client.usage.getSnapshot : () => null,
    client ? client.usage.getSnapshot : () => null,
  );
}

export interface UseConversationResult extends ConversationSnapshot {
  /** The conversation object (its commands), `null` without a client or id. */
  readonly conversation: Conversation | null;
  send: Conversation["send"];
  cancel: Conversation["cancel"];
  approve: Conversation["approve"];
  submitToolResult: Conversation["submitToolResult"];
  edit: Conversation["edit"];
  regenerate: Conversation["regenerate"];
  switchBranch: Conversation["switchBranch"];
  loadOlder: Conversation["loadOlder"];
  markRead: Conversation["markRead"];
  typing: Conversation["typing"];
  update: Conversation["update"];
  invite: Conversation["invite"];
  removeMember: Conversation["removeMember"];
}

function emptySnapshot(id: string): ConversationSnapshot {
  return Object.freeze({
    id,
    joined: false,
    joining: false,
    connected: false,
    resuming: false,
    created: null,
    closed: null,
    historyLoaded: false,
    loadingHistory: false,
    hasOlder: false,
    messages: [],
    running: null,
    answers: [],
    pendingApprovals: [],
    pendingToolCalls: [],
    queue: [],
    sending: [],
    typingUsers: [],
    budget: null,
    members: [],
    info: null,
    title: null,
    assistants: [],
    unread: 0,
    readMarks: {},
    lastError: null,
  });
}
const NONE = emptySnapshot("");

const notReady = (): Promise<never> => Promise.reject(new Error("no conversation"));

/**
 * One conversation's snapshot and its commands. Joins it (unless `join: false`) when the
 * client and id are given; it stays joined when the component unmounts (`leave()` for that).
 */
export function useConversation(
  client: MarieClient | null,
  id: string | null | undefined,
  options: { join?: boolean } = {},
): UseConversationResult {
  const conversation = client && id ? client.conversation(id) : null;
  const snapshot = useSyncExternalStore(
    conversation ? conversation.subscribe : noSubscribe,
    conversation ? conversation.getSnapshot : () => NONE,
    conversation ? conversation.getSnapshot : () => NONE,
  );
  const join = options.join ?? true;
  useEffect(() => {
    if (!conversation || !join) return;
    if (!conversation.isJoined) conversation.join().catch(() => undefined);
  }, [conversation, join]);
  return useMemo(() => {
    const c = conversation;
    return {
      ...snapshot,
      conversation: c,
      send: c ? c.send.bind(c) : notReady,
      cancel: c ? c.cancel.bind(c) : notReady,
      approve: c ? c.approve.bind(c) : notReady,
      submitToolResult: c ? c.submitToolResult.bind(c) : notReady,
      edit: c ? c.edit.bind(c) : notReady,
      regenerate: c ? c.regenerate.bind(c) : notReady,
      switchBranch: c ? c.switchBranch.bind(c) : notReady,
      loadOlder: c ? c.loadOlder.bind(c) : notReady,
      markRead: c ? c.markRead.bind(c) : notReady,
      typing: c ? c.typing.bind(c) : () => undefined,
      update: c ? c.update.bind(c) : notReady,
      invite: c ? c.invite.bind(c) : notReady,
      removeMember: c ? c.removeMember.bind(c) : notReady,
    };
  }, [snapshot, conversation]);
}

export interface UseConversationsResult extends ConversationListSnapshot {
  readonly list: ConversationList | null;
  load: ConversationList["load"];
  loadMore: ConversationList["loadMore"];
  refresh: ConversationList["refresh"];
}

const NO_LIST: ConversationListSnapshot = Object.freeze({
  items: [],
  loaded: false,
  loading: false,
  hasMore: false,
  query: "",
  archived: false,
  error: null,
});

/** The user's conversation list (read when first used, then kept current by events). */
export function useConversations(client: MarieClient | null, options: { load?: boolean } = {}): UseConversationsResult {
  const list = client ? client.conversations : null;
  const snapshot = useSyncExternalStore(
    list ? list.subscribe : noSubscribe,
    list ? list.getSnapshot : () => NO_LIST,
    list ? list.getSnapshot : () => NO_LIST,
  );
  const load = options.load ?? true;
  useEffect(() => {
    if (!list || !load) return;
    if (!list.getSnapshot().loaded && !list.getSnapshot().loading) list.load().catch(() => undefined);
  }, [list, load]);
  return useMemo(
    () => ({
      ...snapshot,
      list,
      load: list ? list.load.bind(list) : notReady,
      loadMore: list ? list.loadMore.bind(list) : notReady,
      refresh: list ? list.refresh.bind(list) : notReady,
    }),
    [snapshot, list],
  );
}
