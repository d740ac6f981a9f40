import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import { Conversation, type ConversationHost } from "./conversation.js";
import { MarieError } from "./errors.js";
import { ConversationList, type ListHost } from "./list.js";
import type {
  ConnectedEvent,
  ConversationDetails,
  ErrorEvent,
  HistoryAck,
  ReconnectedEvent,
  SendAck,
  UsageAck,
} from "./protocol.js";
import { Store } from "./store.js";
import type { Budget, ChatMessage, ClientTool, ClientTools, ConversationInfo, FileRecord, SendOptions } from "./types.js";
import { infoFromWire } from "./util.js";

export type TokenSource = string | (() => string | Promise<string>);

export interface MarieClientOptions {
  /** The server (`https://chat.example.com`); the page's own origin when absent. */
  url?: string;
  /** The credentials, or a function giving them (called on every connect and reconnect). */
  token: TokenSource;
  /** Passed to socket.io-client's `io()` (`auth` is this client's). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
  /** How long a command waits for its ack (default 10 s). */
  ackTimeoutMs?: number;
  /** How many messages of the active branch a conversation reads (default 100, at most 200). */
  historyLimit?: number;
  /**
   * Run a registered client tool when its call arrives in an answer this client asked for,
   * and submit the result (default true).
   */
  autoRunTools?: boolean;
  /** Connect at once (default true); else call `connect()`. */
  autoConnect?: boolean;
}

export type ConnectionStatus = "idle" | "connecting" | "connected" | "reconnecting" | "disconnected" | "refused" | "closed";

/** The connection, as a store. */
export interface ConnectionSnapshot {
  readonly status: ConnectionStatus;
  /** Who the server says this client is. */
  readonly userId: string | null;
  /** The private resume handle (kept to resume the session on a reconnect). */
  readonly session: string | null;
  /** The last connection was a restored session (`reconnected`). */
  readonly restored: boolean;
  /** Why the connection was refused or lost (`unauthorized`, `rate_limited`, ...). */
  readonly error: MarieError | null;
}

class ConnectionStore extends Store<ConnectionSnapshot> {
  set(change: Partial<ConnectionSnapshot>): void {
    const prev = this.getSnapshot();
    const next = { ...prev, ...change };
    if ((Object.keys(next) as Array<keyof ConnectionSnapshot>).every((k) => Object.is(next[k], prev[k]))) return;
    this.setSnapshot(Object.freeze(next));
  }
}

class UsageStore extends Store<Budget | null> {
  set(budget: Budget | null): void {
    const prev = this.getSnapshot();
    if (
      prev &&
      budget &&
      prev.used === budget.used &&
      prev.limit === budget.limit &&
      prev.period === budget.period &&
      prev.resetsAt === budget.resetsAt
    ) {
      return;
    }
    this.setSnapshot(budget);
  }
}

interface InFlight {
  event: string;
  reject: (err: MarieError) => void;
  settled: boolean;
}

/** Events of a conversation's room (or about a conversation), routed to its object. */
const CONVERSATION_EVENTS = new Set([
  "message_added",
  "queued",
  "stream_start",
  "stream_chunk",
  "stream_reasoning",
  "tool_call_start",
  "tool_call_delta",
  "tool_call",
  "tool_approval_request",
  "tool_approval",
  "tool_result",
  "stream_reset",
  "stream_end",
  "stream_error",
  "message_response",
  "user_typing",
  "user_joined",
  "user_left",
  "read",
  "branch_switched",
  "conversation_updated",
  "conversation_deleted",
  "removed",
  "left",
]);

const LIST_EVENTS = new Set(["conversation_updated", "conversation_created", "conversation_deleted", "removed"]);

/**
 * A MARIE client over Socket.IO (docs/protocol.md): the connection with session resume, one
 * state object per conversation, the conversation list, commands as promises, client tools.
 */
export class MarieClient {
  /** The socket.io-client socket (its `io.engine` is the transport). */
  readonly socket: Socket;
  /** The connection as a store. */
  readonly connection: ConnectionStore;
  /** The user's conversations (section 9) as a store. */
  readonly conversations: ConversationList;
  /** The user's token budget (`get_usage`) as a store; `null` until read. */
  readonly usage: UsageStore;

  #token: TokenSource;
  #url: string | undefined;
  #ackTimeoutMs: number;
  #historyLimit: number;
  #autoRunTools: boolean;
  #convs = new Map<string, Conversation>();
  #tools = new Map<string, ClientTool>();
  #inflight = new Set<InFlight>();
  #closed = false;
  #clientToolsUnsupported = false;
  #usageGen = 0;
  #usageTimer: ReturnType<typeof setTimeout> | null = null;
  #host: ConversationHost;

  constructor(options: MarieClientOptions) {
    if (!options || (typeof options.token !== "string" && typeof options.token !== "function")) {
      throw new TypeError("MarieClient: `token` is required (a string or a function)");
    }
    this.#token = options.token;
    this.#url = options.url;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.#historyLimit = Math.max(0, Math.min(200, options.historyLimit ?? 100));
    this.#autoRunTools = options.autoRunTools ?? true;
    this.connection = new ConnectionStore(
      Object.freeze({ status: "idle", userId: null, session: null, restored: false, error: null }),
    );
    this.usage = new UsageStore(null);
    const socketOptions: Partial<ManagerOptions & SocketOptions> = {
      ...(options.socketOptions ?? {}),
      autoConnect: false,
      auth: (cb: (data: object) => void) => this.#auth(cb),
    };
    this.socket = options.url ? io(options.url, socketOptions) : io(socketOptions);
    const client = this;
    this.#host = {
      get userId() {
        return client.userId;
      },
      get isConnected() {
        return client.socket.connected;
      },
      get historyLimit() {
        return client.#historyLimit;
      },
      get autoRunTools() {
        return client.#autoRunTools;
      },
      request: (event, payload) => this.request(event, payload),
      sendRequest: (payload) => this.#sendRequest(payload),
      budget: () => this.usage.getSnapshot(),
      refreshUsage: () => this.refreshUsage(),
      toolsFor: (options) => this.#toolsFor(options),
      listUnread: (id) => this.conversations.get(id)?.unread,
      listSetUnread: (id, unread) => this.conversations.setUnread(id, unread),
      listUpsert: (info) => this.conversations.upsert(info),
      listDrop: (id) => this.conversations.drop(id),
      listSetArchived: (id, archived) => this.conversations.setArchived(id, archived),
      listActivity: (id, role, text) => this.conversations.noteActivity(id, role, text, 1),
    };
    const listHost: ListHost = {
      get userId() {
        return client.userId;
      },
      get isConnected() {
        return client.socket.connected;
      },
      request: (event, payload) => this.request(event, payload),
    };
    this.conversations = new ConversationList(listHost);
    this.usage.subscribe(() => {
      for (const c of this.#convs.values()) c.commit();
    });
    this.#wire();
    if (options.autoConnect ?? true) this.connect();
  }

  /** The user id the server gave (`null` before the first connection). */
  get userId(): string | null {
    return this.connection.getSnapshot().userId;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Connects (again). */
  connect(): void {
    if (this.#closed) return;
    if (this.socket.connected || this.socket.active) return;
    this.connection.set({ status: "connecting", error: null });
    this.socket.connect();
  }

  /** Disconnects for good: pending commands reject with `closed`. */
  close(): void {
    this.#closed = true;
    for (const f of this.#inflight) {
      f.settled = true;
      f.reject(new MarieError("closed", "the client was closed", { event: f.event }));
    }
    this.#inflight.clear();
    if (this.#usageTimer) clearTimeout(this.#usageTimer);
    this.socket.disconnect();
    this.connection.set({ status: "closed" });
    for (const c of this.#convs.values()) c.onDisconnected();
  }

  // ------------------------------------------------------------------ files

  /** The HTTP address of `path` on the server (the page's origin when no `url` was given). */
  httpUrl(path: string): string {
    const base = this.#url ?? (globalThis as { location?: { origin?: string } }).location?.origin;
    if (!base) throw new MarieError("bad_request", "no server url: pass `url` to the MarieClient");
    return new URL(path, base).toString();
  }

  async #authorization(): Promise<string> {
    const source = this.#token;
    const token = typeof source === "function" ? await source() : source;
    return `Bearer ${token}`;
  }

  async #http<T>(method: string, path: string, body?: BodyInit, signal?: AbortSignal): Promise<T> {
    const res = await fetch(this.httpUrl(path), {
      method,
      headers: { authorization: await this.#authorization() },
      ...(body !== undefined ? { body } : {}),
      ...(signal ? { signal } : {}),
    });
    if (!res.ok) {
      let err: unknown = { code: res.status === 404 ? "not_found" : "error", message: `HTTP ${res.status}` };
      try {
        err = await res.json();
      } catch {
        // not JSON: the status says it
      }
      throw MarieError.from(err);
    }
    return (res.status === 204 ? undefined : ((await res.json()) as T)) as T;
  }

  /**
   * Uploads a file to a conversation (section 8: `POST /api/chat/files`); name its `fileId` in
   * `send(..., { attachments: [fileId] })`. Rejects with `payload_too_large`,
   * `quota_exceeded`, `unsupported_file_type`, ..., `aborted` (the signal) or `network`.
   * `onProgress(sent, total)` follows the upload (through XMLHttpRequest, which tells it,
   * where there is one; fetch does not).
   */
  async uploadFile(
    conversationId: string,
    file: Blob,
    options: { name?: string; signal?: AbortSignal; onProgress?: (sent: number, total: number) => void } = {},
  ): Promise<FileRecord> {
    const form = new FormData();
    form.append("conversation_id", conversationId);
    const name = options.name ?? (file as Blob & { name?: string }).name ?? "file";
    form.append("file", file, name);
    type Uploaded = { file_id: string; user_id: string; conversation_id: string; name: string; content_type: string; size: number; created_at: number };
    let r: Uploaded;
    try {
      r =
        options.onProgress && typeof XMLHttpRequest === "function"
          ? await this.#xhrPost<Uploaded>("/api/chat/files", form, options.signal, options.onProgress)
          : await this.#http<Uploaded>("POST", "/api/chat/files", form, options.signal);
    } catch (err) {
      if (err instanceof MarieError) throw err;
      if (options.signal?.aborted) throw new MarieError("aborted", "the upload was cancelled");
      throw new MarieError("network", `the upload broke off: ${err instanceof Error ? err.message : String(err)}`);
    }
    return Object.freeze({
      fileId: r.file_id,
      userId: r.user_id,
      conversationId: r.conversation_id,
      name: r.name,
      contentType: r.content_type,
      size: r.size,
      createdAt: r.created_at,
    });
  }

  /** POST through XMLHttpRequest, for its upload progress; the answer's JSON, or a MarieError. */
  async #xhrPost<T>(path: string, body: FormData, signal: AbortSignal | undefined, onProgress: (sent: number, total: number) => void): Promise<T> {
    const authorization = await this.#authorization();
    return new Promise<T>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.httpUrl(path));
      xhr.setRequestHeader("authorization", authorization);
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable && e.total > 0) onProgress(e.loaded, e.total);
      });
      xhr.addEventListener("load", () => {
        let json: unknown;
        try {
          json = JSON.parse(xhr.responseText);
        } catch {
          json = undefined; // not JSON: the status says it
        }
        if (xhr.status >= 200 && xhr.status < 300 && json && typeof json === "object") resolve(json as T);
        else if (json && typeof json === "object" && typeof (json as { code?: unknown }).code === "string") reject(MarieError.from(json));
        else reject(new MarieError(xhr.status === 404 ? "not_found" : "error", `HTTP ${xhr.status}`));
      });
      xhr.addEventListener("error", () => reject(new MarieError("network", "the upload broke off")));
      xhr.addEventListener("abort", () => reject(new MarieError("aborted", "the upload was cancelled")));
      if (signal) {
        if (signal.aborted) {
          reject(new MarieError("aborted", "the upload was cancelled"));
          return;
        }
        signal.addEventListener("abort", () => xhr.abort(), { once: true });
      }
      xhr.send(body);
    });
  }

  /** The bytes of a file a message carries (`GET /api/chat/files/{fileId}`, with the token in a header). */
  async downloadFile(fileId: string, options: { signal?: AbortSignal } = {}): Promise<Blob> {
    const res = await fetch(this.httpUrl(`/api/chat/files/${encodeURIComponent(fileId)}`), {
      headers: { authorization: await this.#authorization() },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (!res.ok) {
      let err: unknown = { code: res.status === 404 ? "not_found" : "error", message: `HTTP ${res.status}` };
      try {
        err = await res.json();
      } catch {
        // not JSON
      }
      throw MarieError.from(err);
    }
    return res.blob();
  }

  /** Removes one of this user's files (its bytes stop counting against the quota). */
  async deleteFile(fileId: string): Promise<void> {
    await this.#http("DELETE", `/api/chat/files/${encodeURIComponent(fileId)}`);
  }

  /** The conversation `id` (the same object each time; `join()` it to follow it). */
  conversation(id: string): Conversation {
    let c = this.#convs.get(id);
    if (!c) {
      c = new Conversation(id, this.#host);
      this.#convs.set(id, c);
    }
    return c;
  }

  /** Joins `id` (see `Conversation.join`) and returns its object. */
  async join(id: string): Promise<Conversation> {
    const c = this.conversation(id);
    await c.join();
    return c;
  }

  /**
   * Registers a client tool (PROTOCOL section 11): offered with every send of this client;
   * when the model calls it in an answer this client asked for, `execute` runs and its result
   * is submitted. Returns a function that unregisters it.
   */
  registerTool<Args = any, Result = unknown>(name: string, tool: ClientTool<Args, Result>): () => void {
    this.#tools.set(name, tool as ClientTool);
    return () => {
      if (this.#tools.get(name) === (tool as ClientTool)) this.#tools.delete(name);
    };
  }

  /** The registered client tools. */
  get tools(): ReadonlyMap<string, ClientTool> {
    return this.#tools;
  }

  /** Listens to a server event as it arrives (e.g. `announcement`, `error`); returns an unsubscribe. */
  on(event: string, listener: (data: any) => void): () => void {
    this.socket.on(event, listener);
    return () => {
      this.socket.off(event, listener);
    };
  }

  // ------------------------------------------------------------- commands

  /**
   * Emits `event` with an ack and resolves with the ack (`status:"ok"`), or rejects with a
   * MarieError: the protocol's `code` and `message`, `timeout` when no ack comes within
   * `ackTimeoutMs`, `disconnected` when no connection comes within it.
   */
  async request<T = Record<string, unknown>>(event: string, payload?: unknown, options: { timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#ackTimeoutMs;
    if (this.#closed) throw new MarieError("closed", "the client was closed", { event });
    if (!this.socket.connected) await this.#whenConnected(timeoutMs, event);
    return new Promise<T>((resolve, reject) => {
      const entry: InFlight = { event, reject, settled: false };
      this.#inflight.add(entry);
      this.socket.timeout(timeoutMs).emit(event, payload === undefined ? {} : payload, (err: unknown, res: any) => {
        this.#inflight.delete(entry);
        if (entry.settled) return;
        entry.settled = true;
        if (err) reject(new MarieError("timeout", `no answer to ${event} within ${timeoutMs} ms`, { event }));
        else if (res && (res.status === "ok" || res.status === "success")) resolve(res as T);
        else reject(MarieError.from(res ?? { code: "error", message: `${event} failed` }, event));
      });
    });
  }

  #whenConnected(timeoutMs: number, event: string): Promise<void> {
    if (!this.socket.active) this.connect();
    return new Promise((resolve, reject) => {
      const done = (err?: MarieError) => {
        clearTimeout(timer);
        this.socket.off("connect", onConnect);
        unsubscribe();
        if (err) reject(err);
        else resolve();
      };
      const onConnect = () => done();
      const unsubscribe = this.connection.subscribe(() => {
        const s = this.connection.getSnapshot();
        if (s.status === "refused" || s.status === "closed") {
          done(s.error ?? new MarieError(s.status === "closed" ? "closed" : "disconnected", `not connected (${s.status})`, { event }));
        }
      });
      const timer = setTimeout(() => done(new MarieError("disconnected", `not connected within ${timeoutMs} ms`, { event })), timeoutMs);
      this.socket.on("connect", onConnect);
      if (this.socket.connected) done();
    });
  }

  async #sendRequest(payload: Record<string, unknown>): Promise<SendAck> {
    let body = payload;
    if (this.#clientToolsUnsupported && "client_tools" in body) {
      const { client_tools: _t, ...rest } = body;
      body = rest;
    }
    try {
      return await this.request<SendAck>("send_message", body);
    } catch (err) {
      // A server without client tools refuses the field: the send goes without them.
      if (err instanceof MarieError && err.code === "bad_request" && "client_tools" in body && /client_tools/.test(err.message)) {
        this.#clientToolsUnsupported = true;
        const { client_tools: _t, ...rest } = body;
        return this.request<SendAck>("send_message", rest);
      }
      throw err;
    }
  }

  #toolsFor(options: SendOptions): ClientTools {
    const tools: ClientTools = {};
    if (options.registeredTools !== false) for (const [name, t] of this.#tools) tools[name] = t;
    if (options.tools) Object.assign(tools, options.tools);
    return tools;
  }

  /** Reads the user's token budget (`get_usage`) into `usage` (several calls close together make one). */
  refreshUsage(): void {
    if (this.#usageTimer || this.#closed) return;
    this.#usageTimer = setTimeout(() => {
      this.#usageTimer = null;
      this.getUsage().catch(() => undefined);
    }, 50);
    (this.#usageTimer as { unref?: () => void }).unref?.();
  }

  async getUsage(): Promise<Budget> {
    const gen = ++this.#usageGen;
    const ack = await this.request<UsageAck>("get_usage", {});
    const budget: Budget = Object.freeze({
      used: typeof ack.used === "number" ? ack.used : 0,
      limit: typeof ack.limit === "number" ? ack.limit : null,
      period: typeof ack.period === "string" ? ack.period : null,
      resetsAt: typeof ack.resets_at === "number" ? ack.resets_at : null,
    });
    if (gen === this.#usageGen) this.usage.set(budget);
    return budget;
  }

  /** One page of the user's conversations, as the server gives it (the store is `conversations`). */
  listConversations(options: { before?: string; limit?: number; query?: string; archived?: boolean } = {}): Promise<{
    conversations: ConversationDetails[];
    next_before: string | null;
  }> {
    return this.request("list_conversations", options);
  }

  async getConversation(id: string): Promise<ConversationInfo> {
    return infoFromWire(await this.request<ConversationDetails>("get_conversation", { conversation_id: id }));
  }

  /** The active branch of `id` (without joining it). */
  async getHistory(id: string, options: { before?: string; limit?: number } = {}): Promise<HistoryAck> {
    return this.request<HistoryAck>("get_history", { conversation_id: id, ...options });
  }

  send(id: string, message: string, options?: SendOptions) {
    return this.conversation(id).send(message, options);
  }
  cancel(id: string, streamId?: string) {
    return this.conversation(id).cancel(streamId);
  }
  leave(id: string) {
    return this.conversation(id).leave();
  }
  approveTool(id: string, approvalId: string, approved: boolean, reason?: string) {
    return this.conversation(id).approve(approvalId, approved, reason);
  }
  submitToolResult(id: string, toolCallId: string, result: { output?: unknown; error?: string }) {
    return this.conversation(id).submitToolResult(toolCallId, result);
  }
  editMessage(id: string, messageId: string, message: string) {
    return this.conversation(id).edit(messageId, message);
  }
  regenerate(id: string, messageId?: string) {
    return this.conversation(id).regenerate(messageId);
  }
  switchBranch(id: string, messageId: string) {
    return this.conversation(id).switchBranch(messageId);
  }
  updateConversation(id: string, changes: Parameters<Conversation["update"]>[0]) {
    return this.conversation(id).update(changes);
  }
  archiveConversation(id: string, archived = true) {
    return this.conversation(id).archive(archived);
  }
  deleteConversation(id: string) {
    return this.conversation(id).delete();
  }
  invite(id: string, userId: string) {
    return this.conversation(id).invite(userId);
  }
  removeMember(id: string, userId: string) {
    return this.conversation(id).removeMember(userId);
  }
  exportConversation(id: string) {
    return this.conversation(id).export();
  }
  markRead(id: string, messageId?: string) {
    return this.conversation(id).markRead(messageId);
  }
  typing(id: string, isTyping: boolean) {
    return this.conversation(id).typing(isTyping);
  }
  resumeStream(id: string, streamId: string, lastSeq: number) {
    return this.request("resume_stream", { conversation_id: id, stream_id: streamId, last_seq: lastSeq });
  }
  /** Admins: `announcement {message}` to every connected client. */
  announce(message: string) {
    return this.request("system_announcement", { message });
  }

  // ------------------------------------------------------------ connection

  #auth(cb: (data: object) => void): void {
    const source = this.#token;
    Promise.resolve()
      .then(() => (typeof source === "function" ? source() : source))
      .then(
        (token) => {
          const session = this.connection.getSnapshot().session;
          if (!session) {
            cb({ token });
            return;
          }
          // Where this client stands in each answer it follows: resumed at once (section 1).
          const lastSeqs: Record<string, number> = {};
          for (const c of this.#convs.values()) if (c.isJoined) Object.assign(lastSeqs, c.heldPositions());
          cb({ token, previous_session: session, last_seqs: lastSeqs });
        },
        (err) => {
          this.connection.set({ error: MarieError.from({ code: "unauthorized", message: `no token: ${err instanceof Error ? err.message : String(err)}` }) });
          cb({});
        },
      );
  }

  #wire(): void {
    const socket = this.socket;
    socket.on("connected", (data: ConnectedEvent) => {
      const hadSession = this.connection.getSnapshot().session !== null;
      this.connection.set({ status: "connected", userId: data.user_id ?? null, session: data.session ?? null, restored: false, error: null });
      // A fresh session: the rooms are gone; the conversations followed join again.
      if (hadSession) for (const c of this.#convs.values()) c.onFreshSession();
      else for (const c of this.#convs.values()) c.commit();
      if (this.conversations.getSnapshot().loaded) this.conversations.refresh().catch(() => undefined);
    });
    socket.on("reconnected", (data: ReconnectedEvent) => {
      this.connection.set({ status: "connected", userId: data.user_id ?? this.userId, session: data.session ?? null, restored: true, error: null });
      const rooms = new Set(Array.isArray(data.rooms) ? data.rooms : []);
      const active = Array.isArray(data.active_streams) ? data.active_streams : [];
      for (const c of this.#convs.values()) {
        c.onRestored(rooms.has(c.id), active.filter((s) => s.conversation_id === c.id));
      }
      if (this.conversations.getSnapshot().loaded) this.conversations.refresh().catch(() => undefined);
    });
    socket.on("connect_error", (err: Error & { data?: { code?: string } }) => {
      // The CONNECT refusal's message is the code (section 1).
      const code = err?.data?.code ?? err?.message ?? "error";
      const error = this.connection.getSnapshot().error ?? new MarieError(code, err?.message ?? code);
      if (socket.active) this.connection.set({ status: "reconnecting", error: new MarieError(code, err?.message ?? code) });
      else this.connection.set({ status: "refused", error: error.code === "unauthorized" ? error : new MarieError(code, err?.message ?? code) });
    });
    socket.on("disconnect", () => {
      if (this.#closed) return;
      this.connection.set({ status: socket.active ? "reconnecting" : "disconnected" });
      for (const c of this.#convs.values()) c.onDisconnected();
    });
    socket.on("error", (data: ErrorEvent) => this.#onError(data));
    socket.onAny((event: string, data: any) => this.#route(event, data));
  }

  /** An `error` event: the answer to a command in flight (rejected at once), or a room's. */
  #onError(data: ErrorEvent): void {
    if (!data || typeof data !== "object") return;
    if (typeof data.conversation_id === "string" && typeof data.stream_id === "string") {
      // A room's: a `stream:false` answer that failed after it was accepted.
      this.#convs.get(data.conversation_id)?.handle("error", data);
      return;
    }
    if (data.code === "unauthorized") {
      // The credentials expired or the user was revoked: the server disconnects next.
      this.connection.set({ error: MarieError.from(data) });
    }
    if (typeof data.event !== "string") return;
    const waiting = [...this.#inflight].filter((f) => f.event === data.event && !f.settled);
    // Only when it can be told apart: the ack brings the same error in any case.
    if (waiting.length === 1) {
      const f = waiting[0]!;
      f.settled = true;
      this.#inflight.delete(f);
      f.reject(MarieError.from(data, data.event));
    }
  }

  #route(event: string, data: any): void {
    if (!data || typeof data !== "object") return;
    const id = data.conversation_id;
    if (typeof id !== "string") return;
    if (LIST_EVENTS.has(event)) this.conversations.handle(event, data, this.#convs.get(id)?.isJoined ?? false);
    if (CONVERSATION_EVENTS.has(event)) this.#convs.get(id)?.handle(event, data);
  }
}

export type { ChatMessage };
