// The client's logic without a socket: back-off, Retry-After, token expiry, and a
// subscription's bookkeeping (duplicates dropped, gaps announced before the next message).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  LATEST_WINS_STREAMS,
  Subscription,
  backoffDelay,
  parsePosition,
  parseRetryAfter,
  tokenExpiry,
} from "../src/index.js";
import type { ConsensusMessage, Item, TransactionMessage } from "../src/index.js";

function tx(seq: number): TransactionMessage {
  return {
    timestamp: "2025-10-25T09:35:02Z",
    txHash: "0x" + "00".repeat(32),
    from: "0x" + "11".repeat(20),
    to: "0x" + "22".repeat(20),
    value: "1",
    status: "PENDING",
    gasUsed: 1,
    seq,
  };
}

function state(seq: number): ConsensusMessage {
  return {
    timestamp: "2025-10-25T09:35:10Z",
    leader: "0x" + "33".repeat(20),
    epoch: 1,
    round: seq,
    term: 1,
    state: "VOTING",
    performanceScore: 0.9,
    activeValidators: 21,
    seq,
  };
}

function drain<S extends "transactions" | "consensus">(sub: Subscription<S>): Promise<Item<S>[]> {
  const items: Item<S>[] = [];
  return (async () => {
    sub.end();
    for await (const item of sub) items.push(item);
    return items;
  })();
}

describe("back-off", () => {
  test("grows exponentially, with jitter between half and all of the step, capped", () => {
    assert.equal(backoffDelay(0, { initial: 100 }, () => 0), 50);
    assert.equal(backoffDelay(0, { initial: 100 }, () => 1), 100);
    assert.equal(backoffDelay(3, { initial: 100 }, () => 1), 800);
    assert.equal(backoffDelay(30, { initial: 100, max: 5000 }, () => 0.5), 3750);
  });

  test("Retry-After: seconds or an HTTP date, in ms", () => {
    assert.equal(parseRetryAfter("5"), 5000);
    assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT")), 10_000);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter("soon"), undefined);
  });
});

test("tokenExpiry reads exp from a JWT's payload, and nothing from anything else", () => {
  const payload = Buffer.from(JSON.stringify({ sub: "a", exp: 1700000000 })).toString("base64url");
  assert.equal(tokenExpiry(`e30.${payload}.sig`), 1700000000);
  assert.equal(tokenExpiry("not-a-jwt"), undefined);
  assert.equal(tokenExpiry("a.!!!.c"), undefined);
});

test("parsePosition reads SEQ:EPOCH only", () => {
  assert.deepEqual(parsePosition("41:9f3a"), { seq: 41, epoch: "9f3a" });
  assert.equal(parsePosition("41"), undefined);
  assert.equal(parsePosition("x:9f3a"), undefined);
});

describe("a subscription's bookkeeping", () => {
  const closed = async (): Promise<void> => undefined;

  test("a resume that replays what was delivered delivers it once", async () => {
    const sub = new Subscription("t", "transactions", {}, closed);
    sub.subscribed({ position: { seq: 10, epoch: "e1" }, recovered: true, replayed: 0 });
    sub.message(tx(11));
    sub.message(tx(12));
    assert.equal(sub.subscribed({ position: { seq: 14, epoch: "e1" }, recovered: true, replayed: 2 }), true);
    sub.message(tx(12)); // overlaps
    sub.message(tx(13));
    sub.message(tx(14));
    const items = await drain(sub);
    assert.deepEqual(
      items.map((i) => (i.type === "message" ? i.seq : i.type)),
      [11, 12, 13, 14],
    );
    assert.deepEqual(sub.command(), { op: "subscribe", id: "t", stream: "transactions", since: "14:e1" });
  });

  test("recovered false: a gap (epoch changed, missed unknown) before the next message", async () => {
    const sub = new Subscription("t", "transactions", {}, closed);
    sub.subscribed({ position: { seq: 10, epoch: "e1" }, recovered: true });
    sub.message(tx(11));
    sub.subscribed({ position: { seq: 3, epoch: "e2" }, recovered: false });
    sub.message(tx(4));
    const [message, gap, next] = await drain(sub);
    assert.equal(message?.type, "message");
    assert.deepEqual(gap, {
      type: "gap",
      id: "t",
      stream: "transactions",
      reason: "epoch_changed",
      missed: null,
      last: { seq: 11, epoch: "e1" },
      position: { seq: 3, epoch: "e2" },
    });
    assert.ok(next?.type === "message" && next.seq === 4 && next.epoch === "e2");
  });

  test("recovered false in the same epoch, no filter: the number missed is known", async () => {
    const sub = new Subscription("t", "transactions", {}, closed);
    sub.subscribed({ position: { seq: 10, epoch: "e1" }, recovered: true });
    sub.subscribed({ position: { seq: 25, epoch: "e1" }, recovered: false });
    const [gap] = await drain(sub);
    assert.ok(gap?.type === "gap" && gap.reason === "history_lost" && gap.missed === 15);
  });

  test("with a filter that drops messages the count is unknown, and seqs may jump", async () => {
    const sub = new Subscription("t", "transactions", { filter: { address: "0x" + "11".repeat(20) } }, closed);
    sub.subscribed({ position: { seq: 10, epoch: "e1" }, recovered: true });
    sub.message(tx(15));
    sub.subscribed({ position: { seq: 25, epoch: "e1" }, recovered: false });
    const items = await drain(sub);
    assert.deepEqual(
      items.map((i) => i.type),
      ["message", "gap"],
    );
    assert.ok(items[1]?.type === "gap" && items[1].missed === null);
  });

  test("without a filter, a seq skipped on a live connection is announced, never silent", async () => {
    const sub = new Subscription("t", "transactions", {}, closed);
    sub.subscribed({ position: { seq: 10, epoch: "e1" }, recovered: true });
    sub.message(tx(11));
    sub.message(tx(14));
    const items = await drain(sub);
    assert.deepEqual(
      items.map((i) => (i.type === "gap" ? `gap ${i.missed}` : i.type === "message" ? i.seq : i.type)),
      [11, "gap 2", 14],
    );
  });

  test("on a latest-wins stream a seq that jumps is a conflated state, not a gap", async () => {
    const sub = new Subscription("c", "consensus", {}, closed);
    sub.subscribed({ position: { seq: 10, epoch: "e1" }, recovered: true });
    sub.message(state(11));
    sub.message(state(14)); // 12 and 13 were replaced by 14 under load
    const items = await drain(sub);
    assert.deepEqual(
      items.map((i) => (i.type === "message" ? i.seq : i.type)),
      [11, 14],
    );
    assert.ok(LATEST_WINS_STREAMS.includes("metrics"));
  });

  test("a filtered replay cut before its first message: the resume asks for what follows its position, and the replay is a gap", async () => {
    const filter = { status: "FAILED" } as const;
    const sub = new Subscription("t", "transactions", { filter, replay: 3 }, closed);
    sub.subscribed({ position: { seq: 50, epoch: "e1" }, recovered: true, replayed: 3 });
    // Its 3 messages passed the filter at seqs no one can tell: not 48, 49, 50.
    assert.deepEqual(sub.command(), { op: "subscribe", id: "t", stream: "transactions", filter, since: "50:e1" });
    assert.equal(sub.subscribed({ position: { seq: 60, epoch: "e1" }, recovered: true, replayed: 4 }), true);
    sub.message(tx(50));
    sub.message(tx(55));
    const items = await drain(sub);
    assert.deepEqual(items[0], {
      type: "gap",
      id: "t",
      stream: "transactions",
      reason: "replay_lost",
      missed: null,
      last: null,
      position: { seq: 50, epoch: "e1" },
    });
    assert.deepEqual(
      items.slice(1).map((i) => (i.type === "message" ? i.seq : i.type)),
      [55],
    );
  });

  test("a filtered replay that began resumes from its last message, with no gap", async () => {
    const sub = new Subscription("t", "transactions", { filter: { status: "FAILED" }, replay: 3 }, closed);
    sub.subscribed({ position: { seq: 50, epoch: "e1" }, recovered: true, replayed: 3 });
    sub.message(tx(20));
    assert.equal(sub.command()["since"], "20:e1");
    sub.subscribed({ position: { seq: 60, epoch: "e1" }, recovered: true, replayed: 2 });
    sub.message(tx(33));
    const items = await drain(sub);
    assert.deepEqual(
      items.map((i) => (i.type === "message" ? i.seq : i.type)),
      [20, 33],
    );
  });

  test("a projection drops no message: a replay cut early resumes from just before it", () => {
    const sub = new Subscription("t", "transactions", { filter: { detail: "summary" }, replay: 3 }, closed);
    sub.subscribed({ position: { seq: 50, epoch: "e1" }, recovered: true, replayed: 3 });
    assert.equal(sub.command()["since"], "47:e1");
  });

  test("replay and snapshot are asked for once; a resume asks for since (snapshot as fallback)", () => {
    const sub = new Subscription("v", "transactions", { replay: 5 }, closed);
    assert.deepEqual(sub.command(), { op: "subscribe", id: "v", stream: "transactions", replay: 5 });
    sub.subscribed({ position: { seq: 40, epoch: "e" }, recovered: true, replayed: 5 });
    assert.deepEqual(sub.command(), { op: "subscribe", id: "v", stream: "transactions", since: "35:e" });
    assert.throws(() => new Subscription("x", "transactions", { replay: 1, since: "1:e" }, closed), TypeError);
  });
});
