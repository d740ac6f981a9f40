// The camelCase shapes this client's snapshots and commands give (the wire is in protocol.ts).

import type { MarieError } from "./errors.js";
import type { Part } from "./parts.js";
import type { RunningAnswer } from "./answer.js";
import type { ClientToolSpec, Usage, WireAttachment } from "./protocol.js";

export type { RunningAnswer } from "./answer.js";

/** Where a message stands among its siblings (the versions an edit or a regeneration made). */
export interface BranchInfo {
  /** 0-based. */
  readonly index: number;
  readonly count: number;
  readonly previousId: string | null;
  readonly nextId: string | null;
}

/** A message of the active branch. */
export interface ChatMessage {
  readonly id: string;
  readonly role: "user" | "assistant" | (string & {});
  /** The text (an answer's text parts joined). */
  readonly content: string;
  /** Its author (user messages). */
  readonly userId?: string;
  /** The named assistant that wrote it (answers, section 10). */
  readonly assistant?: string;
  readonly parentId: string | null;
  /** Milliseconds since the Unix epoch. */
  readonly createdAt?: number;
  /** Every message with the same parent, this one included, oldest first, when there are several. */
  readonly siblings?: readonly string[];
  readonly branch?: BranchInfo;
  /** In order: text, reasoning, tool calls with their results. */
  readonly parts: readonly Part[];
  readonly attachments?: readonly WireAttachment[];
  /** How an answer ended: `complete`, `cancelled`, `interrupted`, or `error` (not stored). */
  readonly status?: "complete" | "cancelled" | "interrupted" | "error" | (string & {});
  readonly finishReason?: string;
  readonly usage?: Usage;
  /** The answer's stream, when this client saw it end. */
  readonly streamId?: string;
  /** Why an answer failed (`status: "error"`). */
  readonly error?: { readonly code: string; readonly message: string; readonly retryable?: boolean };
}

/** A tool call waiting for a member's approval (section 6). */
export interface PendingApproval {
  readonly conversationId: string;
  readonly streamId: string;
  readonly approvalId: string;
  readonly toolCallId: string;
  readonly name: string;
  readonly arguments: unknown;
  readonly expiresAt?: number;
}

/** A client tool call waiting for a member's `submit_tool_result` (PROTOCOL section 11). */
export interface PendingToolCall {
  readonly conversationId: string;
  readonly streamId: string;
  readonly toolCallId: string;
  readonly name: string;
  readonly arguments: unknown;
  readonly expiresAt?: number;
  /** The answer was asked for by this client. */
  readonly mine: boolean;
  /** This client is running it now (a registered tool). */
  readonly running: boolean;
}

/** A send waiting for the running answer (section 7). */
export interface QueuedSend {
  readonly streamId: string;
  readonly messageId?: string;
  readonly userId?: string;
  readonly message: string;
  /** 1: next. */
  readonly position: number;
  readonly mine: boolean;
  /** A `cancel_stream` for it, from this client, is in flight. */
  readonly cancelling: boolean;
}

/** A send of this client awaiting its ack. */
export interface PendingSend {
  readonly clientMessageId: string;
  readonly message: string;
  readonly attachments: readonly string[];
}

/** The user's token budget (`get_usage`, section 7). */
export interface Budget {
  readonly used: number;
  readonly limit: number | null;
  readonly period: string | null;
  readonly resetsAt: number | null;
}

export interface Member {
  readonly userId: string;
  readonly role: "owner" | "member" | (string & {});
}

export interface LastMessageInfo {
  readonly role: string;
  readonly preview: string;
  readonly createdAt: number;
}

/** An item of the conversation list (section 9). */
export interface ConversationItem {
  readonly id: string;
  readonly title: string | null;
  readonly createdBy?: string;
  readonly createdAt?: number;
  readonly updatedAt?: number;
  readonly lastMessage?: LastMessageInfo | null;
  readonly model?: string | null;
  readonly answerPolicy?: string;
  readonly archived: boolean;
  /** Messages stored after the user's read mark (at most 100). */
  readonly unread: number;
}

/** `get_conversation` (section 9, 10). */
export interface ConversationInfo extends ConversationItem {
  readonly systemPrompt?: string | null;
  readonly members: readonly Member[];
  readonly models: readonly string[];
  readonly maxSystemPromptChars?: number;
  readonly assistants: readonly { readonly name: string; readonly model: string | null }[];
  /**
   * Who made the title and settings shown (`conversation_updated.updated_by`; `null`: the
   * server, as for an automatic title), when this client heard of it: this user after its own
   * `update`, absent when read with `get_conversation` and changed since.
   */
  readonly updatedBy?: string | null;
}

/** One conversation as this client knows it. */
export interface ConversationSnapshot {
  readonly id: string;
  /** This connection is in the conversation's room (its join was acknowledged). */
  readonly joined: boolean;
  readonly joining: boolean;
  /** The client is connected. */
  readonly connected: boolean;
  /** A resume of a running answer is in flight. */
  readonly resuming: boolean;
  /** The conversation did not exist and the join created it. */
  readonly created: boolean | null;
  /** It was deleted, or this user removed, while open. */
  readonly closed: { readonly reason: "deleted" | "removed"; readonly by: string | null } | null;
  readonly historyLoaded: boolean;
  readonly loadingHistory: boolean;
  /** Older messages may exist before the first one held (`loadOlder`). */
  readonly hasOlder: boolean;
  /** The active branch, oldest first. */
  readonly messages: readonly ChatMessage[];
  /** The answer running now, if any. */
  readonly running: RunningAnswer | null;
  /** Every answer running (normally at most one). */
  readonly answers: readonly RunningAnswer[];
  readonly pendingApprovals: readonly PendingApproval[];
  readonly pendingToolCalls: readonly PendingToolCall[];
  readonly queue: readonly QueuedSend[];
  /** Sends of this client awaiting their ack. */
  readonly sending: readonly PendingSend[];
  /** The other members typing now. */
  readonly typingUsers: readonly string[];
  readonly budget: Budget | null;
  /** Everyone with access (joined's `members`, then those who joined). */
  readonly members: readonly string[];
  /** `get_conversation`: title, settings, members with roles, assistants. */
  readonly info: ConversationInfo | null;
  readonly title: string | null;
  readonly assistants: readonly { readonly name: string; readonly model: string | null }[];
  /** Messages stored since this client last marked the conversation read. */
  readonly unread: number;
  /** Each member's read mark: user id → message id (`read` events). */
  readonly readMarks: Readonly<Record<string, string>>;
  /** The last failure told about this conversation (a failed stream, a queued send refused, an `error` to the room). */
  readonly lastError: MarieError | null;
}

/** A client tool: declared to the model with a send; `execute` answers a call of it. */
export interface ClientTool<Args = any, Result = unknown> {
  description: string;
  /** A JSON Schema object of the arguments. */
  parameters: Record<string, unknown>;
  /**
   * Runs a call. What it returns is submitted as the call's `output`; what it throws, as its
   * `error`. Without `execute`, calls wait for a UI to answer (`submitToolResult`).
   */
  execute?: (args: Args, context: ToolCallContext) => Result | Promise<Result>;
}

export interface ToolCallContext {
  conversationId: string;
  streamId: string;
  toolCallId: string;
  name: string;
}

export type ClientTools = Record<string, ClientTool>;

export interface SendOptions {
  /** Idempotency key (generated when absent): a repeat gets the first outcome. */
  clientMessageId?: string;
  /** File ids uploaded over HTTP (section 8). */
  attachments?: readonly string[];
  /** What happens while an answer runs (section 7); the app's default when absent. */
  onBusy?: "reject" | "enqueue" | "interrupt";
  /** Overrides the conversation's answer policy for this message (section 10). */
  answer?: boolean;
  /** `false`: one `message_response` instead of a stream. */
  stream?: boolean;
  /** Client tools offered with this send only (besides the registered ones). */
  tools?: ClientTools;
  /** Offer the tools registered on the client (default true). */
  registeredTools?: boolean;
}

export interface SendResult {
  /** The stored user message. */
  readonly messageId: string;
  /** The answer's stream (absent when the message is not answered). */
  readonly streamId?: string;
  readonly duplicate: boolean;
  /** Its place in the queue (1: next), when it waits. */
  readonly queued?: number;
  /** `false` when the message asks no answer. */
  readonly answered: boolean;
}

/** An uploaded file (section 8). */
export interface FileRecord {
  readonly fileId: string;
  readonly userId: string;
  readonly conversationId: string;
  readonly name: string;
  readonly contentType: string;
  readonly size: number;
  readonly createdAt: number;
}

export interface ToolResultInput {
  output?: unknown;
  error?: string;
}

export type { ClientToolSpec, Part };
