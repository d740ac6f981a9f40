import { applyEvent, reasoningOf, textOf, type Part } from "./parts.js";
import type { AnswerEvent, NumberedEvent, PendingApprovalWire, PendingToolCallWire } from "./protocol.js";

/** What `AnswerTracker.offer` did with an event. */
export type OfferResult =
  /** It continued what the tracker holds, and was applied. */
  | "applied"
  /** A repeat (its positions are held already): dropped. */
  | "duplicate"
  /** It starts beyond the held seq + 1: dropped; resume from `lastSeq` to fill the gap. */
  | "gap";

/** An answer that is running, as a snapshot shows it. */
export interface RunningAnswer {
  readonly conversationId: string;
  readonly streamId: string;
  /** The assistant message it becomes (from `stream_start`; unknown to a late joiner until it ends). */
  readonly messageId?: string;
  /** The user message it answers. */
  readonly parentId?: string | null;
  /** The named assistant answering (section 10). */
  readonly assistant?: string;
  readonly status: "streaming";
  /** Its parts in order: text, reasoning, tool calls. */
  readonly parts: readonly Part[];
  /** The text parts joined. */
  readonly text: string;
  /** The reasoning parts joined. */
  readonly reasoning: string;
  /** The last `seq` applied. */
  readonly lastSeq: number;
  /** A `resume_stream` for it is in flight. */
  readonly resuming: boolean;
  /** Resuming failed: its live events are shown as they come (its end brings the whole answer). */
  readonly lossy: boolean;
  /** The last `stream_reset`: a failed step is being asked again. */
  readonly retry: { readonly attempt?: number; readonly reason?: string; readonly afterSeq: number } | null;
  /** This client asked for it (a send, an edit or a regeneration of this client). */
  readonly mine: boolean;
  /** A `cancel_stream` for it is in flight. */
  readonly cancelling: boolean;
}

function firstSeq(e: NumberedEvent): number {
  const d = e.data as { seq: number; first_seq?: number };
  return typeof d.first_seq === "number" ? d.first_seq : d.seq;
}

/**
 * One answer, followed by `seq` (docs/protocol.md section 3): every numbered event is offered
 * to it; one that continues what it holds is applied, a repeat is dropped, one beyond the
 * held seq + 1 shows a gap (dropped: the caller resumes from `lastSeq`). A `stream_reset`
 * drops every event after its `after_seq` and the parts are folded again from what is kept.
 * Merged chunks (`first_seq`) count as the positions they cover.
 */
export class AnswerTracker {
  readonly conversationId: string;
  readonly streamId: string;
  messageId?: string;
  parentId?: string | null;
  assistant?: string;
  lastSeq = 0;
  /** The events applied and kept, in order (a reset drops those after its `after_seq`). */
  log: NumberedEvent[] = [];
  parts: readonly Part[] = [];
  lossy = false;
  resuming = false;
  ended = false;
  mine = false;
  cancelling = false;
  /** The answer started beside an older message (an edit or regeneration): history shows the branch again at its end. */
  branched = false;
  retry: RunningAnswer["retry"] = null;
  /** What `joined.active_stream` said it waits on (for a late joiner whose resume failed). */
  joinedApproval?: PendingApprovalWire;
  joinedToolCall?: PendingToolCallWire;
  #view: RunningAnswer | null = null;

  constructor(conversationId: string, streamId: string) {
    this.conversationId = conversationId;
    this.streamId = streamId;
  }

  /** Offers one numbered event. */
  offer(e: NumberedEvent): OfferResult {
    const seq = (e.data as { seq?: unknown }).seq;
    if (typeof seq !== "number" || this.ended) return "duplicate";
    const first = firstSeq(e);
    if (seq <= this.lastSeq) return "duplicate";
    if (first !== this.lastSeq + 1) {
      // A merged chunk that overlaps what is held cannot be split: drop it, as a gap.
      if (!this.lossy || first <= this.lastSeq) return "gap";
    }
    if (e.event === "stream_reset") return this.#reset(e);
    this.log.push(e);
    this.lastSeq = seq;
    this.parts = applyEvent(this.parts, e);
    this.changed();
    return "applied";
  }

  #reset(e: Extract<NumberedEvent, { event: "stream_reset" }>): OfferResult {
    const after = typeof e.data.after_seq === "number" ? e.data.after_seq : 0;
    // An event merged across `after_seq` holds kept and dropped positions in one: it is
    // dropped whole, and the positions from its first are asked again (a gap).
    const straddling = this.log.find((x) => firstSeq(x) <= after && x.data.seq > after);
    if (straddling) {
      const keepBefore = firstSeq(straddling);
      this.log = this.log.filter((x) => x.data.seq < keepBefore);
      this.lastSeq = keepBefore - 1;
      this.#refold();
      return "gap";
    }
    this.log = this.log.filter((x) => x.data.seq <= after);
    this.log.push(e);
    this.lastSeq = e.data.seq;
    this.retry = {
      afterSeq: after,
      ...(typeof e.data.attempt === "number" ? { attempt: e.data.attempt } : {}),
      ...(typeof e.data.reason === "string" ? { reason: e.data.reason } : {}),
    };
    this.#refold();
    return "applied";
  }

  #refold(): void {
    let parts: readonly Part[] = [];
    for (const x of this.log) parts = applyEvent(parts, x);
    this.parts = parts;
    this.changed();
  }

  /** Notes that something the view shows changed. */
  changed(): void {
    this.#view = null;
  }

  /** The events to replay this answer from its start (for a follower that starts late). */
  replay(): AnswerEvent[] {
    const start: AnswerEvent = {
      event: "stream_start",
      data: {
        conversation_id: this.conversationId,
        stream_id: this.streamId,
        ...(this.messageId !== undefined ? { message_id: this.messageId } : {}),
        ...(this.parentId !== undefined ? { parent_id: this.parentId } : {}),
        ...(this.assistant !== undefined ? { assistant: this.assistant } : {}),
        status: "streaming",
      },
    };
    return [start, ...this.log];
  }

  /** The immutable view of the running answer (the same object until something changes). */
  view(): RunningAnswer {
    if (this.#view) return this.#view;
    const v: RunningAnswer = {
      conversationId: this.conversationId,
      streamId: this.streamId,
      ...(this.messageId !== undefined ? { messageId: this.messageId } : {}),
      ...(this.parentId !== undefined ? { parentId: this.parentId } : {}),
      ...(this.assistant !== undefined ? { assistant: this.assistant } : {}),
      status: "streaming",
      parts: this.parts,
      text: textOf(this.parts),
      reasoning: reasoningOf(this.parts),
      lastSeq: this.lastSeq,
      resuming: this.resuming,
      lossy: this.lossy,
      retry: this.retry,
      mine: this.mine,
      cancelling: this.cancelling,
    };
    this.#view = Object.freeze(v);
    return this.#view;
  }
}
