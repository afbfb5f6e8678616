// The client: one multiplexed /ws connection for every subscription, kept up
// across drops, with every subscription resumed where it stopped.
import { backoffDelay, parseRetryAfter, type BackoffOptions } from "./backoff.js";
import { ConnectionClosedError, ProtocolError, closeCodeInfo } from "./errors.js";
import {
  BEARER_PROTOCOL,
  CloseCode,
  MUX_PATH,
  STREAMS,
  SUBPROTOCOL_PREFIX,
  type StreamName,
} from "./generated/contract.js";
import { type Refusal, type WebSocketConstructor, type WebSocketLike, isOpen, messageText, openSocket } from "./socket.js";
import { Subscription, subscriptionError } from "./subscription.js";
import { type TokenSource, tokenExpiry } from "./token.js";
import type { ClientEvent, ConnectionState, Position, StreamMessages, SubscribeOptions } from "./types.js";

export interface ClientOptions {
  /**
   * The WebSocket implementation: the browser's by default; in Node 20, the
   * `ws` package's (`import WebSocket from "ws"`).
   */
  WebSocket?: WebSocketConstructor;
  /**
   * The access token (`aurigraph-stream token`), or a function returning a
   * fresh one. A function is called before every connect, and again before the
   * token expires: the new token is sent with the `refresh` command, without
   * reconnecting. A fixed token that expires ends the client (close 4001).
   */
  token?: TokenSource;
  /** Refresh this many ms before `exp` at most (default 30,000; at most half the lifetime left). */
  refreshBefore?: number;
  /** Reconnect delays (exponential with jitter). */
  backoff?: BackoffOptions;
  /**
   * Give up after this many retries fail in a row, that is `maxAttempts + 1` failed
   * attempts (default: never). A subscription the server could not start
   * (`history_unavailable`) is asked again as many times.
   */
  maxAttempts?: number;
}

type Listener = (event: ClientEvent) => void;

/** The `id` of refresh commands; their replies (`refreshed`, or an error with op refresh) are told by type and op. */
const REFRESH_ID = "refresh";
/** The reason of the close this client starts on a frame it cannot read. */
const UNREADABLE = "unreadable frame";

/**
 * A client of one Aurigraph Stream server.
 *
 * ```ts
 * const client = new Client("ws://localhost:9003", { WebSocket });
 * for await (const item of client.subscribe("transactions", { filter: { address } })) {
 *   if (item.type === "gap") reload(item); else show(item.data);
 * }
 * ```
 */
export class Client {
  readonly url: string;
  private readonly options: ClientOptions;
  private readonly Impl: WebSocketConstructor;
  private readonly subs = new Map<string, Subscription<StreamName>>();
  private readonly listeners = new Set<Listener>();
  private socket: WebSocketLike | null = null;
  private stateValue: ConnectionState = "idle";
  private attempt = 0;
  private opened = false;
  private closing = false;
  private counter = 0;
  private token: string | undefined;
  private refusal: Refusal | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Subscribe commands waiting to be sent again after `history_unavailable`. */
  private readonly resubscribeTimers = new Set<ReturnType<typeof setTimeout>>();
  /** Per subscription, the `history_unavailable` answers in a row. */
  private readonly unavailable = new Map<Subscription<StreamName>, number>();
  /**
   * Per id, the commands sent on this socket still without their reply (each command gets
   * exactly one: subscribed, unsubscribed or error).
   */
  private readonly inFlight = new Map<string, number>();
  /**
   * Per subscription, the replies to earlier commands of its id still to come: until they
   * have, every frame of the id is an earlier subscription's (an id reused after close()).
   */
  private readonly behind = new Map<Subscription<StreamName>, number>();
  /** Set when this client closes its own socket to reconnect at once (a token swap). */
  private swapping = false;
  /** Set when this client closes its own socket on a frame it could not read. */
  private unreadable = false;
  /** The socket took a subscription (or had none to take): the back-off starts over after it. */
  private healthy = false;
  private openWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];

  /**
   * @param url the server (`ws://host:9003`; `http(s)://` is read as `ws(s)://`),
   *   or its `/ws` endpoint.
   */
  constructor(url: string, options: ClientOptions = {}) {
    this.url = muxUrl(url);
    this.options = options;
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Impl === undefined) {
      throw new TypeError("no WebSocket here: pass one, e.g. { WebSocket } from the ws package in Node");
    }
    this.Impl = Impl;
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** Listen to connection events; returns a function that stops listening. */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Subscribe to a stream. The subscription is an async iterator of items:
   * messages, snapshots and gaps, in order, each message once. It lives
   * across reconnects until it is closed (`close()`, or leaving `for await`).
   */
  subscribe<S extends StreamName>(stream: S, options: SubscribeOptions<S> = {}): Subscription<S> {
    if (this.closing) throw new ConnectionClosedError("the client is closed", CloseCode.NORMAL, "");
    if (!(STREAMS as readonly string[]).includes(stream)) {
      throw new TypeError(`unknown stream ${String(stream)}: one of ${STREAMS.join(", ")}`);
    }
    const id = options.id ?? `${stream}-${++this.counter}`;
    if (this.subs.has(id)) throw new TypeError(`subscription id ${id} is in use`);
    const sub = new Subscription<S>(id, stream, options, (closed) => this.unsubscribe(closed));
    this.subs.set(id, sub as unknown as Subscription<StreamName>);
    if (isOpen(this.socket)) this.sendSubscribe(sub as unknown as Subscription<StreamName>);
    else this.start();
    return sub;
  }

  /** Resolve when a connection is open (connecting first if needed). */
  connect(): Promise<void> {
    if (isOpen(this.socket)) return Promise.resolve();
    if (this.closing) return Promise.reject(new ConnectionClosedError("the client is closed", CloseCode.NORMAL, ""));
    return new Promise((resolve, reject) => {
      this.openWaiters.push({ resolve, reject });
      this.start();
    });
  }

  /** Close the connection and end every subscription; the client does not reconnect. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stop(undefined);
    const socket = this.socket;
    if (socket !== null && socket.readyState <= 1) {
      await new Promise<void>((resolve) => {
        const previous = socket.onclose;
        socket.onclose = (event) => {
          previous?.(event); // onClose: state closed, the closed event
          resolve();
        };
        socket.close(CloseCode.NORMAL, "client closed");
      });
    } else {
      this.socket = null; // between attempts: nothing to close but the timer, stopped above
      this.setState("closed");
      this.emit({ type: "closed", error: undefined });
    }
  }

  // -- the connection --------------------------------------------------------
  private start(): void {
    if (this.stateValue === "idle") void this.open();
  }

  private async open(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.closing) return;
    this.setState(this.opened ? "reconnecting" : "connecting");
    this.emit({ type: "connecting", attempt: this.attempt });
    const source = this.options.token;
    try {
      this.token = typeof source === "function" ? await source() : source;
    } catch (error) {
      this.report(error);
      this.retry(1006, `the token callback failed: ${String(error)}`);
      return;
    }
    if (this.closing) return;
    const protocols = [`${SUBPROTOCOL_PREFIX}json`];
    if (this.token !== undefined) protocols.unshift(BEARER_PROTOCOL, this.token);
    this.refusal = undefined;
    const socket = openSocket(this.Impl, this.url, protocols, (refusal) => {
      this.refusal = refusal;
    });
    this.socket = socket;
    socket.onopen = () => this.onOpen(socket);
    socket.onmessage = (event) => this.onFrame(socket, event.data);
    socket.onerror = () => undefined; // the close event that follows says what happened
    socket.onclose = (event) => this.onClose(socket, event.code, event.reason);
  }

  private onOpen(socket: WebSocketLike): void {
    if (socket !== this.socket) return;
    const reconnected = this.opened;
    this.opened = true;
    this.setState("open");
    if (this.subs.size === 0) this.attempt = 0;
    this.healthy = this.subs.size === 0;
    this.emit({ type: "open", reconnected });
    for (const waiter of this.openWaiters.splice(0)) waiter.resolve();
    this.inFlight.clear();
    this.behind.clear();
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
    this.scheduleRefresh(undefined);
  }

  private onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = null;
    clearTimeout(this.refreshTimer);
    this.clearResubscribes();
    const unreadable = this.unreadable;
    this.unreadable = false;
    // A connection that worked starts the back-off over; one left on an unreadable
    // frame did not work, whatever the server confirmed on it.
    if (this.healthy && !unreadable) this.attempt = 0;
    this.healthy = false;
    if (this.closing) {
      this.setState("closed");
      this.emit({ type: "closed", error: undefined });
      return;
    }
    if (this.swapping) {
      this.swapping = false; // closed by us to connect with a new token: no back-off
      this.attempt = 0;
      void this.open();
      return;
    }
    // After our own close on an unreadable frame the code is ours, echoed: reconnect.
    this.retry(code, unreadable ? UNREADABLE : reason, unreadable);
  }

  /**
   * After a close: reconnect after a back-off, or stop when the close says not to
   * (`resume`: reconnect whatever the code).
   */
  private retry(code: number, reason: string, resume = false): void {
    const refusal = this.refusal;
    this.refusal = undefined;
    const status = refusal?.status;
    const stop = resume ? undefined : this.stopReason(code, status);
    const attempt = this.attempt;
    if (stop !== undefined || (this.options.maxAttempts !== undefined && attempt >= this.options.maxAttempts)) {
      const message = stop ?? `gave up after ${attempt + 1} failed attempts in a row (last close ${code})`;
      const error = new ConnectionClosedError(message, code, reason, status);
      this.emit({ type: "disconnected", code, reason, info: closeCodeInfo(code), status, retryIn: -1, attempt });
      this.closing = true;
      this.stop(error);
      this.setState("closed");
      this.emit({ type: "closed", error });
      return;
    }
    let delay = backoffDelay(attempt, this.options.backoff);
    const retryAfter = parseRetryAfter(refusal?.retryAfter);
    if (retryAfter !== undefined) delay = Math.max(delay, retryAfter + Math.random() * 250);
    this.attempt = attempt + 1;
    this.setState("reconnecting");
    this.emit({ type: "disconnected", code, reason, info: closeCodeInfo(code), status, retryIn: delay, attempt });
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  /** Why not to reconnect after this close, or undefined to reconnect. */
  private stopReason(code: number, status: number | undefined): string | undefined {
    if (status !== undefined) {
      if (status === 429 || status >= 500) return undefined; // busy, draining: come back later
      return `the server refused the connection with HTTP ${status}`;
    }
    const info = closeCodeInfo(code);
    // A code the server's table does not list: 1005 or 1006 (the connection was lost),
    // or a proxy's or gateway's (1015, 3000-3999, ...). Retried, as the Python SDK does.
    if (info === undefined) return undefined;
    if (info.newToken && info.reconnect) {
      // 4001: worth another try only with a token callback to ask for a new token.
      if (typeof this.options.token === "function") return undefined;
      return `closed by the server: ${code} ${info.name} (${info.reason}), and no new token can be had`;
    }
    if (info.reconnect) return undefined;
    return `closed by the server: ${code} ${info.name} (${info.reason})`;
  }

  /** End every subscription and pending wait. */
  private stop(error: Error | undefined): void {
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.refreshTimer);
    this.clearResubscribes();
    this.unavailable.clear();
    for (const sub of this.subs.values()) sub.end(error);
    this.subs.clear();
    const failure = error ?? new ConnectionClosedError("the client is closed", CloseCode.NORMAL, "");
    for (const waiter of this.openWaiters.splice(0)) waiter.reject(failure);
  }

  // -- frames ----------------------------------------------------------------
  private onFrame(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    let frame: Frame;
    try {
      frame = readFrame(data);
    } catch (error) {
      this.report(error);
      this.leaveUnread(socket);
      return;
    }
    if (frame.type === "refreshed") {
      this.emit({ type: "refreshed", expiresAt: frame.expiresAt ?? null });
      this.scheduleRefresh(frame.expiresAt ?? undefined);
      return;
    }
    if (frame.type === "error" && frame.op === "refresh") {
      this.swapToken(); // a server without the refresh command: reconnect with the new token
      return;
    }
    const id = frame.id;
    if (typeof id !== "string") return;
    const reply = isReply(frame);
    if (reply) this.inFlight.set(id, Math.max(0, (this.inFlight.get(id) ?? 0) - 1));
    const sub = this.subs.get(id);
    if (sub === undefined) return;
    const behind = this.behind.get(sub) ?? 0;
    if (behind > 0) {
      // A frame of an earlier subscription of this id (closed, its reply still coming).
      if (reply) this.behind.set(sub, behind - 1);
      return;
    }
    switch (frame.type) {
      case "message":
        sub.message(frame.data as StreamMessages[StreamName]);
        return;
      case "subscribed": {
        if (frame.position === undefined) return;
        this.healthy = true; // the server took our commands: the connection works
        this.unavailable.delete(sub);
        const resumed = sub.subscribed({
          position: frame.position,
          recovered: frame.recovered === true,
          replayed: frame.replayed ?? 0,
        });
        this.emit({
          type: "subscribed",
          id: sub.id,
          stream: sub.stream,
          position: frame.position,
          recovered: frame.recovered === true,
          resumed,
          replayed: frame.replayed ?? 0,
        });
        return;
      }
      case "snapshot":
        if (frame.position !== undefined) {
          sub.snapshot(frame.position, (frame.items ?? []) as StreamMessages[StreamName][]);
        }
        return;
      case "unsubscribed":
        // Without a reason it is the reply to an unsubscribe of ours, whose subscription
        // is gone; with one the server ended this subscription (a refresh took its stream).
        if (frame.reason !== undefined) {
          this.subs.delete(sub.id);
          sub.end(subscriptionError(frame));
        }
        return;
      case "error":
        if (frame.op !== "subscribe") return; // an unsubscribe of an id the server no longer had
        if (frame.error === "history_unavailable" && this.resubscribeLater(socket, sub)) return;
        this.subs.delete(sub.id);
        this.unavailable.delete(sub);
        sub.end(subscriptionError(frame));
        return;
      default:
        return;
    }
  }

  /**
   * A frame this client cannot read may be a message: rather than skip it, read
   * nothing more from this socket, close it, and reconnect and resume from the last
   * message delivered (after the back-off).
   */
  private leaveUnread(socket: WebSocketLike): void {
    if (this.unreadable) return;
    this.unreadable = true;
    socket.onmessage = null;
    // A browser's close() takes only 1000 and 3000-4999: the reason says why.
    socket.close(CloseCode.NORMAL, UNREADABLE);
  }

  /**
   * The server could not read the history to start `sub` (`history_unavailable`): send
   * the same command again (from the same position) after a back-off. False when the
   * retries are spent.
   */
  private resubscribeLater(socket: WebSocketLike, sub: Subscription<StreamName>): boolean {
    const tries = this.unavailable.get(sub) ?? 0;
    if (this.options.maxAttempts !== undefined && tries >= this.options.maxAttempts) return false;
    this.unavailable.set(sub, tries + 1);
    const timer = setTimeout(() => {
      this.resubscribeTimers.delete(timer);
      if (socket === this.socket && isOpen(socket) && this.subs.get(sub.id) === sub) this.sendSubscribe(sub);
    }, backoffDelay(tries, this.options.backoff));
    this.resubscribeTimers.add(timer);
    return true;
  }

  private clearResubscribes(): void {
    for (const timer of this.resubscribeTimers) clearTimeout(timer);
    this.resubscribeTimers.clear();
  }

  private async unsubscribe(sub: { readonly id: string }): Promise<void> {
    if ((this.subs.get(sub.id) as unknown) !== sub) return;
    this.subs.delete(sub.id);
    this.unavailable.delete(sub as Subscription<StreamName>);
    if (isOpen(this.socket)) this.sendCommand(sub.id, { op: "unsubscribe", id: sub.id });
  }

  /** Send `sub`'s subscribe command; frames of its id before the replies already due are not its. */
  private sendSubscribe(sub: Subscription<StreamName>): void {
    this.behind.set(sub, this.inFlight.get(sub.id) ?? 0);
    this.sendCommand(sub.id, sub.command());
  }

  /** Send a command that gets a reply with this id. */
  private sendCommand(id: string, command: Record<string, unknown>): void {
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1);
    this.send(command);
  }

  private send(command: Record<string, unknown>): void {
    this.socket?.send(JSON.stringify(command));
  }

  // -- token refresh ---------------------------------------------------------
  private scheduleRefresh(expiresAt: number | undefined): void {
    clearTimeout(this.refreshTimer);
    const source = this.options.token;
    if (typeof source !== "function" || this.token === undefined) return;
    const exp = expiresAt ?? tokenExpiry(this.token);
    if (exp === undefined) return;
    const left = exp * 1000 - Date.now();
    const lead = Math.min(this.options.refreshBefore ?? 30_000, left / 2);
    this.refreshTimer = setTimeout(() => void this.refresh(source), Math.max(0, left - lead));
  }

  private async refresh(source: () => string | Promise<string>): Promise<void> {
    const socket = this.socket;
    let token: string;
    try {
      token = await source();
    } catch (error) {
      // Closed meanwhile, or a new connection, which keeps its own schedule: nothing to do.
      if (this.closing || this.socket !== socket) return;
      this.report(error); // the token still in use is valid a while longer: try again
      this.refreshTimer = setTimeout(() => void this.refresh(source), 1000);
      return;
    }
    if (this.closing || this.socket !== socket) return;
    this.token = token;
    if (isOpen(socket)) this.send({ op: "refresh", id: REFRESH_ID, token });
  }

  /** Reconnect now with the current token (and resume every subscription). */
  private swapToken(): void {
    if (!isOpen(this.socket)) return;
    this.swapping = true;
    this.socket.close(CloseCode.NORMAL, "new token");
  }

  // -- events ------------------------------------------------------------------
  private setState(state: ConnectionState): void {
    this.stateValue = state;
  }

  private emit(event: ClientEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        // A listener's fault is the application's: raise it outside the client, so that
        // it is seen (an uncaught error) without stopping the client mid-frame.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** A fault the client survives (an unreadable frame, then resumed; a failing token callback): an error event. */
  private report(error: unknown): void {
    this.emit({ type: "error", error: error instanceof Error ? error : new Error(String(error)) });
  }
}

/** A frame from the server: a control reply or a wrapped message (docs/protocol.md). */
interface Frame {
  type?: string;
  id?: string;
  stream?: string;
  data?: unknown;
  position?: Position;
  recovered?: boolean;
  replayed?: number;
  items?: unknown[];
  op?: string;
  error?: string;
  detail?: string;
  reason?: string;
  expiresAt?: number | null;
}

/**
 * One frame, parsed and checked as far as the client relies on it.
 *
 * @throws ProtocolError when it is not a JSON object, or a message without a numeric seq.
 */
function readFrame(data: unknown): Frame {
  const text = messageText(data);
  if (text === undefined) throw new ProtocolError("a binary frame on a JSON connection");
  const frame: unknown = JSON.parse(text);
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) {
    throw new ProtocolError("a frame that is not a JSON object");
  }
  const { type, data: message } = frame as Frame;
  if (type === "message" && typeof (message as { seq?: unknown } | null)?.seq !== "number") {
    throw new ProtocolError("a message without a seq");
  }
  return frame as Frame;
}

/** The reply to a command: each command gets exactly one (`unsubscribed` with a reason is not one). */
function isReply(frame: Frame): boolean {
  if (frame.type === "subscribed") return true;
  if (frame.type === "unsubscribed") return frame.reason === undefined;
  return frame.type === "error" && (frame.op === "subscribe" || frame.op === "unsubscribe");
}

/** The /ws endpoint of a server URL. */
export function muxUrl(url: string): string {
  const parsed = new URL(url.replace(/^http(s?):/, "ws$1:"));
  if (!parsed.pathname.endsWith(MUX_PATH)) {
    parsed.pathname = parsed.pathname.replace(/\/$/, "") + MUX_PATH;
  }
  return parsed.toString();
}
