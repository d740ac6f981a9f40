import { AnswerTracker, type RunningAnswer } from "./answer.js";
import { MarieError } from "./errors.js";
import { mergeLiveDetails, partsFromWire, textOf, type Part } from "./parts.js";
import {
  NUMBERED_EVENTS,
  type AnswerEvent,
  type ConversationDetails,
  type ConversationUpdatedEvent,
  type ExportAck,
  type HistoryAck,
  type JoinedAck,
  type NumberedEvent,
  type NumberedEventName,
  type QueuedEvent,
  type SendAck,
  type StreamEndEvent,
  type StreamErrorEvent,
  type StreamStartEvent,
  type WireMessage,
} from "./protocol.js";
import { Store } from "./store.js";
import type {
  Budget,
  ChatMessage,
  ClientTool,
  ClientTools,
  ClientToolSpec,
  ConversationInfo,
  ConversationSnapshot,
  PendingApproval,
  PendingSend,
  PendingToolCall,
  QueuedSend,
  SendOptions,
  SendResult,
  ToolResultInput,
} from "./types.js";
import { infoFromWire, randomId } from "./util.js";

/** What a conversation needs of its client. */
export interface ConversationHost {
  readonly userId: string | null;
  readonly isConnected: boolean;
  readonly historyLimit: number;
  readonly autoRunTools: boolean;
  request<T>(event: string, payload?: unknown): Promise<T>;
  /** `send_message` (offering `client_tools` when the server takes them). */
  sendRequest(payload: Record<string, unknown>): Promise<SendAck>;
  budget(): Budget | null;
  refreshUsage(): void;
  /** The client tools to offer with a send: the registered ones (unless told not to) and the send's own. */
  toolsFor(options: SendOptions): ClientTools;
  /** The conversation list, told what this conversation sees. */
  listUnread(conversationId: string): number | undefined;
  listSetUnread(conversationId: string, unread: number): void;
  listUpsert(info: ConversationInfo): void;
  listDrop(conversationId: string): void;
  /** This user archived the conversation (or took it out of the archive). */
  listSetArchived(conversationId: string, archived: boolean): void;
  /** A message was stored in this conversation (the list moves it up, with one more unread). */
  listActivity(conversationId: string, role: string, text: string): void;
}

const TYPING_REPEAT_MS = 2000; // the server forgets a `typing` after 5 s without a repeat
const TYPING_HIDE_MS = 6000; // a lost `typing:false` (volatile) ends by itself

interface OwnStream {
  tools: ClientTools;
}

function messageFromWire(m: WireMessage): ChatMessage {
  const parts = partsFromWire(m.parts, typeof m.content === "string" ? m.content : "");
  const msg: ChatMessage = {
    id: String(m.message_id),
    role: m.role,
    content: m.role === "assistant" && Array.isArray(m.parts) && m.parts.length ? textOf(parts) || m.content || "" : m.content ?? "",
    parentId: m.parent_id === undefined || m.parent_id === null ? null : String(m.parent_id),
    parts,
    ...(m.user_id !== undefined ? { userId: m.user_id } : {}),
    ...(m.assistant !== undefined ? { assistant: m.assistant } : {}),
    ...(typeof m.created_at === "number" ? { createdAt: m.created_at } : {}),
    ...(Array.isArray(m.siblings) && m.siblings.length > 1 ? withBranch(m.siblings.map(String), String(m.message_id)) : {}),
    ...(Array.isArray(m.attachments) && m.attachments.length ? { attachments: m.attachments } : {}),
    ...(m.role === "assistant" ? { status: "complete" } : {}),
  };
  return msg;
}

function withBranch(siblings: string[], id: string): Pick<ChatMessage, "siblings" | "branch"> {
  const index = siblings.indexOf(id);
  if (index < 0) return { siblings };
  return {
    siblings,
    branch: {
      index,
      count: siblings.length,
      previousId: index > 0 ? siblings[index - 1]! : null,
      nextId: index < siblings.length - 1 ? siblings[index + 1]! : null,
    },
  };
}

const EMPTY: readonly never[] = Object.freeze([]);

/**
 * One conversation: its state as one immutable snapshot (`subscribe` / `getSnapshot`, for
 * React's `useSyncExternalStore`), and its commands. Get it with `client.conversation(id)`
 * (the same object each time). Events of its room reach it through the client.
 */
export class Conversation extends Store<ConversationSnapshot> {
  readonly id: string;
  #host: ConversationHost;

  #joined = false;
  #joining: Promise<JoinedAck> | null = null;
  #created: boolean | null = null;
  #closed: ConversationSnapshot["closed"] = null;
  #messages: readonly ChatMessage[] = EMPTY;
  #historyLoaded = false;
  #historyLoads = 0; // in flight
  #historyGen = 0;
  #hasOlder = false;
  /** Ids of messages added live (so that a history read started before keeps them). */
  #addedLog: string[] = [];
  #trackers = new Map<string, AnswerTracker>();
  /** Streams of this client's sends, edits and regenerations, with the send's own tools. */
  #own = new Map<string, OwnStream>();
  /** Streams known to have ended or left the queue (a late `queued` or `stream_start` for them is ignored). */
  #gone = new Set<string>();
  #queue: QueuedSend[] = [];
  #sending: Array<PendingSend & { claimed: boolean }> = [];
  #typing = new Map<string, ReturnType<typeof setTimeout>>();
  #typingSentAt = 0;
  #members: readonly string[] = EMPTY;
  #info: ConversationInfo | null = null;
  #infoGen = 0;
  #unread = 0;
  #readMarks: Readonly<Record<string, string>> = Object.freeze({});
  #lastError: MarieError | null = null;
  #mark: { target: string | null; sent: string | null; busy: boolean } = { target: null, sent: null, busy: false };
  /** Client tool calls this client runs or ran (never twice). */
  #ranCalls = new Set<string>();
  #runningCalls = new Set<string>();
  /** Client tool calls of streams whose ownership is not known yet (a send's ack not in). */
  #deferredCalls: Array<{ streamId: string; toolCallId: string; name: string; arguments: unknown }> = [];
  #answerListeners = new Set<(e: AnswerEvent) => void>();

  constructor(id: string, host: ConversationHost) {
    super(Conversation.#empty(id, host));
    this.id = id;
    this.#host = host;
  }

  static #empty(id: string, host: ConversationHost): ConversationSnapshot {
    return Object.freeze({
      id,
      joined: false,
      joining: false,
      connected: host.isConnected,
      resuming: false,
      created: null,
      closed: null,
      historyLoaded: false,
      loadingHistory: false,
      hasOlder: false,
      messages: EMPTY,
      running: null,
      answers: EMPTY,
      pendingApprovals: EMPTY,
      pendingToolCalls: EMPTY,
      queue: EMPTY,
      sending: EMPTY,
      typingUsers: EMPTY,
      budget: host.budget(),
      members: EMPTY,
      info: null,
      title: null,
      assistants: EMPTY,
      unread: 0,
      readMarks: Object.freeze({}),
      lastError: null,
    });
  }

  // ------------------------------------------------------------------ snapshot

  /** Builds the snapshot again from the state (a new object: something changed). */
  commit(): void {
    const prev = this.getSnapshot();
    const answers = [...this.#trackers.values()].filter((t) => !t.ended).map((t) => t.view());
    const sameAnswers = answers.length === prev.answers.length && answers.every((a, i) => a === prev.answers[i]);
    const pendingApprovals: PendingApproval[] = [];
    const pendingToolCalls: PendingToolCall[] = [];
    for (const t of this.#trackers.values()) {
      if (t.ended) continue;
      const approvals = new Set<string>();
      const calls = new Set<string>();
      for (const p of t.parts) {
        if (p.type !== "tool") continue;
        if (p.state === "approval-requested" && p.approval) {
          approvals.add(p.approval.approvalId);
          pendingApprovals.push({
            conversationId: this.id,
            streamId: t.streamId,
            approvalId: p.approval.approvalId,
            toolCallId: p.toolCallId,
            name: p.name,
            arguments: p.input,
            ...(p.approval.expiresAt !== undefined ? { expiresAt: p.approval.expiresAt } : {}),
          });
        } else if (p.client && p.state === "input-available") {
          calls.add(p.toolCallId);
          pendingToolCalls.push({
            conversationId: this.id,
            streamId: t.streamId,
            toolCallId: p.toolCallId,
            name: p.name,
            arguments: p.input,
            mine: this.#own.has(t.streamId),
            running: this.#runningCalls.has(p.toolCallId),
          });
        }
      }
      // What the join said it waits on, when the events did not show it (a resume failed).
      const ja = t.joinedApproval;
      if (ja && !approvals.has(ja.approval_id) && !t.parts.some((p) => p.type === "tool" && p.approval?.approvalId === ja.approval_id)) {
        pendingApprovals.push({
          conversationId: this.id,
          streamId: t.streamId,
          approvalId: ja.approval_id,
          toolCallId: ja.tool_call_id,
          name: ja.name,
          arguments: ja.arguments,
          ...(typeof ja.expires_at === "number" ? { expiresAt: ja.expires_at } : {}),
        });
      }
      const jc = t.joinedToolCall;
      if (jc && !calls.has(jc.tool_call_id) && !t.parts.some((p) => p.type === "tool" && p.toolCallId === jc.tool_call_id)) {
        pendingToolCalls.push({
          conversationId: this.id,
          streamId: t.streamId,
          toolCallId: jc.tool_call_id,
          name: jc.name,
          arguments: jc.arguments,
          ...(typeof jc.expires_at === "number" ? { expiresAt: jc.expires_at } : {}),
          mine: this.#own.has(t.streamId),
          running: this.#runningCalls.has(jc.tool_call_id),
        });
      }
    }
    const typing = [...this.#typing.keys()];
    const sending = this.#sending.map(({ claimed: _c, ...s }) => s);
    const info = this.#info;
    const next: ConversationSnapshot = {
      id: this.id,
      joined: this.#joined,
      joining: this.#joining !== null,
      connected: this.#host.isConnected,
      resuming: answers.some((a) => a.resuming),
      created: this.#created,
      closed: this.#closed,
      historyLoaded: this.#historyLoaded,
      loadingHistory: this.#historyLoads > 0,
      hasOlder: this.#hasOlder,
      messages: this.#messages,
      running: answers[0] ?? null,
      answers: sameAnswers ? prev.answers : Object.freeze(answers),
      pendingApprovals: sameList(prev.pendingApprovals, pendingApprovals) ? prev.pendingApprovals : Object.freeze(pendingApprovals),
      pendingToolCalls: sameList(prev.pendingToolCalls, pendingToolCalls) ? prev.pendingToolCalls : Object.freeze(pendingToolCalls),
      queue: sameList(prev.queue, this.#queue) ? prev.queue : Object.freeze([...this.#queue]),
      sending: sameList(prev.sending, sending) ? prev.sending : Object.freeze(sending),
      typingUsers: sameList(prev.typingUsers, typing) ? prev.typingUsers : Object.freeze(typing),
      budget: this.#host.budget(),
      members: this.#members,
      info,
      title: info ? info.title : null,
      assistants: info ? info.assistants : EMPTY,
      unread: this.#unread,
      readMarks: this.#readMarks,
      lastError: this.#lastError,
    };
    if (shallowEqual(prev, next)) return;
    this.setSnapshot(Object.freeze(next));
  }

  // ------------------------------------------------------------------ commands

  /**
   * Joins the conversation's room (creating the conversation when it does not exist and the
   * app allows it), then reads its history and details. Resolves with the join's ack once the
   * history is in. A running answer is resumed from its start.
   */
  join(): Promise<JoinedAck> {
    if (this.#joining) return this.#joining;
    const joining = (async () => {
      try {
        const ack = await this.#host.request<JoinedAck>("join_conversation", { conversation_id: this.id });
        this.#onJoined(ack);
        const details = this.refreshInfo().catch(() => undefined);
        this.#host.refreshUsage();
        await this.loadHistory().catch(() => undefined);
        await details;
        return ack;
      } catch (err) {
        const e = MarieError.from(err, "join_conversation");
        this.#lastError = e;
        if (e.code === "not_found" || e.code === "forbidden") this.#host.listDrop(this.id);
        throw e;
      } finally {
        this.#joining = null;
        this.commit();
      }
    })();
    this.#joining = joining;
    this.commit();
    return joining;
  }

  /** Leaves the room (access stays: join again any time). */
  async leave(): Promise<void> {
    this.#joined = false;
    this.#clearLive(false);
    this.commit();
    await this.#host.request("leave_conversation", { conversation_id: this.id });
  }

  /**
   * Sends a message (joining first if needed). Resolves once it is stored (or queued) with its
   * ids; the answer streams into the snapshot. Rejects with a MarieError (`busy`, `rate_limited`,
   * `budget_exceeded`, ...).
   */
  async send(message: string, options: SendOptions = {}): Promise<SendResult> {
    if (!this.#joined) await this.join();
    const clientMessageId = options.clientMessageId ?? randomId("c-");
    const tools = this.#host.toolsFor(options);
    const specs: ClientToolSpec[] = Object.entries(tools).map(([name, t]) => ({
      name,
      description: t.description,
      parameters: t.parameters,
    }));
    const payload: Record<string, unknown> = {
      conversation_id: this.id,
      message,
      stream: options.stream ?? true,
      client_message_id: clientMessageId,
    };
    if (options.onBusy) payload.on_busy = options.onBusy;
    if (options.answer !== undefined) payload.answer = options.answer;
    if (options.attachments && options.attachments.length) payload.attachments = [...options.attachments];
    if (specs.length) payload.client_tools = specs;
    const pending = { clientMessageId, message, attachments: options.attachments ? [...options.attachments] : [], claimed: false };
    this.#sending.push(pending);
    this.commit();
    try {
      const ack = await this.#host.sendRequest(payload);
      if (ack.stream_id) this.#claimStream(ack.stream_id, tools);
      if (typeof ack.queued === "number" && ack.stream_id) {
        this.#addQueued({
          conversation_id: this.id,
          stream_id: ack.stream_id,
          message_id: ack.message_id,
          user_id: this.#host.userId ?? undefined,
          message,
          position: ack.queued,
        });
      }
      return sendResult(ack);
    } catch (err) {
      const e = MarieError.from(err, "send_message");
      if (e.code === "budget_exceeded") this.#host.refreshUsage();
      throw e;
    } finally {
      this.#sending = this.#sending.filter((s) => s !== pending);
      this.commit();
    }
  }

  /** Stops the running answer (or the one named, or takes a queued send out of the queue). */
  async cancel(streamId?: string): Promise<void> {
    const target = streamId ?? this.getSnapshot().running?.streamId;
    const tracker = target ? this.#trackers.get(target) : undefined;
    const mark = (cancelling: boolean) => {
      if (tracker) {
        tracker.cancelling = cancelling;
        tracker.changed();
      } else if (target) {
        this.#setCancelling(target, cancelling); // a queued send: its end takes it out of the queue
      }
      this.commit();
    };
    mark(true);
    try {
      await this.#host.request("cancel_stream", target ? { conversation_id: this.id, stream_id: target } : { conversation_id: this.id });
    } catch (err) {
      mark(false);
      throw MarieError.from(err, "cancel_stream");
    }
  }

  /**
   * The named assistants `text` calls in (section 10), as the server reads it: `@name`, in any
   * case, at the start of a word; a name no assistant has, or an e-mail address, is text.
   */
  mentions(text: string): string[] {
    const names = new Map((this.#info ? this.#info.assistants : []).map((a) => [a.name.toLowerCase(), a.name]));
    const found: string[] = [];
    for (const m of String(text).matchAll(/(?:^|\s)@([A-Za-z0-9_-]+)/g)) {
      const name = names.get(m[1]!.toLowerCase());
      if (name !== undefined && !found.includes(name)) found.push(name);
    }
    return found;
  }

  /**
   * Whether a send of `text` asks for an answer (section 10): `answer` when given (the send's
   * override), else the conversation's policy: `always`, `mention` when it calls an assistant
   * in, never for `never`. Before the details are read: as `always`, the server's default.
   */
  willAnswer(text: string, answer?: boolean): boolean {
    if (answer !== undefined) return answer;
    const policy = this.#info?.answerPolicy;
    if (policy === "never") return false;
    return policy !== "mention" || this.mentions(text).length > 0;
  }

  /** Decides a tool call waiting for approval (the first decision wins; a later one is `conflict`). */
  approve(approvalId: string, approved: boolean, reason?: string): Promise<{ conversation_id: string; approval_id: string; approved: boolean }> {
    const payload: Record<string, unknown> = { conversation_id: this.id, approval_id: approvalId, approved };
    if (reason !== undefined) payload.reason = reason;
    return this.#host.request("approve_tool", payload);
  }

  /** Answers a client tool call (the first result wins; a later one is `conflict`). */
  submitToolResult(toolCallId: string, result: ToolResultInput): Promise<{ status: string }> {
    this.#ranCalls.add(toolCallId);
    const payload: Record<string, unknown> = { conversation_id: this.id, tool_call_id: toolCallId };
    if (result.error !== undefined) payload.error = String(result.error);
    else payload.output = result.output === undefined ? null : result.output;
    return this.#host.request("submit_tool_result", payload);
  }

  /** A new version of one of this user's messages, then an answer to it (section 7). */
  async edit(messageId: string, message: string): Promise<SendResult> {
    const ack = await this.#host.request<SendAck>("edit_message", { conversation_id: this.id, message_id: messageId, message, stream: true });
    if (ack.stream_id) this.#claimStream(ack.stream_id, this.#host.toolsFor({}), true);
    return sendResult(ack);
  }

  /** A new answer beside `messageId` (by default beside the active branch's last answer). */
  async regenerate(messageId?: string): Promise<SendResult> {
    const payload: Record<string, unknown> = { conversation_id: this.id, stream: true };
    if (messageId !== undefined) payload.message_id = messageId;
    const ack = await this.#host.request<SendAck>("regenerate", payload);
    if (ack.stream_id) this.#claimStream(ack.stream_id, this.#host.toolsFor({}), true);
    return sendResult(ack);
  }

  /** Makes the branch through `messageId` the active one (the whole room sees it). */
  switchBranch(messageId: string): Promise<{ message_id: string; leaf_id: string }> {
    return this.#host.request("switch_branch", { conversation_id: this.id, message_id: messageId });
  }

  /** Reads the active branch again (the newest `historyLimit` messages). */
  async loadHistory(): Promise<readonly ChatMessage[]> {
    const gen = ++this.#historyGen;
    const since = this.#addedLog.length;
    this.#historyLoads += 1;
    this.commit();
    try {
      const limit = this.#host.historyLimit;
      const ack = await this.#host.request<HistoryAck>("get_history", { conversation_id: this.id, limit });
      if (gen !== this.#historyGen) return this.#messages;
      const got = Array.isArray(ack.messages) ? ack.messages : [];
      let messages = got.map(messageFromWire);
      // What this client knew of them (live details), and what was added since the read began.
      const old = new Map(this.#messages.map((m) => [m.id, m]));
      messages = messages.map((m) => carryLive(m, old.get(m.id)));
      const have = new Set(messages.map((m) => m.id));
      for (const id of this.#addedLog.slice(since)) {
        const m = old.get(id);
        if (m && !have.has(id)) {
          messages.push(m);
          have.add(id);
        }
      }
      this.#messages = Object.freeze(this.#cutForRunning(messages));
      this.#hasOlder = got.length >= limit && limit > 0;
      this.#historyLoaded = true;
      return this.#messages;
    } finally {
      this.#historyLoads -= 1;
      if (this.#historyLoads === 0) this.#addedLog = [];
      this.commit();
    }
  }

  /** Reads the messages before the oldest one held. */
  async loadOlder(): Promise<readonly ChatMessage[]> {
    const first = this.#messages[0];
    if (!first) return this.loadHistory();
    const limit = this.#host.historyLimit;
    const ack = await this.#host.request<HistoryAck>("get_history", { conversation_id: this.id, before: first.id, limit });
    const got = (Array.isArray(ack.messages) ? ack.messages : []).map(messageFromWire);
    const have = new Set(this.#messages.map((m) => m.id));
    const older = got.filter((m) => !have.has(m.id));
    this.#hasOlder = got.length >= limit && limit > 0;
    if (older.length) this.#messages = Object.freeze([...older, ...this.#messages]);
    this.commit();
    return older;
  }

  /** Reads `get_conversation` again (title, settings, members with roles, assistants). */
  async refreshInfo(): Promise<ConversationInfo> {
    const gen = ++this.#infoGen;
    const ack = await this.#host.request<ConversationDetails>("get_conversation", { conversation_id: this.id });
    let info = infoFromWire(ack);
    if (this.#closed) return info; // deleted or left meanwhile: an answer from before
    if (gen === this.#infoGen) {
      // Who made the settings as they are stays known while they are the same.
      const prev = this.#info;
      if (prev && prev.updatedBy !== undefined && sameSettings(prev, info)) info = Object.freeze({ ...info, updatedBy: prev.updatedBy });
      this.#info = info;
      const members = info.members.map((m) => m.userId);
      const all = [...new Set([...members, ...this.#members])].filter((u) => members.includes(u));
      if (all.length) this.#members = Object.freeze(all);
      this.commit();
    }
    this.#host.listUpsert(info);
    return info;
  }

  /** Renames it or changes its settings (section 9, 10). */
  async update(changes: { title?: string; model?: string; systemPrompt?: string; answerPolicy?: "always" | "mention" | "never" }): Promise<ConversationInfo> {
    const payload: Record<string, unknown> = { conversation_id: this.id };
    if (changes.title !== undefined) payload.title = changes.title;
    if (changes.model !== undefined) payload.model = changes.model;
    if (changes.systemPrompt !== undefined) payload.system_prompt = changes.systemPrompt;
    if (changes.answerPolicy !== undefined) payload.answer_policy = changes.answerPolicy;
    const ack = await this.#host.request<ConversationDetails>("update_conversation", payload);
    const patch = { ...infoFromWire(ack), updatedBy: this.#host.userId };
    this.#info = this.#info
      ? Object.freeze({ ...this.#info, ...patch, members: this.#info.members, models: this.#info.models, assistants: this.#info.assistants, archived: this.#info.archived, unread: this.#info.unread })
      : Object.freeze(patch);
    this.commit();
    this.#host.listUpsert(this.#info);
    return this.#info;
  }

  /** Moves it into this user's archive (or out); the conversation list follows. */
  async archive(archived = true): Promise<{ conversation_id: string; archived: boolean }> {
    const ack = await this.#host.request<{ conversation_id: string; archived: boolean }>("archive_conversation", {
      conversation_id: this.id,
      archived,
    });
    // Only this user's list changes, and no event says so (section 9): the ack is the news.
    this.#host.listSetArchived(this.id, typeof ack.archived === "boolean" ? ack.archived : archived);
    return ack;
  }

  /** Deletes it (its owner, or an admin). */
  delete(): Promise<{ conversation_id: string }> {
    return this.#host.request("delete_conversation", { conversation_id: this.id });
  }

  invite(userId: string): Promise<{ conversation_id: string; user_id: string }> {
    return this.#host.request("invite", { conversation_id: this.id, user_id: userId });
  }

  removeMember(userId: string): Promise<{ conversation_id: string; user_id: string }> {
    return this.#host.request("remove_member", { conversation_id: this.id, user_id: userId });
  }

  /** The whole conversation: every message on every branch (section 9). */
  export(): Promise<ExportAck> {
    return this.#host.request("export_conversation", { conversation_id: this.id });
  }

  /**
   * Marks the conversation read up to `messageId` (default: the newest message held). One
   * request at a time: the newest mark asked for meanwhile follows it.
   */
  async markRead(messageId?: string): Promise<void> {
    const target = messageId ?? lastStoredId(this.#messages);
    if (!target) return;
    this.#unread = 0;
    this.#host.listSetUnread(this.id, 0);
    this.commit();
    const mark = this.#mark;
    mark.target = target;
    if (mark.busy) return;
    mark.busy = true;
    try {
      while (mark.target !== mark.sent) {
        const next = mark.target;
        mark.sent = next;
        // An answer that said nothing is not stored: not_found, harmless.
        await this.#host.request("mark_read", { conversation_id: this.id, message_id: next }).catch(() => undefined);
      }
    } finally {
      mark.busy = false;
    }
  }

  /** Tells the room this user is typing (at most every 2 s) or stopped. */
  typing(isTyping: boolean): void {
    if (!this.#joined || !this.#host.isConnected) return;
    const now = Date.now();
    if (isTyping && now - this.#typingSentAt < TYPING_REPEAT_MS) return;
    if (!isTyping && this.#typingSentAt === 0) return;
    this.#typingSentAt = isTyping ? now : 0;
    this.#host.request("typing", { conversation_id: this.id, typing: isTyping }).catch(() => undefined);
  }

  /**
   * Every event of this conversation's answers, in the order applied (duplicates and gaps
   * already handled): `stream_start`, the numbered events (a `stream_reset` included), then
   * `stream_end` or `stream_error`.
   */
  observeAnswers(listener: (e: AnswerEvent) => void): () => void {
    this.#answerListeners.add(listener);
    return () => {
      this.#answerListeners.delete(listener);
    };
  }

  /** The events of a running answer so far, from its start (`null` when it does not run). */
  replayAnswer(streamId: string): AnswerEvent[] | null {
    const t = this.#trackers.get(streamId);
    return t && !t.ended ? t.replay() : null;
  }

  /**
   * Whether this client answers a call of the client tool `name` in the answer `streamId` by
   * itself (a tool with `execute`, in an answer it asked for, or may have: its ack not in yet).
   */
  runsTool(streamId: string, name: string): boolean {
    if (!this.#host.autoRunTools) return false;
    const own = this.#own.get(streamId);
    const tools = own ? own.tools : this.#sending.length > 0 ? this.#host.toolsFor({}) : null;
    return Boolean(tools && typeof tools[name]?.execute === "function");
  }

  /** Whether this client asked for the answer `streamId`. */
  isMine(streamId: string): boolean {
    return this.#own.has(streamId);
  }

  /** The last `seq` held of each answer followed (for `auth.last_seqs`). */
  heldPositions(): Record<string, number> {
    const held: Record<string, number> = {};
    for (const t of this.#trackers.values()) if (!t.ended && !t.lossy) held[t.streamId] = t.lastSeq;
    return held;
  }

  get isJoined(): boolean {
    return this.#joined;
  }

  // ----------------------------------------------------- connection changes

  /** @internal The connection dropped. */
  onDisconnected(): void {
    for (const timer of this.#typing.values()) clearTimeout(timer);
    this.#typing.clear();
    this.#typingSentAt = 0;
    for (const t of this.#trackers.values()) {
      if (t.resuming) {
        t.resuming = false;
        t.changed();
      }
    }
    this.commit();
  }

  /** @internal A fresh session: rooms are gone; join again if it was joined. */
  onFreshSession(): void {
    if (!this.#joined && !this.#joining) {
      this.commit();
      return;
    }
    this.#joined = false;
    this.commit();
    this.join().catch(() => undefined);
  }

  /**
   * @internal The session was restored: `restored` says whether this room came back, `active`
   * are the answers running in it.
   */
  onRestored(restored: boolean, active: Array<{ stream_id: string; seq: number; resumed: boolean }>): void {
    if (!this.#joined) {
      this.commit();
      return;
    }
    if (!restored) {
      this.#joined = false;
      this.commit();
      this.join().catch(() => undefined);
      return;
    }
    const running = new Set<string>();
    for (const s of active) {
      running.add(s.stream_id);
      if (this.#gone.has(s.stream_id)) continue;
      const t = this.#tracker(s.stream_id);
      if (!s.resumed) this.#resume(t);
    }
    // Answers that ended while the connection was down: their ends are in the log.
    for (const t of this.#trackers.values()) if (!t.ended && !running.has(t.streamId)) this.#resume(t);
    this.commit();
    // Messages that asked no answer are in no answer's log: the history has them.
    this.loadHistory().catch(() => undefined);
  }

  // ------------------------------------------------------------------ events

  /** @internal An event of this conversation's room (or about it). */
  handle(event: string, data: any): void {
    if (!data || typeof data !== "object") return;
    switch (event) {
      case "message_added":
        return this.#onMessageAdded(data);
      case "queued":
        this.#addQueued(data);
        return this.commit();
      case "stream_start":
        return this.#onStreamStart(data);
      case "stream_end":
        return this.#onStreamEnd(data);
      case "stream_error":
        return this.#onStreamError(data);
      case "message_response":
        return this.#onMessageResponse(data);
      case "user_typing":
        return this.#onTyping(data);
      case "user_joined":
        if (typeof data.user_id === "string" && !this.#members.includes(data.user_id)) {
          this.#members = Object.freeze([...this.#members, data.user_id]);
          this.commit();
        }
        return;
      case "user_left":
        // Leaving the room keeps the access; a removal shows in the details.
        if (this.#info) this.refreshInfo().catch(() => undefined);
        return;
      case "read":
        if (typeof data.user_id === "string" && data.message_id !== undefined) {
          this.#readMarks = Object.freeze({ ...this.#readMarks, [data.user_id]: String(data.message_id) });
          this.commit();
        }
        return;
      case "branch_switched":
        this.loadHistory().catch(() => undefined);
        return;
      case "conversation_updated":
        return this.#onUpdated(data);
      case "conversation_deleted":
        return this.#close("deleted", data.deleted_by ?? null);
      case "removed":
        return this.#close("removed", data.removed_by ?? null);
      case "left":
        this.#joined = false;
        return this.commit();
      case "error":
        this.#lastError = MarieError.from(data);
        return this.commit();
      default:
        if ((NUMBERED_EVENTS as readonly string[]).includes(event)) {
          return this.#onNumbered({ event: event as NumberedEventName, data } as NumberedEvent);
        }
    }
  }

  #onJoined(ack: JoinedAck): void {
    this.#joined = true;
    this.#closed = null;
    if (typeof ack.created === "boolean") this.#created = ack.created;
    const members = (Array.isArray(ack.members) ? ack.members : [])
      .map((m) => (typeof m === "string" ? m : m && typeof m.user_id === "string" ? m.user_id : null))
      .filter((m): m is string => typeof m === "string");
    const me = this.#host.userId;
    if (me && !members.includes(me)) members.push(me);
    this.#members = Object.freeze(members);
    const listed = this.#host.listUnread(this.id);
    if (listed !== undefined) this.#unread = listed;
    // The queue as the server has it now.
    if (Array.isArray(ack.queued)) {
      this.#queue = [];
      for (const q of ack.queued) this.#addQueued({ ...q, conversation_id: this.id });
    }
    const active = ack.active_stream;
    if (active && typeof active.stream_id === "string" && !this.#gone.has(active.stream_id)) {
      const t = this.#tracker(active.stream_id);
      if (active.pending_approval) t.joinedApproval = active.pending_approval;
      if (active.pending_tool_call) t.joinedToolCall = active.pending_tool_call;
      t.changed();
      this.#resume(t);
    }
    // Answers followed before that ended meanwhile: their ends are in the log.
    for (const t of this.#trackers.values()) {
      if (!t.ended && (!active || t.streamId !== active.stream_id)) this.#resume(t);
    }
    this.commit();
  }

  #tracker(streamId: string): AnswerTracker {
    let t = this.#trackers.get(streamId);
    if (!t) {
      t = new AnswerTracker(this.id, streamId);
      t.mine = this.#own.has(streamId);
      this.#trackers.set(streamId, t);
      this.#removeQueued(streamId, false);
    }
    return t;
  }

  #claimStream(streamId: string, tools: ClientTools, branched = false): void {
    if (!this.#own.has(streamId)) this.#own.set(streamId, { tools });
    const t = this.#trackers.get(streamId);
    if (t) {
      t.mine = true;
      if (branched) t.branched = true;
      t.changed();
    }
    // Client tool calls that came before this ack.
    const waiting = this.#deferredCalls.filter((c) => c.streamId === streamId);
    this.#deferredCalls = this.#deferredCalls.filter((c) => c.streamId !== streamId);
    for (const c of waiting) this.#maybeRunTool(c.streamId, c.toolCallId, c.name, c.arguments);
    if (this.#deferredCalls.length && this.#sending.length === 0) this.#deferredCalls = [];
    this.commit();
  }

  #emitAnswer(e: AnswerEvent): void {
    for (const l of [...this.#answerListeners]) {
      try {
        l(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #onStreamStart(data: StreamStartEvent): void {
    const streamId = data.stream_id;
    if (typeof streamId !== "string" || this.#gone.has(streamId)) return;
    this.#removeQueued(streamId, false);
    const isNew = !this.#trackers.has(streamId);
    const t = this.#tracker(streamId);
    if (typeof data.message_id === "string") t.messageId = data.message_id;
    if (data.parent_id !== undefined) t.parentId = data.parent_id === null ? null : String(data.parent_id);
    if (typeof data.assistant === "string" && data.assistant) t.assistant = data.assistant;
    t.changed();
    if (isNew && this.#historyLoaded) {
      // The question it answers is normally the newest message. When it is not, the answer
      // was started beside an older one (a regeneration: the answer it replaces goes).
      const parent = t.parentId ?? null;
      const last = lastStoredId(this.#messages);
      if (parent !== null && parent !== last) {
        const at = this.#messages.findIndex((m) => m.id === parent);
        if (at >= 0) {
          this.#messages = Object.freeze(this.#messages.slice(0, at + 1));
          t.branched = true;
        } else {
          this.loadHistory().catch(() => undefined);
        }
      }
    }
    this.commit();
    this.#emitAnswer({ event: "stream_start", data });
  }

  #onNumbered(e: NumberedEvent): void {
    const streamId = e.data.stream_id;
    if (typeof streamId !== "string" || this.#gone.has(streamId)) return;
    const t = this.#tracker(streamId);
    const result = t.offer(e);
    if (result === "gap") {
      if (!t.lossy) this.#resume(t);
      this.commit();
      return;
    }
    if (result === "duplicate") return;
    if (e.event === "tool_call") {
      const id = e.data.tool_call_id;
      const client = e.data.client === true || t.parts.some((p) => p.type === "tool" && p.toolCallId === id && p.client);
      if (client) this.#maybeRunTool(streamId, id, e.data.name, e.data.arguments);
    }
    this.commit();
    this.#emitAnswer(e);
  }

  /** Asks for what this client missed of an answer (one resume at a time per answer). */
  #resume(t: AnswerTracker): void {
    if (t.resuming || t.lossy || t.ended || !this.#host.isConnected) return;
    t.resuming = true;
    t.changed();
    const from = t.lastSeq;
    this.#host
      .request("resume_stream", { conversation_id: this.id, stream_id: t.streamId, last_seq: from })
      .then(
        () => {
          t.resuming = false;
          t.changed();
          this.commit();
        },
        (err) => {
          t.resuming = false;
          t.changed();
          const e = MarieError.from(err, "resume_stream");
          if (e.code === "disconnected" || e.code === "timeout" || e.code === "closed") {
            // The reconnect resumes it (auth.last_seqs).
            this.commit();
            return;
          }
          // The log cannot help: show the live tail as it comes, and check it still runs.
          t.lossy = true;
          this.commit();
          this.#verifyRunning(t);
        },
      );
    this.commit();
  }

  /** After a failed resume: drops the answer when the server says it no longer runs. */
  #verifyRunning(t: AnswerTracker): void {
    this.#host
      .request<JoinedAck>("join_conversation", { conversation_id: this.id })
      .then((ack) => {
        if (t.ended) return;
        if (!ack.active_stream || ack.active_stream.stream_id !== t.streamId) {
          t.ended = true;
          this.#trackers.delete(t.streamId);
          this.#gone.add(t.streamId);
          this.commit();
          this.loadHistory().catch(() => undefined);
        }
      })
      .catch(() => undefined);
  }

  #onStreamEnd(data: StreamEndEvent): void {
    const streamId = data.stream_id;
    if (typeof streamId !== "string") return;
    const t = this.#trackers.get(streamId);
    if (!t) {
      // An end told again (a resume replays it), or a queued send that never started
      // (cancelled while it waited, also one this client never saw queued).
      if (this.#gone.has(streamId) || this.#queue.some((q) => q.streamId === streamId) || (data.status === "cancelled" && !data.full_content)) {
        this.#removeQueued(streamId, true);
        this.commit();
        return;
      }
    }
    const tracker = t ?? this.#tracker(streamId);
    tracker.ended = true;
    this.#trackers.delete(streamId);
    this.#gone.add(streamId);
    this.#removeQueued(streamId, true);
    const content = typeof data.full_content === "string" ? data.full_content : textOf(tracker.parts);
    const id = typeof data.message_id === "string" ? data.message_id : tracker.messageId;
    const status = data.status ?? "complete";
    const stored = parts(data, content, tracker.parts);
    const saidNothing = !content && stored.length === 0;
    if (id && !this.#messages.some((m) => m.id === id) && !(saidNothing && status !== "complete")) {
      const msg: ChatMessage = {
        id,
        role: "assistant",
        content,
        parentId: lastStoredId(this.#messages),
        parts: stored,
        status,
        streamId,
        createdAt: Date.now(),
        ...(tracker.assistant ? { assistant: tracker.assistant } : {}),
        ...(typeof data.finish_reason === "string" ? { finishReason: data.finish_reason } : {}),
        ...(data.usage ? { usage: data.usage } : {}),
      };
      this.#append(msg);
      this.#unread += 1;
      this.#host.listActivity(this.id, "assistant", content);
    }
    this.commit();
    this.#emitAnswer({ event: "stream_end", data });
    this.#host.refreshUsage();
    // A regenerated answer: the history gives the versions of the branch.
    if (tracker.branched) this.loadHistory().catch(() => undefined);
  }

  #onStreamError(data: StreamErrorEvent): void {
    const streamId = data.stream_id;
    if (typeof streamId !== "string") return;
    const t = this.#trackers.get(streamId);
    if (data.code === "resume_unavailable" && t && !t.ended) {
      // Not the answer's end: this client's resume could not be served (the ack says so too).
      return;
    }
    if (!t && this.#gone.has(streamId)) return; // told again
    const error = MarieError.from({ code: data.code ?? "error", message: data.error ?? "the answer failed", retryable: data.retryable });
    this.#lastError = error;
    if (!t) {
      if (this.#queue.some((q) => q.streamId === streamId)) {
        // A queued send that could not be answered when its turn came.
        this.#removeQueued(streamId, true);
        this.commit();
        this.#emitAnswer({ event: "stream_error", data });
        return;
      }
    }
    const tracker = t ?? this.#tracker(streamId);
    tracker.ended = true;
    this.#trackers.delete(streamId);
    this.#gone.add(streamId);
    const content = textOf(tracker.parts);
    const id = tracker.messageId ?? `stream:${streamId}`;
    if (!this.#messages.some((m) => m.id === id)) {
      this.#append({
        id,
        role: "assistant",
        content,
        parentId: lastStoredId(this.#messages),
        parts: tracker.parts,
        status: "error",
        streamId,
        createdAt: Date.now(),
        error: { code: error.code, message: error.message, ...(error.retryable !== undefined ? { retryable: error.retryable } : {}) },
        ...(tracker.assistant ? { assistant: tracker.assistant } : {}),
      });
    }
    this.commit();
    this.#emitAnswer({ event: "stream_error", data });
    this.#host.refreshUsage();
  }

  #onMessageResponse(data: { stream_id?: string; message_id?: string; message?: string; assistant?: string }): void {
    if (typeof data.message_id !== "string") return;
    if (typeof data.stream_id === "string") {
      this.#trackers.delete(data.stream_id);
      this.#gone.add(data.stream_id);
      this.#removeQueued(data.stream_id, true);
    }
    if (!this.#messages.some((m) => m.id === data.message_id)) {
      const content = typeof data.message === "string" ? data.message : "";
      this.#append({
        id: data.message_id,
        role: "assistant",
        content,
        parentId: lastStoredId(this.#messages),
        parts: content ? [{ type: "text", text: content }] : [],
        status: "complete",
        createdAt: Date.now(),
        ...(typeof data.stream_id === "string" ? { streamId: data.stream_id } : {}),
        ...(typeof data.assistant === "string" ? { assistant: data.assistant } : {}),
      });
      this.#unread += 1;
      this.#host.listActivity(this.id, "assistant", content);
    }
    this.commit();
    this.#host.refreshUsage();
  }

  #onMessageAdded(data: { message?: WireMessage }): void {
    const wire = data.message;
    if (!wire || wire.message_id === undefined || wire.message_id === null) return;
    const m = messageFromWire(wire);
    // A queued send whose turn came: out of the queue.
    for (const q of this.#queue) if (q.messageId === m.id) this.#removeQueued(q.streamId, false);
    // This client's send that it stores (its ack may come after).
    if (m.userId !== undefined && m.userId === this.#host.userId) {
      const pending = this.#sending.find((s) => !s.claimed && s.message === m.content);
      if (pending) {
        pending.claimed = true;
        this.#sending = this.#sending.filter((s) => s !== pending);
      }
    }
    if (this.#messages.some((x) => x.id === m.id)) {
      this.commit();
      return;
    }
    const last = lastStoredId(this.#messages);
    if (this.#historyLoaded && m.parentId !== last) {
      // Beside an older message (an edit) or after something this client missed.
      const at = m.parentId === null ? -1 : this.#messages.findIndex((x) => x.id === m.parentId);
      if (m.parentId === null || at >= 0) {
        this.#messages = Object.freeze(this.#messages.slice(0, at + 1));
      }
      this.#append(m);
      this.loadHistory().catch(() => undefined); // the versions (siblings)
    } else {
      this.#append(m);
    }
    this.#unread += 1;
    this.#host.listActivity(this.id, m.role, m.content);
    this.commit();
  }

  #append(m: ChatMessage): void {
    this.#messages = Object.freeze([...this.#messages, m]);
    this.#addedLog.push(m.id);
  }

  /** A running answer's question is in the history: a later answer after it is the one it replaces. */
  #cutForRunning(messages: ChatMessage[]): ChatMessage[] {
    let out = messages;
    for (const t of this.#trackers.values()) {
      if (t.ended || !t.parentId) continue;
      if (t.messageId && out.some((m) => m.id === t.messageId)) continue;
      const at = out.findIndex((m) => m.id === t.parentId);
      if (at >= 0 && at < out.length - 1 && out[at + 1]!.role === "assistant") out = out.slice(0, at + 1);
    }
    return out;
  }

  #addQueued(q: QueuedEvent): void {
    const streamId = q.stream_id;
    if (typeof streamId !== "string" || this.#gone.has(streamId) || this.#trackers.has(streamId)) return;
    if (this.#queue.some((x) => x.streamId === streamId)) return;
    const me = this.#host.userId;
    this.#queue.push({
      streamId,
      ...(q.message_id !== undefined && q.message_id !== null ? { messageId: String(q.message_id) } : {}),
      ...(q.user_id !== undefined ? { userId: q.user_id } : {}),
      message: typeof q.message === "string" ? q.message : "",
      position: this.#queue.length + 1,
      mine: (q.user_id !== undefined && q.user_id === me) || this.#own.has(streamId),
      cancelling: false,
    });
  }

  #setCancelling(streamId: string, cancelling: boolean): void {
    this.#queue = this.#queue.map((q) => (q.streamId === streamId && q.cancelling !== cancelling ? { ...q, cancelling } : q));
  }

  #removeQueued(streamId: string, gone: boolean): void {
    if (gone) this.#gone.add(streamId);
    const at = this.#queue.findIndex((q) => q.streamId === streamId);
    if (at < 0) return;
    this.#queue = this.#queue.filter((q) => q.streamId !== streamId).map((q, i) => (q.position === i + 1 ? q : { ...q, position: i + 1 }));
  }

  #onTyping(data: { user_id?: string; typing?: boolean }): void {
    const user = data.user_id;
    if (typeof user !== "string" || user === this.#host.userId) return;
    clearTimeout(this.#typing.get(user));
    if (data.typing) {
      const timer = setTimeout(() => {
        this.#typing.delete(user);
        this.commit();
      }, TYPING_HIDE_MS);
      (timer as { unref?: () => void }).unref?.();
      this.#typing.set(user, timer);
    } else {
      this.#typing.delete(user);
    }
    this.commit();
  }

  #onUpdated(data: ConversationUpdatedEvent): void {
    if (this.#info) {
      this.#info = Object.freeze({
        ...this.#info,
        ...(data.title !== undefined ? { title: data.title } : {}),
        ...(data.model !== undefined ? { model: data.model } : {}),
        ...(data.answer_policy !== undefined ? { answerPolicy: data.answer_policy } : {}),
        ...(typeof data.updated_at === "number" ? { updatedAt: data.updated_at } : {}),
        ...(data.updated_by !== undefined ? { updatedBy: data.updated_by } : {}),
      });
      this.commit();
    }
    // The prompt and the members may have changed too.
    if (this.#joined) this.refreshInfo().catch(() => undefined);
  }

  #close(reason: "deleted" | "removed", by: string | null): void {
    this.#closed = Object.freeze({ reason, by });
    this.#joined = false;
    this.#clearLive(true);
    this.commit();
  }

  /** Stops following the room's answers; `forGood`: they can never be told again (deleted, removed). */
  #clearLive(forGood: boolean): void {
    for (const t of this.#trackers.values()) {
      t.ended = true;
      if (forGood) this.#gone.add(t.streamId);
    }
    this.#trackers.clear();
    this.#queue = [];
    for (const timer of this.#typing.values()) clearTimeout(timer);
    this.#typing.clear();
  }

  // ------------------------------------------------------------ client tools

  #maybeRunTool(streamId: string, toolCallId: string, name: string, args: unknown): void {
    if (!this.#host.autoRunTools || this.#ranCalls.has(toolCallId)) return;
    const own = this.#own.get(streamId);
    if (!own) {
      // Its send's ack may not be in yet.
      if (this.#sending.length > 0) this.#deferredCalls.push({ streamId, toolCallId, name, arguments: args });
      return;
    }
    const tool: ClientTool | undefined = own.tools[name];
    if (!tool || typeof tool.execute !== "function") return;
    this.#ranCalls.add(toolCallId);
    this.#runningCalls.add(toolCallId);
    this.commit();
    const execute = tool.execute;
    void (async () => {
      let result: ToolResultInput;
      try {
        result = { output: await execute(args, { conversationId: this.id, streamId, toolCallId, name }) };
      } catch (err) {
        result = { error: err instanceof Error ? err.message : String(err) };
      }
      try {
        await this.submitToolResult(toolCallId, result);
      } catch (err) {
        // Another member answered first (conflict), or the answer ended (not_found).
        const e = MarieError.from(err);
        if (e.code !== "conflict" && e.code !== "not_found") {
          this.#lastError = e;
          this.#ranCalls.delete(toolCallId);
        }
      } finally {
        this.#runningCalls.delete(toolCallId);
        this.commit();
      }
    })();
  }
}

function sendResult(ack: SendAck): SendResult {
  return Object.freeze({
    messageId: String(ack.message_id),
    ...(typeof ack.stream_id === "string" ? { streamId: ack.stream_id } : {}),
    duplicate: ack.duplicate === true,
    ...(typeof ack.queued === "number" ? { queued: ack.queued } : {}),
    answered: ack.answered !== false,
  });
}

function parts(data: StreamEndEvent, content: string, live: readonly Part[]): readonly Part[] {
  if (Array.isArray(data.parts) && data.parts.length) return mergeLiveDetails(partsFromWire(data.parts, content), live);
  return content ? [{ type: "text", text: content }] : [];
}

/** The history's version of a message with what only live events told this client kept. */
function carryLive(fresh: ChatMessage, old: ChatMessage | undefined): ChatMessage {
  if (!old || old.role !== "assistant") return fresh;
  return {
    ...fresh,
    parts: mergeLiveDetails(fresh.parts, old.parts),
    ...(old.status !== undefined ? { status: old.status } : {}),
    ...(old.finishReason !== undefined ? { finishReason: old.finishReason } : {}),
    ...(old.usage !== undefined ? { usage: old.usage } : {}),
    ...(old.streamId !== undefined ? { streamId: old.streamId } : {}),
  };
}

/** The newest message stored on the server (not an answer that failed here). */
function lastStoredId(messages: readonly ChatMessage[]): string | null {
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i]!;
    if (m.status !== "error") return m.id;
  }
  return null;
}

/** The same title, model and answer policy (what `conversation_updated` tells). */
function sameSettings(a: ConversationInfo, b: ConversationInfo): boolean {
  return a.title === b.title && (a.model ?? null) === (b.model ?? null) && a.answerPolicy === b.answerPolicy;
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i] as unknown;
    const y = b[i] as unknown;
    if (x === y) continue;
    if (x && y && typeof x === "object" && typeof y === "object") {
      if (!shallowEqual(x as Record<string, unknown>, y as Record<string, unknown>)) return false;
    } else return false;
  }
  return true;
}

function shallowEqual(a: object, b: object): boolean {
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (!Object.is((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}
