import type { NumberedEvent, WirePart } from "./protocol.js";

/**
 * The state of a tool call, named as the AI SDK names its tool parts' states:
 * - `input-streaming`: the model is writing its arguments (`tool_call_delta`);
 * - `input-available`: the call is complete (`tool_call`): the server runs it, or, for a client
 *   tool (`client: true`), it waits for a member's `submit_tool_result`;
 * - `approval-requested`: it waits for a member's approval (`tool_approval_request`);
 * - `approval-responded`: approved, running;
 * - `output-available` / `output-error`: its `tool_result`;
 * - `output-denied`: denied, or its approval expired (its `error` then says so).
 */
export type ToolState =
  | "input-streaming"
  | "input-available"
  | "approval-requested"
  | "approval-responded"
  | "output-available"
  | "output-error"
  | "output-denied";

export interface ToolApprovalInfo {
  approvalId: string;
  /** Milliseconds since the Unix epoch. */
  expiresAt?: number;
  /** Absent while undecided. */
  approved?: boolean;
  /** Who decided; `null` when nobody did before it expired. */
  decidedBy?: string | null;
  reason?: string;
}

export interface TextPart {
  readonly type: "text";
  readonly text: string;
}
export interface ReasoningPart {
  readonly type: "reasoning";
  readonly text: string;
}
/** Reasoning the provider encrypted: show at most that it was redacted. */
export interface RedactedReasoningPart {
  readonly type: "redacted_reasoning";
}
export interface ToolPart {
  readonly type: "tool";
  readonly toolCallId: string;
  readonly name: string;
  /** A client tool (PROTOCOL section 11): a member's `submit_tool_result` answers it. */
  readonly client: boolean;
  readonly state: ToolState;
  /** The arguments' JSON text as the model wrote it. */
  readonly inputText: string;
  /** The parsed arguments, once the call is complete. */
  readonly input?: unknown;
  readonly approval?: Readonly<ToolApprovalInfo>;
  readonly output?: unknown;
  readonly error?: string;
  readonly durationMs?: number;
}
export type Part = TextPart | ReasoningPart | RedactedReasoningPart | ToolPart;

function replaceAt<T>(list: readonly T[], index: number, value: T): T[] {
  const next = list.slice();
  next[index] = value;
  return next;
}

function toolIndex(parts: readonly Part[], toolCallId: string): number {
  for (let i = parts.length - 1; i >= 0; i -= 1) {
    const p = parts[i]!;
    if (p.type === "tool" && p.toolCallId === toolCallId) return i;
  }
  return -1;
}

function newTool(toolCallId: string, name: string, client: boolean): ToolPart {
  return { type: "tool", toolCallId, name, client, state: "input-streaming", inputText: "" };
}

/** `parts` with the tool part of `toolCallId` changed by `change` (created when missing). */
function withTool(parts: readonly Part[], toolCallId: string, name: string | undefined, change: (t: ToolPart) => ToolPart): Part[] {
  const at = toolIndex(parts, toolCallId);
  if (at < 0) return [...parts, change(newTool(toolCallId, name ?? "tool", false))];
  const current = parts[at] as ToolPart;
  const named = name && current.name !== name ? { ...current, name } : current;
  return replaceAt(parts, at, change(named));
}

/**
 * The parts of an answer after one more numbered event (pure: `parts` is not changed). A
 * `stream_reset` is not handled here: the answer is folded again from the events it keeps
 * (see `AnswerTracker`).
 */
export function applyEvent(parts: readonly Part[], e: NumberedEvent): readonly Part[] {
  switch (e.event) {
    case "stream_chunk":
    case "stream_reasoning": {
      const type = e.event === "stream_chunk" ? "text" : "reasoning";
      const content = typeof e.data.content === "string" ? e.data.content : "";
      if (!content) return parts;
      const last = parts[parts.length - 1];
      if (last && last.type === type) return replaceAt(parts, parts.length - 1, { type, text: last.text + content });
      return [...parts, { type, text: content }];
    }
    case "tool_call_start": {
      const d = e.data;
      return withTool(parts, d.tool_call_id, d.name, (t) => (d.client ? { ...t, client: true } : t));
    }
    case "tool_call_delta": {
      const d = e.data;
      return withTool(parts, d.tool_call_id, undefined, (t) => ({
        ...t,
        inputText: t.inputText + (typeof d.delta === "string" ? d.delta : ""),
      }));
    }
    case "tool_call": {
      const d = e.data;
      return withTool(parts, d.tool_call_id, d.name, (t) => ({
        ...t,
        client: t.client || d.client === true,
        input: d.arguments,
        inputText: t.inputText || JSON.stringify(d.arguments ?? {}),
        state: t.state === "input-streaming" ? "input-available" : t.state,
      }));
    }
    case "tool_approval_request": {
      const d = e.data;
      return withTool(parts, d.tool_call_id, d.name, (t) => ({
        ...t,
        input: d.arguments,
        inputText: t.inputText || JSON.stringify(d.arguments ?? {}),
        state: "approval-requested",
        approval: { approvalId: d.approval_id, ...(typeof d.expires_at === "number" ? { expiresAt: d.expires_at } : {}) },
      }));
    }
    case "tool_approval": {
      const d = e.data;
      let at = -1;
      for (let i = parts.length - 1; i >= 0; i -= 1) {
        const p = parts[i]!;
        if (p.type === "tool" && p.approval?.approvalId === d.approval_id) {
          at = i;
          break;
        }
      }
      if (at < 0) return parts;
      const t = parts[at] as ToolPart;
      return replaceAt(parts, at, {
        ...t,
        state: d.approved ? "approval-responded" : "output-denied",
        approval: {
          ...t.approval!,
          approved: d.approved,
          decidedBy: d.decided_by ?? null,
          ...(typeof d.reason === "string" ? { reason: d.reason } : {}),
        },
      });
    }
    case "tool_result": {
      const d = e.data;
      const failed = d.error !== undefined && d.error !== null;
      return withTool(parts, d.tool_call_id, d.name, (t) => {
        const { output: _o, error: _e, ...rest } = t;
        return {
          ...rest,
          state: failed ? (t.state === "output-denied" ? "output-denied" : "output-error") : "output-available",
          ...(failed ? { error: String(d.error) } : { output: d.output }),
          ...(typeof d.duration_ms === "number" ? { durationMs: d.duration_ms } : {}),
        };
      });
    }
    case "stream_reset":
      return parts;
  }
}

/** The parts of a stored answer (`stream_end.parts`, history's `parts`), or its text alone. */
export function partsFromWire(wire: readonly WirePart[] | undefined, content: string): readonly Part[] {
  if (!Array.isArray(wire) || wire.length === 0) return content ? [{ type: "text", text: content }] : [];
  let parts: Part[] = [];
  for (const p of wire) {
    if (!p || typeof p !== "object") continue;
    const w = p as Record<string, unknown>;
    switch (w.type) {
      case "text":
      case "reasoning": {
        const text = typeof w.content === "string" ? w.content : "";
        if (!text) break;
        const type = w.type;
        const last = parts[parts.length - 1];
        if (last && last.type === type) parts[parts.length - 1] = { type, text: last.text + text };
        else parts.push({ type, text });
        break;
      }
      case "redacted_reasoning": {
        const last = parts[parts.length - 1];
        if (!last || last.type !== "redacted_reasoning") parts.push({ type: "redacted_reasoning" });
        break;
      }
      case "tool_call": {
        const id = String(w.tool_call_id);
        parts = withTool(parts, id, String(w.name ?? "tool"), (t) => ({
          ...t,
          client: t.client || w.client === true,
          input: w.arguments,
          inputText: JSON.stringify(w.arguments ?? {}),
          state: "input-available",
        }));
        break;
      }
      case "tool_result": {
        const id = String(w.tool_call_id);
        const failed = w.error !== undefined && w.error !== null;
        parts = withTool(parts, id, typeof w.name === "string" ? w.name : undefined, (t) => ({
          ...t,
          state: failed ? "output-error" : "output-available",
          ...(failed ? { error: String(w.error) } : { output: w.output }),
        }));
        break;
      }
      default:
        break; // a type this client does not know is skipped
    }
  }
  return parts;
}

/**
 * The parts of a stored answer with what only the live events said kept: who approved or
 * denied a call, how long it ran, whether it was a client tool.
 */
export function mergeLiveDetails(stored: readonly Part[], live: readonly Part[]): readonly Part[] {
  const liveTools = new Map<string, ToolPart>();
  for (const p of live) if (p.type === "tool") liveTools.set(p.toolCallId, p);
  if (liveTools.size === 0) return stored;
  return stored.map((p) => {
    if (p.type !== "tool") return p;
    const l = liveTools.get(p.toolCallId);
    if (!l) return p;
    return {
      ...p,
      client: p.client || l.client,
      ...(l.approval ? { approval: l.approval } : {}),
      ...(l.durationMs !== undefined && p.durationMs === undefined ? { durationMs: l.durationMs } : {}),
      state: l.state === "output-denied" && p.state === "output-error" ? "output-denied" : p.state,
    };
  });
}

/** The text parts joined. */
export function textOf(parts: readonly Part[]): string {
  let text = "";
  for (const p of parts) if (p.type === "text") text += p.text;
  return text;
}

/** The reasoning parts joined (a blank line between separate ones). */
export function reasoningOf(parts: readonly Part[]): string {
  const pieces: string[] = [];
  for (const p of parts) if (p.type === "reasoning") pieces.push(p.text);
  return pieces.join("\n\n");
}
