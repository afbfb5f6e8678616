// The errors the SDK raises. Every one is a StreamClientError.
//
//   StreamClientError
//   ├── ConnectionClosedError   the client stopped for good: a close code not to retry on,
//   │                           a refused handshake, or retries exhausted
//   ├── SubscriptionError       the server refused or ended one subscription (error slug)
//   └── ProtocolError           the server sent something this client cannot read
import { CLOSE_CODES, type CloseCodeInfo } from "./generated/contract.js";

export class StreamClientError extends Error {
  override name = "StreamClientError";
}

/** The connection closed and the client will not reconnect. */
export class ConnectionClosedError extends StreamClientError {
  override name = "ConnectionClosedError";
  /** The WebSocket close code (1006 when the connection was lost or refused). */
  readonly code: number;
  readonly reason: string;
  /** The server's table entry for the code, when it is one of the server's. */
  readonly info: CloseCodeInfo | undefined;
  /** The HTTP status of a refused handshake, where the platform lets a client see it. */
  readonly status: number | undefined;

  constructor(message: string, code: number, reason: string, status?: number) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.info = closeCodeInfo(code);
    this.status = status;
  }
}

/** The server refused a subscription (`error` reply) or ended it (`unsubscribed`). */
export class SubscriptionError extends StreamClientError {
  override name = "SubscriptionError";
  /** The server's slug: `invalid_filter`, `forbidden`, `unknown_stream`, ... */
  readonly error: string;
  readonly detail: string;

  constructor(error: string, detail: string) {
    super(`${error}: ${detail}`);
    this.error = error;
    this.detail = detail;
  }
}

export class ProtocolError extends StreamClientError {
  override name = "ProtocolError";
}

/** The server's table entry for a close code, or undefined for codes it never sends. */
export function closeCodeInfo(code: number): CloseCodeInfo | undefined {
  return CLOSE_CODES.find((entry) => entry.code === code);
}
