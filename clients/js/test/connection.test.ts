// The client's connection logic without a network: a scripted WebSocket hands it the
// frames a test writes and records the commands it sends, and node:test's mock timers
// stand in for the back-off. The real server's side of the same paths: client.test.ts.
import assert from "node:assert/strict";
import { describe, test, type TestContext } from "node:test";
import {
  Client,
  type ClientEvent,
  type ClientOptions,
  type Item,
  type StreamName,
  type Subscription,
  SubscriptionError,
} from "../src/index.js";

/** A WebSocket whose server is the test: it opens, sends frames and closes when told. */
class Scripted {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: Record<string, unknown>[] = [];
  /** The close this client started: [code, reason]. */
  closedWith: [number | undefined, string | undefined] | undefined;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith ??= [code, reason];
    if (this.readyState < 2) this.readyState = 2;
  }

  // -- the server's side
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  frame(frame: unknown): void {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  /** The server closes (or answers the client's close, echoing its code). */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  echoClose(): void {
    const [code, reason] = this.closedWith ?? [1005, ""];
    this.serverClose(code ?? 1005, reason ?? "");
  }
}

/** A client on scripted sockets; `sockets` lists them in the order it opened them. */
function scripted(options: ClientOptions = {}): { client: Client; sockets: Scripted[]; events: ClientEvent[] } {
  const sockets: Scripted[] = [];
  class Impl extends Scripted {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const client = new Client("ws://127.0.0.1:1", { WebSocket: Impl, backoff: { initial: 100, max: 1000 }, ...options });
  const events: ClientEvent[] = [];
  client.on((event) => events.push(event));
  return { client, sockets, events };
}

function socket(sockets: Scripted[], n: number): Scripted {
  const found = sockets[n];
  assert.ok(found !== undefined, `socket ${n} was never opened (${sockets.length} were)`);
  return found;
}

function subscribed(id: string, seq: number, replayed = 0, epoch = "e1"): Record<string, unknown> {
  return { type: "subscribed", id, stream: "transactions", position: { seq, epoch }, recovered: true, replayed };
}

function message(id: string, seq: number): Record<string, unknown> {
  return { type: "message", id, stream: "transactions", data: { seq } };
}

/** Let queued callbacks and promise jobs run (setImmediate is not mocked). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The next item, which must be ready now: items are queued as frames arrive. */
async function ready<S extends StreamName>(sub: Subscription<S>): Promise<Item<S>> {
  const result = await Promise.race([sub.next(), settle().then(() => "none" as const)]);
  if (result === "none") throw new Error("no item was ready");
  if (result.done === true) throw new Error("the subscription ended");
  return result.value;
}

function seqOf(item: Item<StreamName>): number | string {
  return item.type === "message" ? item.seq : item.type;
}

async function close(client: Client, open: Scripted | undefined): Promise<void> {
  const closing = client.close();
  if (open !== undefined && open.readyState < 3) open.echoClose();
  await closing;
}

function withTimers(t: TestContext): void {
  t.mock.timers.enable({ apis: ["setTimeout"] });
}

describe("an id used again after close()", () => {
  test("frames of the closed subscription, in flight, are not the new one's", async () => {
    const { client, sockets } = scripted();
    const first = client.subscribe("transactions", { id: "tx" });
    const ws = socket(sockets, 0);
    ws.open();
    ws.frame(subscribed("tx", 10));
    ws.frame(message("tx", 11));
    assert.equal(seqOf(await ready(first)), 11);
    await first.close();
    const second = client.subscribe("transactions", { id: "tx", filter: { status: "FAILED" } });
    assert.deepEqual(
      ws.sent.map((c) => c["op"]),
      ["subscribe", "unsubscribe", "subscribe"],
    );
    // Sent before the server read the unsubscribe: the first subscription's.
    ws.frame(message("tx", 12));
    ws.frame({ type: "unsubscribed", id: "tx" }); // the reply to that unsubscribe
    ws.frame(subscribed("tx", 12));
    ws.frame(message("tx", 15));
    assert.equal(seqOf(await ready(second)), 15);
    assert.equal(second.closed, false);
    assert.deepEqual(second.position, { seq: 15, epoch: "e1" });
    await close(client, ws);
  });

  test("even when the first subscription's own reply was still to come", async () => {
    const { client, sockets } = scripted();
    const first = client.subscribe("transactions", { id: "tx" });
    const ws = socket(sockets, 0);
    ws.open();
    await first.close(); // before the server answered its subscribe
    const second = client.subscribe("transactions", { id: "tx" });
    ws.frame(subscribed("tx", 10)); // the first one's
    ws.frame(message("tx", 11));
    ws.frame({ type: "unsubscribed", id: "tx" });
    ws.frame(subscribed("tx", 20)); // the second one's
    ws.frame(message("tx", 21));
    assert.equal(seqOf(await ready(second)), 21);
    await close(client, ws);
  });

  test("an unsubscribed with a reason still ends the subscription it names", async () => {
    const { client, sockets } = scripted();
    const sub = client.subscribe("transactions", { id: "tx" });
    const ws = socket(sockets, 0);
    ws.open();
    ws.frame(subscribed("tx", 10));
    ws.frame({ type: "unsubscribed", id: "tx", reason: "forbidden" });
    await assert.rejects(sub.next(), (error) => error instanceof SubscriptionError && error.error === "forbidden");
    await close(client, ws);
  });
});

describe("an unreadable frame", () => {
  test("closes the connection, reads nothing more from it, and resumes from the last message", async (t) => {
    withTimers(t);
    const { client, sockets, events } = scripted();
    const sub = client.subscribe("transactions");
    const first = socket(sockets, 0);
    first.open();
    first.frame(subscribed("transactions-1", 10));
    first.frame(message("transactions-1", 11));
    first.frame("{not json");
    first.frame(message("transactions-1", 12)); // after it: left for the resume
    assert.equal(seqOf(await ready(sub)), 11);
    assert.deepEqual(sub.position, { seq: 11, epoch: "e1" }); // 12 was not read
    assert.deepEqual(first.closedWith, [1000, "unreadable frame"]);
    first.echoClose(); // 1000 echoed: not a reason to stop
    t.mock.timers.tick(30_000);
    const second = socket(sockets, 1);
    second.open();
    assert.equal(second.sent[0]?.["since"], "11:e1");
    second.frame(subscribed("transactions-1", 12, 1));
    second.frame(message("transactions-1", 12));
    second.frame("42"); // JSON, but not a frame: unreadable too
    assert.equal(seqOf(await ready(sub)), 12);
    second.echoClose();
    t.mock.timers.tick(30_000);
    const disconnects = events.filter((e) => e.type === "disconnected");
    assert.deepEqual(
      disconnects.map((e) => e.type === "disconnected" && [e.code, e.reason, e.retryIn >= 0, e.attempt]),
      [
        [1000, "unreadable frame", true, 0],
        [1000, "unreadable frame", true, 1], // such a connection does not start the back-off over
      ],
    );
    assert.equal(events.filter((e) => e.type === "error").length, 2);
    assert.equal(sub.closed, false);
    await close(client, socket(sockets, 2));
  });
});

describe("history_unavailable", () => {
  const unavailable = {
    type: "error",
    id: "transactions-1",
    op: "subscribe",
    error: "history_unavailable",
    detail: "the broker did not answer",
  };

  test("sends the same subscribe again after a back-off; the subscription goes on", async (t) => {
    withTimers(t);
    const { client, sockets } = scripted();
    const sub = client.subscribe("transactions", { since: "40:e1" });
    const ws = socket(sockets, 0);
    ws.open();
    ws.frame(unavailable);
    assert.equal(sub.closed, false);
    t.mock.timers.tick(1000);
    ws.frame(unavailable);
    t.mock.timers.tick(1000);
    assert.equal(ws.sent.length, 3);
    assert.deepEqual(ws.sent[2], ws.sent[0]);
    assert.equal(ws.sent[0]?.["since"], "40:e1");
    ws.frame(subscribed("transactions-1", 41, 1));
    ws.frame(message("transactions-1", 41));
    assert.equal(seqOf(await ready(sub)), 41);
    await close(client, ws);
  });

  test("ends the subscription once maxAttempts retries are spent", async (t) => {
    withTimers(t);
    const { client, sockets } = scripted({ maxAttempts: 1 });
    const sub = client.subscribe("transactions");
    const ws = socket(sockets, 0);
    ws.open();
    ws.frame(unavailable);
    t.mock.timers.tick(1000);
    ws.frame(unavailable);
    await assert.rejects(sub.next(), (error) => error instanceof SubscriptionError && error.error === "history_unavailable");
    assert.equal(ws.sent.length, 2);
    await close(client, ws);
  });
});

describe("giving up", () => {
  test("maxAttempts: N gives up when the first attempt and N retries have failed", async (t) => {
    withTimers(t);
    const { client, sockets, events } = scripted({ maxAttempts: 1 });
    const sub = client.subscribe("metrics");
    socket(sockets, 0).serverClose(1006);
    t.mock.timers.tick(30_000);
    socket(sockets, 1).serverClose(1006);
    t.mock.timers.tick(30_000);
    assert.equal(sockets.length, 2);
    await assert.rejects(sub.next(), /gave up after 2 failed attempts in a row/);
    assert.ok(events.some((e) => e.type === "closed" && e.error !== undefined));
  });
});

describe("the token refresh", () => {
  function jwt(exp: number): string {
    const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
    return `${part({ alg: "none" })}.${part({ sub: "a", exp })}.sig`;
  }

  test("a refresh under way when the client closes leaves no timer and asks no more", async (t) => {
    withTimers(t);
    let calls = 0;
    let fail: (error: Error) => void = () => undefined;
    const token = (): Promise<string> => {
      calls += 1;
      if (calls === 1) return Promise.resolve(jwt(Math.floor(Date.now() / 1000) + 4));
      return new Promise((_, reject) => {
        fail = reject;
      });
    };
    const { client, sockets, events } = scripted({ token });
    client.subscribe("metrics");
    await settle(); // the first token, then the socket
    const ws = socket(sockets, 0);
    ws.open();
    t.mock.timers.tick(4000); // the refresh is due: the callback is asked, and answers late
    assert.equal(calls, 2);
    await close(client, ws);
    fail(new Error("token service down"));
    await settle();
    t.mock.timers.tick(60_000);
    await settle();
    assert.equal(calls, 2);
    assert.equal(events.filter((e) => e.type === "error").length, 0);
    assert.equal(sockets.length, 1);
  });
});
