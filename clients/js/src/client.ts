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
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

type Listener = (event: ClientEvent) => void;

/** The `id` of refresh commands; their replies (`refreshed`, or an error with op refresh) are told by type and op. */
const REFRESH_ID = "refresh";

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
  /** Set when this client closes its own socket to reconnect at once (a token swap). */
  private swapping = false;
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
    if (isOpen(this.socket)) this.send(sub.command());
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
    this.emit({ type: "open", reconnected });
    for (const waiter of this.openWaiters.splice(0)) waiter.resolve();
    for (const sub of this.subs.values()) this.send(sub.command());
    this.scheduleRefresh(undefined);
  }

  private onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = null;
    clearTimeout(this.refreshTimer);
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
    this.retry(code, reason);
  }

  /** After a close: reconnect after a back-off, or stop when the close says not to. */
  private retry(code: number, reason: string): void {
    const refusal = this.refusal;
    this.refusal = undefined;
    const status = refusal?.status;
    const stop = this.stopReason(code, status);
    const attempt = this.attempt;
    if (stop !== undefined || (this.options.maxAttempts !== undefined && attempt >= this.options.maxAttempts)) {
      const message = stop ?? `gave up after ${attempt} attempts (last close ${code})`;
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
    if (info === undefined) return undefined; // 1005, 1006: the connection was lost
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
    for (const sub of this.subs.values()) sub.end(error);
    this.subs.clear();
    const failure = error ?? new ConnectionClosedError("the client is closed", CloseCode.NORMAL, "");
    for (const waiter of this.openWaiters.splice(0)) waiter.reject(failure);
  }

  // -- frames ----------------------------------------------------------------
  private onFrame(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    const text = messageText(data);
    let frame: Frame;
    try {
      if (text === undefined) throw new ProtocolError("a binary frame on a JSON connection");
      frame = JSON.parse(text) as Frame;
    } catch (error) {
      this.report(error);
      return;
    }
    const sub = typeof frame.id === "string" && frame.op !== "refresh" ? this.subs.get(frame.id) : undefined;
    switch (frame.type) {
      case "message":
        sub?.message(frame.data as StreamMessages[StreamName]);
        return;
      case "subscribed": {
        if (sub === undefined || frame.position === undefined) return;
        this.attempt = 0; // the server took our commands: the connection works
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
        if (sub !== undefined && frame.position !== undefined) {
          sub.snapshot(frame.position, (frame.items ?? []) as StreamMessages[StreamName][]);
        }
        return;
      case "unsubscribed":
        if (sub !== undefined) {
          // Not asked for by us (we drop the subscription when we ask): the server ended it.
          this.subs.delete(sub.id);
          sub.end(subscriptionError(frame));
        }
        return;
      case "error":
        if (frame.op === "refresh") {
          this.swapToken(); // a server without the refresh command: reconnect with the new token
        } else if (sub !== undefined) {
          this.subs.delete(sub.id);
          sub.end(subscriptionError(frame));
        }
        return;
      case "refreshed":
        this.emit({ type: "refreshed", expiresAt: frame.expiresAt ?? null });
        this.scheduleRefresh(frame.expiresAt ?? undefined);
        return;
      default:
        return;
    }
  }

  private async unsubscribe(sub: { readonly id: string }): Promise<void> {
    if ((this.subs.get(sub.id) as unknown) !== sub) return;
    this.subs.delete(sub.id);
    if (isOpen(this.socket)) this.send({ op: "unsubscribe", id: sub.id });
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

  /** A fault the client survives (an unreadable frame, a failing token callback): an error event. */
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

/** The /ws endpoint of a server URL. */
export function muxUrl(url: string): string {
  const parsed = new URL(url.replace(/^http(s?):/, "ws$1:"));
  if (!parsed.pathname.endsWith(MUX_PATH)) {
    parsed.pathname = parsed.pathname.replace(/\/$/, "") + MUX_PATH;
  }
  return parsed.toString();
}
