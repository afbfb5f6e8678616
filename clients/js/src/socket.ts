// The WebSocket the client runs on: the browser's, or the `ws` package's in Node,
// injected as a constructor. Only the browser API is used, plus one `ws`
// extension: the status and Retry-After header of a refused upgrade.

/**
 * An event handler property, checked bivariantly (as methods are), so that both the
 * browser's WebSocket and the `ws` package's, whose handlers take richer event types
 * than the few fields read here, are accepted as they are.
 */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** The part of the WebSocket API (browsers, and `ws` in Node) the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** What Node's `ws` adds: an EventEmitter that reports the HTTP answer to a refused upgrade. */
interface NodeWebSocket extends WebSocketLike {
  on(event: "unexpected-response", listener: (request: unknown, response: HttpAnswer) => void): void;
  terminate(): void;
}

interface HttpAnswer {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
}

/** The HTTP answer to a refused upgrade, when the platform shows it (Node's `ws`; never a browser). */
export interface Refusal {
  status: number;
  retryAfter: string | undefined;
}

const OPEN = 1;

/**
 * Open a socket with `Impl`, and report a refused upgrade's status through
 * `onRefused` before `onclose` (1006) fires. Browsers do not expose the status
 * of a refused upgrade to scripts, so there `onRefused` is never called.
 */
export function openSocket(
  Impl: WebSocketConstructor,
  url: string,
  protocols: string[],
  onRefused: (refusal: Refusal) => void,
): WebSocketLike {
  const socket = new Impl(url, protocols);
  if (isNodeWebSocket(socket)) {
    socket.on("unexpected-response", (_request, response) => {
      const header = response.headers["retry-after"];
      onRefused({
        status: response.statusCode ?? 0,
        retryAfter: Array.isArray(header) ? header[0] : header,
      });
      socket.terminate(); // with a listener, ws leaves the aborting to us; onclose follows
    });
  }
  return socket;
}

function isNodeWebSocket(socket: WebSocketLike): socket is NodeWebSocket {
  const candidate = socket as Partial<NodeWebSocket>;
  return typeof candidate.on === "function" && typeof candidate.terminate === "function";
}

export function isOpen(socket: WebSocketLike | null): socket is WebSocketLike {
  return socket !== null && socket.readyState === OPEN;
}

/** The text of a message event: a string from browsers and `ws`; binary frames are not expected (JSON format). */
export function messageText(data: unknown): string | undefined {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data as Uint8Array);
  return undefined;
}
