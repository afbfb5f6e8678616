// The client against a real server (quiet: only what the tests publish flows,
// plus metrics from the sampler).
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import {
  CLOSE_CODES,
  type Client,
  type ClientEvent,
  type MessageItem,
  SubscriptionError,
  type TransactionMessage,
  type WebSocketLike,
  muxUrl,
} from "../src/index.js";
import WebSocket from "ws";
import { eventually, newClient, nextEvent, publish, serverUrl, take, transaction, validator } from "./support.js";

const clients: Client[] = [];
function client(...args: Parameters<typeof newClient>): Client {
  const made = newClient(...args);
  clients.push(made);
  return made;
}
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
});

const A = "0x" + "a1".repeat(20);
const B = "0x" + "b2".repeat(20);

describe("the client on a live server", () => {
  test("the close-code table is the server's (AsyncAPI x-close-codes)", async () => {
    const doc = (await (await fetch(`${serverUrl()}/q/asyncapi`)).json()) as {
      "x-close-codes": { code: number; name: string; reason: string; reconnect: boolean }[];
    };
    assert.deepEqual(
      CLOSE_CODES.map((c) => ({ ...c })),
      doc["x-close-codes"],
    );
  });

  test("muxUrl finds the /ws endpoint of a server URL", () => {
    assert.equal(muxUrl("http://h:9003"), "ws://h:9003/ws");
    assert.equal(muxUrl("https://h/base/"), "wss://h/base/ws");
    assert.equal(muxUrl("ws://h:9003/ws"), "ws://h:9003/ws");
  });

  test("a filtered subscription gets only matching messages, typed, in seq order", async () => {
    const c = client();
    const sub = c.subscribe("transactions", { filter: { address: A } });
    await nextEvent(c, (e) => e.type === "subscribed" && e.id === sub.id);
    const seqs = await publish("transactions", [
      transaction({ from: A }),
      transaction({ from: B }),
      transaction({ to: A }),
    ]);
    const items = await take(sub, 2);
    const messages = items as MessageItem<"transactions">[];
    assert.deepEqual(
      messages.map((m) => [m.type, m.seq]),
      [
        ["message", seqs[0]],
        ["message", seqs[2]],
      ],
    );
    const data: TransactionMessage = messages[0]!.data;
    assert.equal(data.from, A);
    assert.equal(messages[1]!.data.to, A);
    await sub.close();
  });

  test("several subscriptions share one /ws connection", async () => {
    const c = client();
    const before = await muxConnections();
    const metrics = c.subscribe("metrics");
    const tx = c.subscribe("transactions", { filter: { address: B } });
    const [metric] = await take(metrics, 1);
    assert.equal(metric?.type, "message");
    await publish("transactions", [transaction({ to: B })]);
    const [txItem] = await take(tx, 1);
    assert.equal(txItem?.type === "message" && txItem.data.to, B);
    assert.equal(await muxConnections(), before + 1);
    await metrics.close();
    await tx.close();
  });

  test("replay gives the last N messages, then live ones, consecutive", async () => {
    const seqs = await publish("transactions", [1, 2, 3, 4, 5].map(() => transaction()));
    const c = client();
    const sub = c.subscribe("transactions", { replay: 3 });
    const replayed = await take(sub, 3);
    const live = await publish("transactions", [transaction()]);
    const [next] = await take(sub, 1);
    assert.deepEqual(
      [...replayed, next].map((i) => i?.type === "message" && i.seq),
      [...seqs.slice(2), live[0]],
    );
    assert.ok(sub.position !== null && sub.position.seq === live[0]);
    await sub.close();
  });

  test("snapshot=true gives the current validator set first, then changes", async () => {
    const v1 = "0x" + "c3".repeat(20);
    await publish("validators", [validator(v1, { votingPower: 7 })]);
    const c = client();
    const sub = c.subscribe("validators", { snapshot: true, filter: { validator: v1 } });
    const [first] = await take(sub, 1);
    assert.ok(first?.type === "snapshot");
    assert.deepEqual(
      first.items.map((v) => [v.validator, v.votingPower]),
      [[v1, 7]],
    );
    await publish("validators", [validator(v1, { status: "JAILED" })]);
    const [change] = await take(sub, 1);
    assert.ok(change?.type === "message" && change.data.status === "JAILED");
    assert.equal(change.seq, first.position.seq + 1);
    await sub.close();
  });

  test("since resumes after a kept position with no duplicate", async () => {
    const seqs = await publish("transactions", [1, 2, 3].map(() => transaction({ from: A })));
    const c = client();
    const probe = c.subscribe("transactions", { replay: 0 });
    const subscribed = (await nextEvent(c, (e) => e.type === "subscribed" && e.id === probe.id)) as Extract<
      ClientEvent,
      { type: "subscribed" }
    >;
    await probe.close();
    const since = `${seqs[0]}:${subscribed.position.epoch}`;
    const sub = c.subscribe("transactions", { since, filter: { address: A } });
    const items = await take(sub, 2);
    assert.deepEqual(
      items.map((i) => i.type === "message" && i.seq),
      seqs.slice(1),
    );
    await sub.close();
  });

  test("a bad filter ends the subscription with the server's error; others go on", async () => {
    const c = client();
    const good = c.subscribe("transactions", { filter: { address: A } });
    const bad = c.subscribe("transactions", { filter: { minValue: "abc" } });
    await assert.rejects(
      bad.next(),
      (error: unknown) => error instanceof SubscriptionError && error.error === "invalid_filter",
    );
    await publish("transactions", [transaction({ from: A })]);
    const [item] = await take(good, 1);
    assert.equal(item?.type, "message");
    await good.close();
  });

  test("an id used again right after close() gets only its own frames", async () => {
    const c = client();
    const first = c.subscribe("transactions", { id: "again", filter: { address: A } });
    await nextEvent(c, (e) => e.type === "subscribed" && e.id === "again");
    await publish("transactions", [transaction({ from: A }), transaction({ from: A })]);
    await take(first, 1); // the second may still be on its way
    await first.close();
    const confirmed = nextEvent(c, (e) => e.type === "subscribed" && e.id === "again");
    const second = c.subscribe("transactions", { id: "again", filter: { address: A, status: "FAILED" } });
    await confirmed; // the reply to first's unsubscribe came before: it did not end this one
    const [seq] = await publish("transactions", [transaction({ from: A, status: "FAILED" })]);
    const [item] = await take(second, 1);
    assert.ok(item?.type === "message" && item.seq === seq && item.data.status === "FAILED");
    await second.close();
  });

  test("an unreadable frame is read again after a resume: every message once, in order", async () => {
    const D = "0x" + "d4".repeat(20);
    const c = client({ WebSocket: ThirdMessageUnreadable });
    const sub = c.subscribe("transactions", { filter: { address: D } });
    await nextEvent(c, (e) => e.type === "subscribed" && e.id === sub.id);
    const dropped = nextEvent(c, (e) => e.type === "disconnected");
    const seqs = await publish("transactions", [1, 2, 3, 4, 5, 6].map(() => transaction({ from: D })));
    const items = await take(sub, 6);
    assert.deepEqual(
      items.map((i) => (i.type === "message" ? i.seq : i.type)),
      seqs,
    );
    const drop = await dropped;
    assert.ok(drop.type === "disconnected" && drop.reason === "unreadable frame" && drop.retryIn >= 0);
    await sub.close();
  });

  test("a resume from a lost epoch yields a typed gap before the next message", async () => {
    const c = client();
    const sub = c.subscribe("transactions", { since: "5:not-this-epoch", filter: { address: B } });
    const [gap] = await take(sub, 1);
    assert.ok(gap?.type === "gap");
    assert.equal(gap.reason, "epoch_changed");
    assert.equal(gap.missed, null);
    assert.deepEqual(gap.last, { seq: 5, epoch: "not-this-epoch" });
    assert.notEqual(gap.position.epoch, "not-this-epoch");
    const [seq] = await publish("transactions", [transaction({ from: B })]);
    const [next] = await take(sub, 1);
    assert.ok(next?.type === "message" && next.seq === seq && next.epoch === gap.position.epoch);
    await sub.close();
  });
});

/**
 * The `ws` package's WebSocket, except that the third stream message this process
 * receives on such sockets reaches the client as a frame it cannot read.
 */
let messagesSeen = 0;
class ThirdMessageUnreadable implements WebSocketLike {
  private readonly inner: WebSocket;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(url: string, protocols?: string | string[]) {
    this.inner = new WebSocket(url, protocols);
    this.inner.onopen = (event) => this.onopen?.(event);
    this.inner.onmessage = (event) => {
      let data: unknown = event.data;
      if (typeof data === "string" && (JSON.parse(data) as { type?: string }).type === "message") {
        messagesSeen += 1;
        if (messagesSeen === 3) data = "{unreadable";
      }
      this.onmessage?.({ data });
    };
    this.inner.onclose = (event) => this.onclose?.({ code: event.code, reason: event.reason });
    this.inner.onerror = (event) => this.onerror?.(event);
  }

  get readyState(): number {
    return this.inner.readyState;
  }

  send(data: string): void {
    this.inner.send(data);
  }

  close(code?: number, reason?: string): void {
    this.inner.close(code, reason);
  }
}

async function muxConnections(): Promise<number> {
  return eventually(async () => {
    const stats = (await (await fetch(`${serverUrl()}/api/v11/websocket/stats`)).json()) as Record<string, unknown>;
    const endpoints = stats["endpoints"] as Record<string, { connections: number }> | undefined;
    return endpoints?.["ws"]?.connections;
  });
}
