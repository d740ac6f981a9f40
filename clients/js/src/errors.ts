/**
 * An error of the protocol (docs/protocol.md section 4): `code` is the protocol's code
 * (`bad_request`, `forbidden`, `not_found`, `busy`, `conflict`, `rate_limited`, ...), or one of
 * this client's own: `timeout` (no ack in time), `disconnected` (not connected and could not
 * connect in time), `closed` (the client was closed).
 */
export class MarieError extends Error {
  readonly code: string;
  /** The client event it answers, when the server said. */
  readonly event?: string;
  /** Whether trying again later may work (stream errors say so). */
  readonly retryable?: boolean;

  constructor(code: string, message: string, options: { event?: string; retryable?: boolean } = {}) {
    super(message);
    this.name = "MarieError";
    this.code = code;
    if (options.event !== undefined) this.event = options.event;
    if (options.retryable !== undefined) this.retryable = options.retryable;
  }

  /** A MarieError from a server payload (`{code, message}`, `{code, error}`) or anything thrown. */
  static from(value: unknown, event?: string): MarieError {
    if (value instanceof MarieError) return value;
    if (value && typeof value === "object") {
      const v = value as Record<string, unknown>;
      const code = typeof v.code === "string" ? v.code : "error";
      const message = typeof v.message === "string" ? v.message : typeof v.error === "string" ? v.error : "request failed";
      const ev = typeof v.event === "string" ? v.event : event;
      return new MarieError(code, message, { event: ev, retryable: typeof v.retryable === "boolean" ? v.retryable : undefined });
    }
    return new MarieError("error", String(value), { event });
  }
}

export function isMarieError(value: unknown, code?: string): value is MarieError {
  return value instanceof MarieError && (code === undefined || value.code === code);
}
