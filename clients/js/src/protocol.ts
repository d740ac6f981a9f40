// The wire: payloads of docs/protocol.md, as the server sends and takes them (snake_case).
// Only what this package reads or writes is typed; every field the server may leave out is
// optional here.

/** `{type:"reasoning"|"redacted_reasoning"|"text"|"tool_call"|"tool_result", ...}` (section 3, 6). */
export type WirePart =
  | { type: "text"; content: string }
  | { type: "reasoning"; content: string; signature?: string }
  | { type: "redacted_reasoning"; data?: string }
  | { type: "tool_call"; tool_call_id: string; name: string; arguments: unknown; client?: boolean }
  | { type: "tool_result"; tool_call_id: string; name: string; output?: unknown; error?: string }
  | { type: string; [key: string]: unknown };

export interface WireAttachment {
  file_id: string;
  name?: string;
  content_type?: string;
  size?: number;
}

/** A message of `get_history`, `message_added.message`, `export_conversation`. */
export interface WireMessage {
  message_id: string;
  role: "user" | "assistant" | string;
  content: string;
  user_id?: string;
  created_at?: number;
  parent_id?: string | null;
  siblings?: string[];
  parts?: WirePart[];
  attachments?: WireAttachment[];
  assistant?: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  estimated?: boolean;
}

export interface StreamStartEvent {
  conversation_id: string;
  stream_id: string;
  message_id?: string;
  parent_id?: string | null;
  assistant?: string;
  status?: string;
}

interface Numbered {
  conversation_id: string;
  stream_id: string;
  seq: number;
}

export interface StreamChunkEvent extends Numbered {
  content: string;
  first_seq?: number;
  done?: boolean;
  tokens_used?: number;
}
export interface StreamReasoningEvent extends Numbered {
  content: string;
  first_seq?: number;
}
export interface ToolCallStartEvent extends Numbered {
  tool_call_id: string;
  name: string;
  client?: boolean;
}
export interface ToolCallDeltaEvent extends Numbered {
  tool_call_id: string;
  delta: string;
}
export interface ToolCallEvent extends Numbered {
  tool_call_id: string;
  name: string;
  arguments: unknown;
  client?: boolean;
}
export interface ToolApprovalRequestEvent extends Numbered {
  approval_id: string;
  tool_call_id: string;
  name: string;
  arguments: unknown;
  expires_at?: number;
}
export interface ToolApprovalEvent extends Numbered {
  approval_id: string;
  approved: boolean;
  decided_by?: string | null;
  reason?: string;
}
export interface ToolResultEvent extends Numbered {
  tool_call_id: string;
  name: string;
  output?: unknown;
  error?: string;
  duration_ms?: number;
}
export interface StreamResetEvent extends Numbered {
  after_seq: number;
  attempt?: number;
  reason?: string;
}

export interface StreamEndEvent {
  conversation_id: string;
  stream_id: string;
  message_id?: string;
  full_content?: string;
  status?: "complete" | "cancelled" | "interrupted" | string;
  usage?: Usage;
  finish_reason?: string;
  parts?: WirePart[];
}

export interface StreamErrorEvent {
  conversation_id: string;
  stream_id: string;
  code?: string;
  error?: string;
  retryable?: boolean;
  after_seq?: number;
}

/** The numbered events of an answer, by name: one `seq` sequence (section 3). */
export interface NumberedEvents {
  stream_chunk: StreamChunkEvent;
  stream_reasoning: StreamReasoningEvent;
  tool_call_start: ToolCallStartEvent;
  tool_call_delta: ToolCallDeltaEvent;
  tool_call: ToolCallEvent;
  tool_approval_request: ToolApprovalRequestEvent;
  tool_approval: ToolApprovalEvent;
  tool_result: ToolResultEvent;
  stream_reset: StreamResetEvent;
}
export type NumberedEventName = keyof NumberedEvents;
export const NUMBERED_EVENTS: readonly NumberedEventName[] = [
  "stream_chunk",
  "stream_reasoning",
  "tool_call_start",
  "tool_call_delta",
  "tool_call",
  "tool_approval_request",
  "tool_approval",
  "tool_result",
  "stream_reset",
];

/** One numbered event with its name. */
export type NumberedEvent = { [K in NumberedEventName]: { event: K; data: NumberedEvents[K] } }[NumberedEventName];

/** Every event of one answer, in the order a follower applies them. */
export type AnswerEvent =
  | { event: "stream_start"; data: StreamStartEvent }
  | NumberedEvent
  | { event: "stream_end"; data: StreamEndEvent }
  | { event: "stream_error"; data: StreamErrorEvent };

export interface PendingApprovalWire {
  approval_id: string;
  tool_call_id: string;
  name: string;
  arguments: unknown;
  expires_at?: number;
}
export interface PendingToolCallWire {
  tool_call_id: string;
  name: string;
  arguments: unknown;
  expires_at?: number;
}

export interface QueuedEvent {
  conversation_id: string;
  stream_id: string;
  message_id?: string;
  user_id?: string;
  message?: string;
  position?: number;
}

/** The `joined` fields (the ack of `join_conversation`). */
export interface JoinedAck {
  conversation_id: string;
  status?: string;
  members?: Array<string | { user_id: string }>;
  created?: boolean;
  active_stream?: {
    stream_id: string;
    seq: number;
    pending_approval?: PendingApprovalWire;
    pending_tool_call?: PendingToolCallWire;
  } | null;
  queued?: QueuedEvent[];
}

export interface SendAck {
  message_id: string;
  stream_id?: string;
  duplicate: boolean;
  queued?: number;
  answered?: boolean;
}

export interface LastMessage {
  role: string;
  preview: string;
  created_at: number;
}

export type AnswerPolicy = "always" | "mention" | "never";

/** An item of `list_conversations`. */
export interface ConversationSummary {
  conversation_id: string;
  title: string | null;
  created_by?: string;
  created_at?: number;
  updated_at?: number;
  last_message?: LastMessage | null;
  model?: string | null;
  answer_policy?: AnswerPolicy | string;
  archived?: boolean;
  unread?: number;
}

/** `get_conversation`'s ack. */
export interface ConversationDetails extends ConversationSummary {
  system_prompt?: string | null;
  members?: Array<{ user_id: string; role: "owner" | "member" | string }>;
  models?: string[];
  max_system_prompt_chars?: number;
  assistants?: Array<{ name: string; model: string | null }>;
}

export interface ListConversationsAck {
  conversations: ConversationSummary[];
  next_before: string | null;
}

export interface HistoryAck {
  conversation_id: string;
  messages: WireMessage[];
}

export interface UsageAck {
  used: number;
  limit: number | null;
  period: string | null;
  resets_at: number | null;
}

export interface ExportAck {
  conversation: ConversationDetails;
  messages: WireMessage[];
  active_leaf: string | null;
  exported_at: number;
}

export interface ConnectedEvent {
  status?: string;
  sid: string;
  user_id: string;
  session: string;
}

export interface ReconnectedEvent extends ConnectedEvent {
  message?: string;
  restored: boolean;
  rooms: string[];
  active_streams?: Array<{ conversation_id: string; stream_id: string; seq: number; resumed: boolean }>;
}

export interface ConversationUpdatedEvent {
  conversation_id: string;
  title?: string | null;
  model?: string | null;
  answer_policy?: string;
  updated_by?: string | null;
  updated_at?: number;
}

export interface ErrorEvent {
  code: string;
  message: string;
  event?: string;
  conversation_id?: string;
  stream_id?: string;
}

/** What `client_tools` declares of a client tool (PROTOCOL section 11). */
export interface ClientToolSpec {
  name: string;
  description: string;
  /** A JSON Schema object. */
  parameters: Record<string, unknown>;
}
