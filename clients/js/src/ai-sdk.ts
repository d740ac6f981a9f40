// `@marie-rs/client/ai-sdk`: the AI SDK's ChatTransport over a MarieClient's Socket.IO
// connection, and the mapping of MARIE's answer events to UI message chunks (the one the
// server's `/api/ai-sdk/chat` endpoint uses too, PROTOCOL section 12).

import type { ChatTransport, UIMessage, UIMessageChunk } from "ai";
import type { MarieClient } from "./client.js";
import type { Conversation } from "./conversation.js";
import { MarieError } from "./errors.js";
import type { AnswerEvent } from "./protocol.js";
import type { ChatMessage, ClientTools, SendOptions } from "./types.js";

/** The UI message chunks this mapping emits (a subset of the AI SDK's `UIMessageChunk`). */
export type MarieUIChunk =
  | { type: "start"; messageId?: string }
  | { type: "start-step" }
  | { type: "finish-step" }
  | { type: "reset-step" }
  | { type: "text-start"; id: string }
  | { type: "text-delta"; id: string; delta: string }
  | { type: "text-end"; id: string }
  | { type: "reasoning-start"; id: string }
  | { type: "reasoning-delta"; id: string; delta: string }
  | { type: "reasoning-end"; id: string }
  | { type: "tool-input-start"; toolCallId: string; toolName: string }
  | { type: "tool-input-delta"; toolCallId: string; inputTextDelta: string }
  | { type: "tool-input-available"; toolCallId: string; toolName: string; input: unknown }
  | { type: "tool-approval-request"; approvalId: string; toolCallId: string }
  | { type: "tool-approval-response"; approvalId: string; approved: boolean; reason?: string }
  | { type: "tool-output-available"; toolCallId: string; output: unknown }
  | { type: "tool-output-error"; toolCallId: string; errorText: string }
  | { type: "tool-output-denied"; toolCallId: string }
  | { type: "finish"; finishReason: "stop" | "length" | "content-filter" | "tool-calls" | "interrupted" | "other" }
  | { type: "error"; errorText: string }
  | { type: "abort"; reason?: "cancelled" | "interrupted" };

/** The SDK's `finishReason` of an answer that completed (`stream_end.finish_reason`). */
function finishReason(reason: string | undefined): Extract<MarieUIChunk, { type: "finish" }>["finishReason"] {
  switch (reason) {
    case undefined:
    case "stop":
      return "stop";
    case "length":
    case "budget":
      return "length";
    case "content_filter":
      return "content-filter";
    case "tool_calls":
    case "max_steps":
      return "tool-calls";
    case "interrupted":
      return "interrupted";
    default:
      return "other";
  }
}

/**
 * Maps one answer's events, in order, to UI message chunks, exactly as the server's
 * `/api/ai-sdk/chat` endpoint does (`marie-axum/src/http/ai_sdk/chunks.rs`, `Encoder`):
 * - `stream_start` → `start {messageId}`, `start-step`;
 * - `stream_chunk` → `text-start {id}` / `text-delta {id, delta}` / `text-end {id}`, and
 *   `stream_reasoning` → `reasoning-start|delta|end` likewise (a part ends when another kind
 *   begins or the answer ends; ids `text-1`, `reasoning-2`, ... new in each response);
 * - `tool_call_start` → `tool-input-start {toolCallId, toolName}`; `tool_call_delta` →
 *   `tool-input-delta {toolCallId, inputTextDelta}` (of a call begun in this response);
 *   `tool_call` → `tool-input-available {toolCallId, toolName, input}` (after its
 *   `tool-input-start`, when none was sent); `tool_approval_request` → `tool-approval-request
 *   {approvalId, toolCallId}`; `tool_approval` → `tool-approval-response {approvalId,
 *   approved, reason?}`; `tool_result` → `tool-output-available {toolCallId, output}`,
 *   `tool-output-error {toolCallId, errorText}`, or `tool-output-denied {toolCallId}` after a
 *   denial;
 * - the first text, reasoning or tool call after a tool result starts a new step
 *   (`finish-step`, `start-step`);
 * - `stream_reset` → `reset-step` (the client drops the failed step's parts), or nothing
 *   when the failed step had said nothing yet after the tools' results;
 * - `stream_end` → the open part ends, `finish-step`, then `finish {finishReason}` (status
 *   `complete`; `stop`, `length`, `content-filter`, `tool-calls`, `interrupted` or `other`) or
 *   `abort {reason}` (`cancelled`, `interrupted`); `stream_error` → the open part ends, `error
 *   {errorText}`.
 */
export class UIChunkMapper {
  #open: { kind: "text" | "reasoning"; id: string } | null = null;
  #inStep = false;
  #afterTools = false;
  #denied = false;
  #started = false;
  #begun = new Set<string>();
  #parts = 0;
  /** The last `seq` mapped. */
  lastSeq = 0;
  /** The answer ended (`stream_end` / `stream_error`). */
  done = false;

  /**
   * @param options.started The `start` chunk was sent already (a continuation): a
   * `stream_start` is not mapped again.
   */
  constructor(options: { started?: boolean } = {}) {
    if (options.started) this.#started = true;
  }

  #close(out: MarieUIChunk[]): void {
    if (!this.#open) return;
    out.push(this.#open.kind === "text" ? { type: "text-end", id: this.#open.id } : { type: "reasoning-end", id: this.#open.id });
    this.#open = null;
  }

  /** Opens a model step if none is, or a new one after tool results. */
  #step(out: MarieUIChunk[]): void {
    const afterTools = this.#afterTools;
    this.#afterTools = false;
    if (afterTools && this.#inStep) {
      this.#close(out);
      out.push({ type: "finish-step" });
      this.#inStep = false;
    }
    if (!this.#inStep) {
      out.push({ type: "start-step" });
      this.#inStep = true;
    }
  }

  #begin(out: MarieUIChunk[], toolCallId: string, toolName: string): void {
    if (this.#begun.has(toolCallId)) return;
    this.#begun.add(toolCallId);
    out.push({ type: "tool-input-start", toolCallId, toolName });
  }

  #openPart(out: MarieUIChunk[], kind: "text" | "reasoning"): string {
    this.#step(out);
    if (this.#open && this.#open.kind === kind) return this.#open.id;
    this.#close(out);
    this.#parts += 1;
    const id = `${kind}-${this.#parts}`;
    out.push(kind === "text" ? { type: "text-start", id } : { type: "reasoning-start", id });
    this.#open = { kind, id };
    return id;
  }

  /** Ends the response at a wait for a person: the open part and the step. */
  pause(): MarieUIChunk[] {
    const out: MarieUIChunk[] = [];
    this.#close(out);
    if (this.#inStep) out.push({ type: "finish-step" });
    this.#inStep = false;
    return out;
  }

  /** The chunks of one event. */
  map(e: AnswerEvent): MarieUIChunk[] {
    const out: MarieUIChunk[] = [];
    if (this.done) return out;
    if (e.event !== "stream_start" && e.event !== "stream_end" && e.event !== "stream_error") {
      if (typeof e.data.seq === "number") {
        if (e.data.seq <= this.lastSeq) return out; // mapped already
        this.lastSeq = e.data.seq;
      }
    }
    if (!this.#started && e.event !== "stream_start") {
      // Its stream_start was never seen (joined late): the message starts here all the same.
      out.push({ type: "start" });
      this.#started = true;
    }
    switch (e.event) {
      case "stream_start":
        if (this.#started) break;
        this.#started = true;
        out.push(typeof e.data.message_id === "string" ? { type: "start", messageId: e.data.message_id } : { type: "start" });
        out.push({ type: "start-step" });
        this.#inStep = true;
        break;
      case "stream_chunk":
      case "stream_reasoning": {
        const kind = e.event === "stream_chunk" ? "text" : "reasoning";
        const id = this.#openPart(out, kind);
        const delta = typeof e.data.content === "string" ? e.data.content : "";
        out.push(kind === "text" ? { type: "text-delta", id, delta } : { type: "reasoning-delta", id, delta });
        break;
      }
      case "tool_call_start":
        this.#step(out);
        this.#close(out);
        this.#begin(out, e.data.tool_call_id, e.data.name);
        break;
      case "tool_call_delta":
        if (this.#begun.has(e.data.tool_call_id)) {
          out.push({ type: "tool-input-delta", toolCallId: e.data.tool_call_id, inputTextDelta: typeof e.data.delta === "string" ? e.data.delta : "" });
        }
        break;
      case "tool_call":
        this.#step(out);
        this.#close(out);
        this.#begin(out, e.data.tool_call_id, e.data.name);
        out.push({ type: "tool-input-available", toolCallId: e.data.tool_call_id, toolName: e.data.name, input: e.data.arguments ?? null });
        break;
      case "tool_approval_request":
        this.#close(out);
        out.push({ type: "tool-approval-request", approvalId: e.data.approval_id, toolCallId: e.data.tool_call_id });
        break;
      case "tool_approval":
        this.#denied = e.data.approved !== true;
        out.push({
          type: "tool-approval-response",
          approvalId: e.data.approval_id,
          approved: e.data.approved === true,
          ...(typeof e.data.reason === "string" ? { reason: e.data.reason } : {}),
        });
        break;
      case "tool_result": {
        this.#close(out);
        const toolCallId = e.data.tool_call_id;
        if (this.#denied) {
          this.#denied = false;
          out.push({ type: "tool-output-denied", toolCallId });
        } else if (e.data.error !== undefined && e.data.error !== null) {
          out.push({ type: "tool-output-error", toolCallId, errorText: String(e.data.error) });
        } else {
          out.push({ type: "tool-output-available", toolCallId, output: e.data.output ?? null });
        }
        this.#afterTools = true;
        break;
      }
      case "stream_reset":
        // Nothing of the failed step was sent yet after the tools' results: nothing to drop
        // (a reset-step now would drop the tools' step, which the retry does not repeat).
        if (this.#afterTools) break;
        this.#open = null; // dropped with the step's parts
        out.push({ type: "reset-step" });
        break;
      case "stream_end":
        this.#close(out);
        if (this.#inStep) out.push({ type: "finish-step" });
        this.#inStep = false;
        out.push(
          e.data.status === "cancelled" || e.data.status === "interrupted"
            ? { type: "abort", reason: e.data.status }
            : { type: "finish", finishReason: finishReason(e.data.finish_reason) },
        );
        this.done = true;
        break;
      case "stream_error":
        this.#close(out);
        out.push({ type: "error", errorText: e.data.error ?? e.data.code ?? "the answer failed" });
        this.done = true;
        break;
    }
    return out;
  }
}

/**
 * The messages of a conversation snapshot as the AI SDK's UIMessages (`useChat({messages})`),
 * as the server's `GET /api/ai-sdk/chat/{id}/messages` gives them: user messages as one text
 * part, answers as their steps (`step-start`), text, reasoning and tool parts
 * (`tool-{name}`, `input-available` / `output-available` / `output-error`).
 */
export function toUIMessages(messages: readonly ChatMessage[]): UIMessage[] {
  return messages
    .filter((m) => m.status !== "error")
    .map((m): UIMessage => {
      if (m.role !== "assistant") {
        return { id: m.id, role: m.role === "user" ? "user" : "system", parts: [{ type: "text", text: m.content, state: "done" }] };
      }
      const parts: Array<Record<string, unknown>> = [{ type: "step-start" }];
      if (m.parts.length === 0) parts.push({ type: "text", text: m.content, state: "done" });
      let afterTools = false;
      for (const p of m.parts) {
        if (afterTools && p.type !== "tool") parts.push({ type: "step-start" });
        afterTools = false;
        if (p.type === "text" || p.type === "reasoning") {
          parts.push({ type: p.type, text: p.text, state: "done" });
        } else if (p.type === "tool") {
          const done = p.state === "output-available" || p.state === "output-error" || p.state === "output-denied";
          afterTools = done;
          parts.push({
            type: `tool-${p.name}`,
            toolCallId: p.toolCallId,
            state: p.state === "output-available" ? "output-available" : done ? "output-error" : "input-available",
            input: p.input ?? null,
            ...(p.state === "output-available" ? { output: p.output ?? null } : {}),
            ...(done && p.state !== "output-available" ? { errorText: p.error ?? "error" } : {}),
          });
        }
      }
      return { id: m.id, role: "assistant", parts: parts as UIMessage["parts"] };
    });
}

export interface MarieChatTransportOptions {
  /**
   * Client tools the UI answers (`useChat`'s `onToolCall` + `addToolOutput`): offered with
   * each send, without `execute`. Tools registered on the MarieClient with `execute` are
   * offered and run by the client itself.
   */
  tools?: ClientTools;
  /** Options of every send (`onBusy`, `answer`, ...). */
  sendOptions?: Omit<SendOptions, "tools" | "clientMessageId">;
  /**
   * End the response stream when the answer waits for something the UI gives (an approval,
   * the output of a client tool the UI answers), with `finish {finishReason:"tool-calls"}`,
   * so that `useChat` can post it (its `sendAutomaticallyWhen`); the next `sendMessages`
   * applies it and continues the same answer. Default true.
   */
  endWhenWaiting?: boolean;
  /** Cancel the answer (`cancel_stream`) when the request is aborted (`stop()`). Default true. */
  cancelOnAbort?: boolean;
}

type AnyUIMessage = UIMessage;

interface UIToolPartLike {
  type: string;
  toolCallId?: string;
  state?: string;
  output?: unknown;
  errorText?: string;
  approval?: { id?: string; approved?: boolean; reason?: string };
}

function textOfUIMessage(m: AnyUIMessage): string {
  const parts = Array.isArray(m.parts) ? (m.parts as Array<{ type: string; text?: string }>) : [];
  return parts
    .filter((p) => p.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("");
}

function toolParts(m: AnyUIMessage): UIToolPartLike[] {
  const parts = Array.isArray(m.parts) ? (m.parts as unknown as UIToolPartLike[]) : [];
  return parts.filter((p) => p && typeof p.type === "string" && (p.type.startsWith("tool-") || p.type === "dynamic-tool"));
}

/**
 * The AI SDK's `ChatTransport` over a MarieClient: `chatId` is the conversation id (joined
 * first; an unknown id is created on join). `submit-message` sends the last user message's
 * text (its id is the send's idempotency key); `regenerate-message` regenerates. Approval
 * responses and client tool outputs in the posted messages are applied first
 * (`approve_tool`, `submit_tool_result`), and continue the answer that waited for them.
 */
export class MarieChatTransport implements ChatTransport<AnyUIMessage> {
  readonly client: MarieClient;
  #options: MarieChatTransportOptions;
  /** Where each answer's last response stream stopped (`endWhenWaiting`), and its message id. */
  #paused = new Map<string, { seq: number; messageId?: string }>();
  /** The answer each chat's last response stream stopped in. */
  #pausedChat = new Map<string, string>();

  constructor(client: MarieClient, options: MarieChatTransportOptions = {}) {
    this.client = client;
    this.#options = options;
  }

  async #conversation(chatId: string): Promise<Conversation> {
    const conv = this.client.conversation(chatId);
    if (!conv.isJoined) await conv.join();
    return conv;
  }

  async sendMessages(options: {
    trigger: "submit-message" | "regenerate-message";
    chatId: string;
    messageId: string | undefined;
    messages: AnyUIMessage[];
    abortSignal: AbortSignal | undefined;
    headers?: Record<string, string> | Headers;
    body?: object;
    metadata?: unknown;
  }): Promise<ReadableStream<UIMessageChunk>> {
    const conv = await this.#conversation(options.chatId);
    const follow = new Follower(conv); // before anything is sent: no event is missed
    try {
      const answered = await this.#applyResponses(conv, options.messages);
      const last = options.messages[options.messages.length - 1];
      if (options.trigger === "regenerate-message") {
        const known = options.messageId && conv.getSnapshot().messages.some((m) => m.id === options.messageId && m.role === "assistant");
        const ack = await conv.regenerate(known ? options.messageId : undefined);
        return this.#stream(conv, follow, ack.streamId, false, options.abortSignal);
      }
      if (last && last.role === "user") {
        const text = textOfUIMessage(last);
        // `sendMessage({text, messageId})`: the user's message of that id, edited.
        if (options.messageId !== undefined && options.messageId === last.id && conv.getSnapshot().messages.some((m) => m.id === last.id && m.role === "user")) {
          const ack = await conv.edit(last.id, text);
          return this.#stream(conv, follow, ack.streamId, false, options.abortSignal);
        }
        // The UI message's id is the send's idempotency key (a retried request starts nothing twice).
        const key = typeof last.id === "string" && /^[A-Za-z0-9_.:@-]{1,128}$/.test(last.id) ? last.id : undefined;
        const ack = await conv.send(text, {
          ...(this.#options.sendOptions ?? {}),
          ...(this.#options.tools ? { tools: this.#options.tools } : {}),
          ...(key ? { clientMessageId: key } : {}),
        });
        let streamId = ack.answered ? ack.streamId : undefined;
        // A repeat of a send whose answer is over: nothing more will come for it.
        if (streamId && ack.duplicate && !conv.replayAnswer(streamId) && !conv.getSnapshot().queue.some((q) => q.streamId === streamId)) {
          streamId = undefined;
        }
        return this.#stream(conv, follow, streamId, false, options.abortSignal);
      }
      // No new message: the answer that waited goes on (after an approval or a tool output),
      // maybe to its end already.
      const streamId = answered[0] ?? this.#pausedChat.get(options.chatId) ?? conv.getSnapshot().running?.streamId;
      return this.#stream(conv, follow, streamId, true, options.abortSignal);
    } catch (err) {
      follow.stop();
      throw err;
    }
  }

  /** Joins the chat's conversation and gives its active branch as UIMessages (`useChat({messages})`). */
  async loadMessages(chatId: string): Promise<UIMessage[]> {
    const conv = await this.#conversation(chatId);
    return toUIMessages(conv.getSnapshot().messages);
  }

  async reconnectToStream(options: {
    chatId: string;
    abortSignal?: AbortSignal;
    headers?: Record<string, string> | Headers;
    body?: object;
    metadata?: unknown;
  }): Promise<ReadableStream<UIMessageChunk> | null> {
    const conv = await this.#conversation(options.chatId);
    const running = conv.getSnapshot().running;
    if (!running) return null;
    const follow = new Follower(conv);
    return this.#stream(conv, follow, running.streamId, false, options.abortSignal, true);
  }

  /** Approval responses and client tool outputs of the posted messages, applied: the answers they were for. */
  async #applyResponses(conv: Conversation, messages: AnyUIMessage[]): Promise<string[]> {
    const snap = conv.getSnapshot();
    const streams: string[] = [];
    if (!snap.pendingApprovals.length && !snap.pendingToolCalls.length) return streams;
    const approvals = new Map(snap.pendingApprovals.map((a) => [a.approvalId, a]));
    const calls = new Map(snap.pendingToolCalls.map((c) => [c.toolCallId, c]));
    const jobs: Array<Promise<unknown>> = [];
    for (const m of messages) {
      if (m.role !== "assistant") continue;
      for (const p of toolParts(m)) {
        if (p.state === "approval-responded" && p.approval && typeof p.approval.id === "string" && approvals.has(p.approval.id)) {
          streams.push(approvals.get(p.approval.id)!.streamId);
          approvals.delete(p.approval.id);
          jobs.push(ignoreSettled(conv.approve(p.approval.id, p.approval.approved === true, p.approval.reason)));
        } else if ((p.state === "output-available" || p.state === "output-error") && p.toolCallId && calls.has(p.toolCallId)) {
          streams.push(calls.get(p.toolCallId)!.streamId);
          calls.delete(p.toolCallId);
          jobs.push(
            ignoreSettled(
              conv.submitToolResult(p.toolCallId, p.state === "output-error" ? { error: p.errorText ?? "error" } : { output: p.output ?? null }),
            ),
          );
        }
      }
    }
    await Promise.all(jobs);
    return streams;
  }

  #stream(
    conv: Conversation,
    follow: Follower,
    streamId: string | undefined,
    continuation: boolean,
    abortSignal: AbortSignal | undefined,
    fromStart = false,
  ): ReadableStream<UIMessageChunk> {
    const endWhenWaiting = this.#options.endWhenWaiting ?? true;
    const cancelOnAbort = this.#options.cancelOnAbort ?? true;
    const paused = this.#paused;
    const pausedChat = this.#pausedChat;
    let cleanup = (): void => undefined;
    return new ReadableStream<UIMessageChunk>({
      start(controller) {
        if (!streamId) {
          // Nothing to answer (a message that asks no answer, or no answer waiting).
          follow.stop();
          controller.close();
          return;
        }
        const stop = continuation ? paused.get(streamId) : undefined;
        const from = stop?.seq ?? 0;
        let messageId = stop?.messageId;
        const mapper = new UIChunkMapper({ started: continuation });
        mapper.lastSeq = from;
        let closed = false;
        const emit = (chunks: MarieUIChunk[]) => {
          for (const c of chunks) if (!closed) controller.enqueue(c as UIMessageChunk);
        };
        const finish = () => {
          if (closed) return;
          closed = true;
          follow.stop();
          abortSignal?.removeEventListener("abort", onAbort);
          controller.close();
        };
        const onEvent = (e: AnswerEvent) => {
          if (closed) return;
          if (e.event === "stream_start" && typeof e.data.message_id === "string") messageId = e.data.message_id;
          const held = mapper.lastSeq;
          emit(mapper.map(e));
          // An event mapped before (a replay) says nothing new.
          const fresh = !("seq" in e.data) || mapper.lastSeq > held;
          if (mapper.done) {
            paused.delete(streamId);
            if (pausedChat.get(conv.id) === streamId) pausedChat.delete(conv.id);
            finish();
          } else if (fresh && endWhenWaiting && waitsForUI(conv, streamId, e)) {
            paused.set(streamId, { seq: mapper.lastSeq, ...(messageId ? { messageId } : {}) });
            pausedChat.set(conv.id, streamId);
            emit([...mapper.pause(), { type: "finish", finishReason: "tool-calls" }]);
            finish();
          }
        };
        const onAbort = () => {
          if (closed) return;
          if (cancelOnAbort) conv.cancel(streamId).catch(() => undefined);
          emit([...mapper.pause(), { type: "abort", reason: "cancelled" }]);
          finish();
        };
        if (abortSignal?.aborted) {
          onAbort();
          return;
        }
        abortSignal?.addEventListener("abort", onAbort);
        cleanup = () => {
          closed = true;
          follow.stop();
          abortSignal?.removeEventListener("abort", onAbort);
        };
        if (continuation) {
          // The same message goes on: its id again, then what came after the stop.
          messageId ??= conv.getSnapshot().running?.messageId;
          emit([messageId ? { type: "start", messageId } : { type: "start" }]);
        }
        // What happened already (from its start, or since the previous stream stopped), then live.
        const replay = fromStart || continuation ? (conv.replayAnswer(streamId) ?? []) : [];
        follow.attach(streamId, onEvent, replay);
      },
      cancel() {
        cleanup();
      },
    });
  }
}

/** Whether the answer now waits for something the UI gives (after `e`). */
function waitsForUI(conv: Conversation, streamId: string, e: AnswerEvent): boolean {
  if (e.event === "tool_approval_request") {
    return conv.getSnapshot().pendingApprovals.some((a) => a.streamId === streamId && a.approvalId === e.data.approval_id);
  }
  if (e.event === "tool_call") {
    const call = conv.getSnapshot().pendingToolCalls.find((c) => c.streamId === streamId && c.toolCallId === e.data.tool_call_id);
    // A tool the client runs itself is answered without the UI: the stream goes on.
    return call !== undefined && !conv.runsTool(streamId, call.name);
  }
  return false;
}

function ignoreSettled<T>(p: Promise<T>): Promise<T | undefined> {
  return p.catch((err) => {
    const e = MarieError.from(err);
    if (e.code === "conflict" || e.code === "not_found") return undefined;
    throw e;
  });
}

/**
 * Buffers a conversation's answer events from the moment it is made, so that the events of
 * an answer whose stream id is not known yet (its send's ack is not in) are not missed.
 */
class Follower {
  #buffer: AnswerEvent[] = [];
  #unsubscribe: () => void;
  #target: { streamId: string; listener: (e: AnswerEvent) => void } | null = null;

  constructor(conv: Conversation) {
    this.#unsubscribe = conv.observeAnswers((e) => {
      if (this.#target) {
        if (e.data.stream_id === this.#target.streamId) this.#target.listener(e);
      } else {
        this.#buffer.push(e);
      }
    });
  }

  /** Follows `streamId`: `before` first (a replay), then what was buffered, then live events. */
  attach(streamId: string, listener: (e: AnswerEvent) => void, before: AnswerEvent[]): void {
    const buffered = this.#buffer.filter((e) => e.data.stream_id === streamId);
    this.#buffer = [];
    this.#target = { streamId, listener };
    const seen = new Set<AnswerEvent>(before);
    for (const e of before) listener(e);
    for (const e of buffered) if (!seen.has(e)) listener(e);
  }

  stop(): void {
    this.#unsubscribe();
    this.#buffer = [];
    this.#target = null;
  }
}
