// The SDK in a browser, on the browser's own WebSocket: run by
// tests/integration/test_js_client.py in Chromium, bundled by esbuild at test time.
// It writes its findings to document.body.dataset.result (JSON) for the test to read.
import { Client, type ClientEvent, type Item } from "../src/index.js";

const A = "0x" + "a7".repeat(20);

async function publish(events: Record<string, unknown>[]): Promise<number[]> {
  const response = await fetch("/api/v11/streams/transactions/events", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  return ((await response.json()) as { seqs: number[] }).seqs;
}

function tx(from: string, i: number): Record<string, unknown> {
  return {
    timestamp: "2025-10-25T09:35:02Z",
    txHash: `0x${(0xb0000 + i).toString(16).padStart(64, "0")}`,
    from,
    to: "0x" + "22".repeat(20),
    value: "1",
    status: "PENDING",
    gasUsed: 21000,
  };
}

async function run(): Promise<Record<string, unknown>> {
  const client = new Client(location.origin); // no WebSocket option: the browser's
  const events: string[] = [];
  const subscribed = new Promise<void>((resolve) => {
    client.on((event: ClientEvent) => {
      events.push(event.type);
      if (event.type === "subscribed") resolve();
    });
  });
  const sub = client.subscribe("transactions", { filter: { address: A } });
  await subscribed;
  const seqs = await publish([tx(A, 1), tx("0x" + "33".repeat(20), 2), tx(A, 3)]);
  const items: Item<"transactions">[] = [];
  for await (const item of sub) {
    items.push(item);
    if (items.length === 2) break; // leaving the loop unsubscribes
  }
  const state = client.state;
  await client.close();
  return {
    published: seqs,
    received: items.map((i) => (i.type === "message" ? [i.seq, i.data.from] : [i.type])),
    events,
    stateWhileOpen: state,
    stateAfterClose: client.state,
  };
}

run().then(
  (result) => {
    document.body.dataset["result"] = JSON.stringify(result);
  },
  (error: unknown) => {
    document.body.dataset["result"] = JSON.stringify({ error: String(error) });
  },
);
