// @aurigraph/stream-client: the TypeScript client of Aurigraph Stream.
export { Client, type ClientOptions, muxUrl } from "./client.js";
export { Subscription } from "./subscription.js";
export { backoffDelay, parseRetryAfter, type BackoffOptions } from "./backoff.js";
export { tokenExpiry, type TokenSource } from "./token.js";
export {
  StreamClientError,
  ConnectionClosedError,
  SubscriptionError,
  ProtocolError,
  closeCodeInfo,
} from "./errors.js";
export type { WebSocketLike, WebSocketConstructor } from "./socket.js";
export * from "./types.js";
export * from "./generated/contract.js";
export type * from "./generated/messages.js";
