/** A listener of a store: called after its snapshot changed. */
export type Listener = () => void;

/**
 * What React's `useSyncExternalStore` needs: `subscribe(listener) => unsubscribe` and
 * `getSnapshot()`, an immutable value whose identity changes only when something changed.
 */
export interface ExternalStore<T> {
  subscribe(listener: Listener): () => void;
  getSnapshot(): T;
}

/** A store of one immutable snapshot. */
export class Store<T> implements ExternalStore<T> {
  #snapshot: T;
  #listeners = new Set<Listener>();

  constructor(initial: T) {
    this.#snapshot = initial;
  }

  subscribe = (listener: Listener): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  getSnapshot = (): T => this.#snapshot;

  /** Replaces the snapshot (when it is another object) and tells the listeners. */
  protected setSnapshot(next: T): void {
    if (Object.is(next, this.#snapshot)) return;
    this.#snapshot = next;
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (err) {
        // A listener's failure is its own: the others are still told.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
