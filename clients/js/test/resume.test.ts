// 2,000 events published at a steady rate while the client's connection is
// dropped five times, five different ways; the application must see every
// seq exactly once, and a gap value exactly where the server lost history.
//
// The server runs as a child of this test (STREAM_SERVE), so it can be
// restarted on the same port; the client reaches it through a TCP relay that
// can cut or stall the connection. With STREAM_HISTORY_SURVIVES=1 the server is
// a node of a cluster (its history in Redis): the restart then loses nothing,
// and the application sees every seq exactly once with no gap at all.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { ClientEvent, Gap, Item } from "../src/index.js";
import { Relay } from "./proxy.js";
import { ServerProcess, serveSpec } from "./serverprocess.js";
import { eventually, newClient, nextEvent, within } from "./support.js";

const TOTAL = 2000;
const RATE_MS = 10; // one event per 10 ms: 100 a second, about 20 s of publishing
const SURVIVES = process.env["STREAM_HISTORY_SURVIVES"] === "1";
const server = new ServerProcess(serveSpec());
after(() => server.kill());

interface Ack {
  seq: number;
  generation: number; // which server process accepted it: 1 before the restart, 2 after
}

function event(i: number): Record<string, unknown> {
  return {
    timestamp: "2025-10-25T09:35:02Z",
    txHash: `0x${i.toString(16).padStart(64, "0")}`,
    from: "0x" + "11".repeat(20),
    to: "0x" + "22".repeat(20),
    value: String(1000 + i),
    status: "PENDING",
    gasUsed: 21000,
  };
}

function filler(i: number): Record<string, unknown> {
  return {
    timestamp: "2025-10-25T09:35:02Z",
    peerId: `filler-${i}-${"x".repeat(100)}`,
    ip: "10.0.0.1",
    connected: true,
    latency: 1.5,
    version: "1.0.0",
  };
}

/** The /ws endpoint's count of connections the server decided to close with 4008 or 4009. */
async function closesWith(code: 4008 | 4009): Promise<number> {
  const stats = (await (await fetch(`${server.http}/api/v11/websocket/stats`)).json()) as {
    endpoints: Record<string, { slowConsumerDisconnects: number; keepaliveDisconnects: number }>;
  };
  const ws = stats.endpoints["ws"];
  if (ws === undefined) return 0;
  return code === 4008 ? ws.slowConsumerDisconnects : ws.keepaliveDisconnects;
}

test("every seq exactly once across five drops; a gap only where the server lost history", { timeout: 240_000 }, async () => {
  await server.start();
  const relay = await Relay.start(server.spec.port);
  const client = newClient({ backoff: { initial: 50, max: 500 } }, `http://127.0.0.1:${relay.port}`);
  const events: ClientEvent[] = [];
  client.on((e) => events.push(e));
  let generation = 1;
  const acks: Ack[] = [];
  let publishing = true;
  try {
    const sub = client.subscribe("transactions");
    await nextEvent(client, (e) => e.type === "subscribed" && e.id === sub.id);

    const items: Item<"transactions">[] = [];
    const consumer = (async () => {
      for await (const item of sub) items.push(item);
    })();

    // The publisher: one event per RATE_MS, straight to the server (not through the
    // relay); while the server restarts it retries the same event (bounded).
    const publisher = (async () => {
      const start = Date.now();
      for (let i = 0; i < TOTAL; i++) {
        const wait = start + i * RATE_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        for (let attempt = 0; ; attempt++) {
          const gen = generation;
          try {
            const response = await fetch(`${server.http}/api/v11/streams/transactions/events`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(event(i)),
            });
            if (response.status === 200) {
              const { seqs } = (await response.json()) as { seqs: number[] };
              acks.push({ seq: seqs[0]!, generation: gen });
              break;
            }
          } catch {
            // the server is restarting
          }
          if (attempt > 600) throw new Error(`event ${i} not accepted within 30 s`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      publishing = false;
    })();

    const published = (n: number): Promise<boolean> =>
      eventually(async () => (acks.length >= n || !publishing ? true : undefined), 60_000, `${n} published`);
    const dropped = (code: number): Promise<ClientEvent> =>
      nextEvent(client, (e) => e.type === "disconnected" && e.code === code, 30_000);
    const resumed = (): Promise<ClientEvent> =>
      nextEvent(client, (e) => e.type === "subscribed" && e.id === sub.id && e.resumed, 30_000);

    // 1. The network drops the connection.
    await published(200);
    let back = resumed();
    let closed = dropped(1006);
    relay.cut();
    await closed;
    assert.ok(((await back) as Extract<ClientEvent, { type: "subscribed" }>).recovered);

    // 2. The client stops reading: its pings go unanswered, the server closes with 4009.
    await published(500);
    let before = await closesWith(4009);
    relay.stall();
    await eventually(async () => ((await closesWith(4009)) > before ? true : undefined), 30_000, "a 4009");
    back = resumed();
    closed = dropped(4009);
    relay.resume();
    await closed;
    assert.ok(((await back) as Extract<ClientEvent, { type: "subscribed" }>).recovered);

    // 3. The client stops reading while a burst arrives: over max_buffered_bytes, 4008.
    await published(800);
    const burst = client.subscribe("network");
    await nextEvent(client, (e) => e.type === "subscribed" && e.id === burst.id);
    before = await closesWith(4008);
    const keepaliveBefore = await closesWith(4009);
    relay.stall();
    const stalledAt = Date.now();
    let batches = 0;
    // Bounded: 200 batches of about 300 KB; a few MB fill the kernel's buffers first.
    for (; batches < 200 && (await closesWith(4008)) === before; batches++) {
      assert.equal(await closesWith(4009), keepaliveBefore, "4009 came before 4008: raise --ping-timeout");
      const response = await fetch(`${server.http}/api/v11/streams/network/events`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(Array.from({ length: 1000 }, (_, i) => filler(batches * 1000 + i))),
      });
      assert.equal(response.status, 200);
    }
    assert.ok((await closesWith(4008)) > before, "the stalled client was never closed with 4008");
    const burstMs = Date.now() - stalledAt;
    await burst.close(); // not resumed: only the transactions subscription is under test
    back = resumed();
    closed = dropped(4008);
    relay.resume();
    await closed;
    assert.ok(((await back) as Extract<ClientEvent, { type: "subscribed" }>).recovered);

    // 4. The server restarts (1001, then refused connects): its history is gone.
    await published(1100);
    back = resumed();
    closed = dropped(1001);
    await server.stop();
    await closed;
    generation = 2;
    await server.start();
    const afterRestart = (await back) as Extract<ClientEvent, { type: "subscribed" }>;
    // A node of a cluster kept its history in Redis: the resume recovers.
    assert.equal(afterRestart.recovered, SURVIVES);

    // 5. The network drops the connection again.
    await published(1400);
    back = resumed();
    closed = dropped(1006);
    relay.cut();
    await closed;
    assert.ok(((await back) as Extract<ClientEvent, { type: "subscribed" }>).recovered);

    await within(publisher, 120_000, "the publisher");
    const last = acks[acks.length - 1]!;
    assert.equal(last.generation, 2);
    await eventually(
      async () => (items.some((i) => i.type === "message" && i.seq === last.seq && i.epoch === afterRestart.position.epoch) ? true : undefined),
      30_000,
      `the last seq (${last.seq})`,
    );
    await sub.close();
    await consumer;

    const drops = events.filter((e) => e.type === "disconnected").map((e) => (e.type === "disconnected" ? e.code : 0));
    for (const code of [1006, 4009, 4008, 1001]) assert.ok(drops.includes(code), `no ${code} in ${drops}`);
    const resumes = events.filter((e) => e.type === "subscribed" && e.id === sub.id && e.resumed);
    assert.equal(resumes.length, 5);
    const gaps = items.filter((i): i is Gap<"transactions"> => i.type === "gap");

    if (SURVIVES) {
      // No gap: every seq from 1 to the last published, each once, in order, one epoch.
      assert.equal(gaps.length, 0, JSON.stringify(gaps));
      const messages = items.filter((i) => i.type === "message");
      assert.deepEqual(
        messages.map((m) => m.seq),
        Array.from({ length: last.seq }, (_, i) => i + 1),
      );
      assert.deepEqual(
        acks.map((a) => a.seq),
        Array.from({ length: TOTAL }, (_, i) => i + 1),
      );
      assert.ok(messages.every((m) => m.epoch === afterRestart.position.epoch));
      console.log(`${messages.length} messages in one epoch; closes seen: ${drops.join(" ")}`);
      return;
    }

    // Exactly one gap, at the restart, before the first message of the new epoch.
    assert.equal(gaps.length, 1, JSON.stringify(gaps));
    const gap = gaps[0]!;
    assert.equal(gap.reason, "epoch_changed");
    assert.equal(gap.missed, null);
    assert.deepEqual(gap.position, afterRestart.position);
    const gapAt = items.indexOf(gap);
    const messages = items.filter((i) => i.type === "message");
    const firstEpoch = items.slice(0, gapAt).filter((i) => i.type === "message");
    const secondEpoch = items.slice(gapAt + 1).filter((i) => i.type === "message");
    assert.equal(firstEpoch.length + secondEpoch.length, messages.length);

    // Before the restart: seqs 1..k, each once, in order, k = the gap's last position.
    const acked1 = acks.filter((a) => a.generation === 1).map((a) => a.seq);
    const k = gap.last?.seq ?? 0;
    assert.deepEqual(
      firstEpoch.map((m) => m.seq),
      Array.from({ length: k }, (_, i) => i + 1),
    );
    assert.ok(k <= acked1[acked1.length - 1]! && k >= 1000, `k=${k}`);
    assert.ok(firstEpoch.every((m) => m.epoch === gap.last?.epoch));
    // After it: every seq after the new position, each once, in order, to the last published.
    const p = gap.position.seq;
    assert.deepEqual(
      secondEpoch.map((m) => m.seq),
      Array.from({ length: last.seq - p }, (_, i) => p + 1 + i),
    );
    assert.ok(secondEpoch.every((m) => m.epoch === gap.position.epoch));

    console.log(
      `${messages.length} messages in two epochs (${firstEpoch.length} + ${secondEpoch.length}), ` +
        `gap after ${k}; ${acks.length} published; closes seen: ${drops.join(" ")}; ` +
        `4008 after ${batches} burst batches in ${burstMs} ms`,
    );
  } finally {
    publishing = false;
    await client.close();
    await relay.close();
    await server.stop();
  }
});
