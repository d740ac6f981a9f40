import { MarieError } from "./errors.js";
import type { ConversationDetails, ConversationUpdatedEvent, ListConversationsAck } from "./protocol.js";
import { Store } from "./store.js";
import type { ConversationInfo, ConversationItem } from "./types.js";
import { infoFromWire, itemFromWire } from "./util.js";

/** The user's conversations (section 9), most recently active first. */
export interface ConversationListSnapshot {
  readonly items: readonly ConversationItem[];
  /** A first page was read. */
  readonly loaded: boolean;
  readonly loading: boolean;
  /** Another page can be read (`loadMore`). */
  readonly hasMore: boolean;
  /** The search shown (`list_conversations.query`). */
  readonly query: string;
  /** The archive is shown. */
  readonly archived: boolean;
  readonly error: MarieError | null;
}

export interface ListHost {
  readonly userId: string | null;
  readonly isConnected: boolean;
  request<T>(event: string, payload?: unknown): Promise<T>;
}

const PAGE = 30;

/** Most recently active first; ties by id, as the server orders them. */
function byActivity(a: ConversationItem, b: ConversationItem): number {
  const ta = a.updatedAt ?? 0;
  const tb = b.updatedAt ?? 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The conversation list as a store (`subscribe` / `getSnapshot`): `load()` reads its first
 * page, `loadMore()` the next; `conversation_updated`, `conversation_deleted`, `removed` and
 * the messages of the rooms this client is in keep it current, with unread counts.
 */
export class ConversationList extends Store<ConversationListSnapshot> {
  #host: ListHost;
  #items = new Map<string, ConversationItem>();
  #nextBefore: string | null = null;
  #pages = 0;
  #loads = 0;
  #loading = 0;
  #loaded = false;
  #query = "";
  #archived = false;
  #error: MarieError | null = null;
  #refreshTimer: ReturnType<typeof setTimeout> | null = null;
  /** The read generation current when each item was last changed by an event. */
  #patchedAt = new Map<string, number>();
  /** Conversations deleted or left (the read generation then): a late answer does not bring them back. */
  #dropped = new Map<string, number>();

  constructor(host: ListHost) {
    super(
      Object.freeze({ items: Object.freeze([]), loaded: false, loading: false, hasMore: false, query: "", archived: false, error: null }),
    );
    this.#host = host;
  }

  #commit(): void {
    const items = [...this.#items.values()].sort(byActivity);
    const prev = this.getSnapshot();
    const same = items.length === prev.items.length && items.every((it, i) => it === prev.items[i]);
    const next: ConversationListSnapshot = {
      items: same ? prev.items : Object.freeze(items),
      loaded: this.#loaded,
      loading: this.#loading > 0,
      hasMore: this.#nextBefore !== null,
      query: this.#query,
      archived: this.#archived,
      error: this.#error,
    };
    if ((Object.keys(next) as Array<keyof ConversationListSnapshot>).every((k) => Object.is(next[k], prev[k]))) return;
    this.setSnapshot(Object.freeze(next));
  }

  /** Reads the first page again (a new search or the archive, when given). */
  async load(options: { query?: string; archived?: boolean } = {}): Promise<void> {
    if (options.query !== undefined) this.#query = options.query;
    if (options.archived !== undefined) this.#archived = options.archived;
    await this.#read({ more: false, merge: false });
  }

  /** Reads the next page. */
  async loadMore(): Promise<void> {
    if (this.#nextBefore === null) return;
    await this.#read({ more: true, merge: false });
  }

  /** Reads the first page again, keeping the pages loaded after it. */
  async refresh(): Promise<void> {
    await this.#read({ more: false, merge: true });
  }

  /** Refreshes soon (one read for several notices). */
  refreshSoon(): void {
    if (!this.#loaded) return;
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = null;
      this.refresh().catch(() => undefined);
    }, 300);
    (this.#refreshTimer as { unref?: () => void }).unref?.();
  }

  async #read({ more, merge }: { more: boolean; merge: boolean }): Promise<void> {
    const gen = ++this.#loads;
    const payload: Record<string, unknown> = { limit: PAGE };
    if (this.#archived) payload.archived = true;
    const query = this.#query.trim();
    if (query) payload.query = query.slice(0, 200);
    if (more && this.#nextBefore) payload.before = this.#nextBefore;
    this.#loading += 1;
    this.#commit();
    try {
      const ack = await this.#host.request<ListConversationsAck>("list_conversations", payload);
      if (gen !== this.#loads) return;
      this.#error = null;
      // An item an event changed while this read was on its way is newer than the read's.
      const got = (Array.isArray(ack.conversations) ? ack.conversations : [])
        .map(itemFromWire)
        .map((c) => ((this.#patchedAt.get(c.id) ?? -1) >= gen ? (this.#items.get(c.id) ?? c) : c))
        .filter((c) => {
          const dropped = this.#dropped.get(c.id);
          if (dropped === undefined) return true;
          if (dropped >= gen) return false;
          this.#dropped.delete(c.id); // listed by a read made since: it is back (invited again)
          return true;
        });
      const nextBefore = typeof ack.next_before === "string" ? ack.next_before : null;
      if (merge) {
        // The whole list fits in this page: what it lacks is gone.
        if (nextBefore === null && this.#pages <= 1) {
          const ids = new Set(got.map((c) => c.id));
          for (const id of [...this.#items.keys()]) if (!ids.has(id)) this.#items.delete(id);
        }
        for (const c of got) this.#items.set(c.id, c);
        if (this.#pages <= 1) this.#nextBefore = nextBefore;
      } else {
        if (!more) {
          this.#items.clear();
          this.#pages = 0;
        }
        this.#pages += 1;
        for (const c of got) this.#items.set(c.id, c);
        this.#nextBefore = nextBefore;
      }
      this.#loaded = true;
    } catch (err) {
      if (gen === this.#loads) this.#error = MarieError.from(err, "list_conversations");
      throw MarieError.from(err, "list_conversations");
    } finally {
      this.#loading -= 1;
      this.#commit();
    }
  }

  /** The item of `id`, if listed. */
  get(id: string): ConversationItem | undefined {
    return this.#items.get(id);
  }

  /** Whether a record belongs in the list as shown (archive or not, the search). */
  #fits(item: ConversationItem, listed: boolean): boolean {
    if (item.archived !== this.#archived) return false;
    const query = this.#query.trim().toLowerCase();
    if (!query || listed) return true;
    return typeof item.title === "string" && item.title.toLowerCase().includes(query);
  }

  /** @internal A record from `get_conversation` or an update's ack. */
  upsert(info: ConversationInfo | ConversationItem): void {
    if (!this.#loaded || this.#dropped.has(info.id)) return;
    const old = this.#items.get(info.id);
    const item: ConversationItem = Object.freeze({
      id: info.id,
      title: info.title,
      ...(info.createdBy !== undefined ? { createdBy: info.createdBy } : old?.createdBy !== undefined ? { createdBy: old.createdBy } : {}),
      ...(info.createdAt !== undefined ? { createdAt: info.createdAt } : old?.createdAt !== undefined ? { createdAt: old.createdAt } : {}),
      ...(info.updatedAt !== undefined ? { updatedAt: info.updatedAt } : old?.updatedAt !== undefined ? { updatedAt: old.updatedAt } : {}),
      ...(info.lastMessage !== undefined ? { lastMessage: info.lastMessage } : old?.lastMessage !== undefined ? { lastMessage: old.lastMessage } : {}),
      ...(info.model !== undefined ? { model: info.model } : old?.model !== undefined ? { model: old.model } : {}),
      ...(info.answerPolicy !== undefined ? { answerPolicy: info.answerPolicy } : old?.answerPolicy !== undefined ? { answerPolicy: old.answerPolicy } : {}),
      archived: info.archived,
      unread: old ? old.unread : info.unread,
    });
    if (!this.#fits(item, Boolean(old))) {
      if (old) this.#items.delete(info.id);
      this.#commit();
      return;
    }
    this.#patchedAt.set(info.id, this.#loads);
    this.#items.set(info.id, item);
    this.#commit();
  }

  #patch(id: string, change: (item: ConversationItem) => ConversationItem): void {
    const item = this.#items.get(id);
    if (!item) return;
    this.#patchedAt.set(id, this.#loads);
    this.#items.set(id, Object.freeze(change(item)));
    this.#commit();
  }

  /** @internal */
  setUnread(id: string, unread: number): void {
    this.#patch(id, (item) => (item.unread === unread ? item : { ...item, unread }));
  }

  /** @internal */
  drop(id: string): void {
    this.#dropped.set(id, this.#loads);
    if (this.#items.delete(id)) this.#commit();
  }

  /**
   * @internal This user archived `id` (or took it out of the archive): it leaves the list
   * shown (the archive or the rest), or, shown there now, is read to take its place.
   */
  setArchived(id: string, archived: boolean): void {
    if (archived !== this.#archived) {
      // As for a deletion: a read started before does not bring it back, a later one does.
      this.drop(id);
      return;
    }
    if (this.#items.has(id)) this.#patch(id, (item) => (item.archived === archived ? item : { ...item, archived }));
    else if (this.#loaded) {
      this.#dropped.delete(id);
      this.#fetch(id);
    }
  }

  /** A message of a conversation this client follows was stored: its item moves up with it as preview. */
  /** @internal */
  noteActivity(id: string, role: string, text: string, unreadDelta: number): void {
    if (!this.#loaded) return;
    const item = this.#items.get(id);
    if (!item) {
      // Not listed yet (created here, unarchived elsewhere): its record says where it goes.
      this.#fetch(id);
      return;
    }
    const now = Math.max(Date.now(), (item.updatedAt ?? 0) + 1);
    this.#patch(id, (it) => ({
      ...it,
      updatedAt: now,
      lastMessage: Object.freeze({ role, preview: Array.from(text).slice(0, 140).join(""), createdAt: now }),
      unread: Math.min(100, it.unread + unreadDelta),
    }));
  }

  #fetch(id: string): void {
    if (!this.#host.isConnected) return;
    this.#host
      .request<ConversationDetails>("get_conversation", { conversation_id: id })
      .then((ack) => this.upsert(infoFromWire(ack)))
      .catch(() => undefined);
  }

  /** @internal An event for the list. `inRoom`: this client follows that conversation's room. */
  handle(event: string, data: any, inRoom: boolean): void {
    if (!data || typeof data !== "object" || typeof data.conversation_id !== "string") return;
    const id: string = data.conversation_id;
    switch (event) {
      case "conversation_updated": {
        const d = data as ConversationUpdatedEvent;
        this.#dropped.delete(id); // told as a member again (an invitation)
        if (this.#items.has(id)) {
          this.#patch(id, (it) => ({
            ...it,
            ...(d.title !== undefined ? { title: d.title } : {}),
            ...(d.model !== undefined ? { model: d.model } : {}),
            ...(d.answer_policy !== undefined ? { answerPolicy: d.answer_policy } : {}),
            ...(typeof d.updated_at === "number" ? { updatedAt: Math.max(d.updated_at, it.updatedAt ?? 0) } : {}),
          }));
        } else if (this.#loaded && !this.#archived) {
          // An invitation, or a conversation created elsewhere.
          this.#fetch(id);
        }
        // Not in its room: no message_added from it, so the list says what is unread there.
        if (!inRoom) this.refreshSoon();
        return;
      }
      case "conversation_created":
        this.#dropped.delete(id);
        if (this.#loaded && !this.#items.has(id)) this.#fetch(id);
        return;
      case "conversation_deleted":
      case "removed":
        this.drop(id);
        return;
      default:
        return;
    }
  }
}
