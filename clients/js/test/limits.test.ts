// Refused upgrades: a full server answers 503 with Retry-After, and the client
// (in Node, where `ws` shows the status) waits at least that long, then gets in.
// Server: --max-connections 1 --retry-after 1 (tests/integration/test_js_client.py).
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import type { ClientEvent } from "../src/index.js";
import { newClient, nextEvent, serverUrl, within } from "./support.js";

test("a 503 with Retry-After delays the next attempt by it, and the client gets in later", async () => {
  const occupant = new WebSocket(`${serverUrl().replace("http", "ws")}/ws/metrics`);
  await within(new Promise((resolve, reject) => occupant.once("open", resolve).once("error", reject)), 10_000, "the occupant");
  const client = newClient({ backoff: { initial: 10, max: 20 } });
  try {
    const events: ClientEvent[] = [];
    client.on((event) => events.push(event));
    const sub = client.subscribe("metrics");
    const refused = await nextEvent(client, (e) => e.type === "disconnected");
    assert.ok(refused.type === "disconnected");
    assert.equal(refused.status, 503);
    assert.ok(refused.retryIn >= 1000, `retried after ${refused.retryIn} ms, under Retry-After: 1`);
    occupant.close();
    const subscribed = await nextEvent(client, (e) => e.type === "subscribed", 15_000);
    assert.ok(subscribed.type === "subscribed" && subscribed.id === sub.id);
    const refusals = events.filter((e) => e.type === "disconnected");
    assert.ok(refusals.every((e) => e.type === "disconnected" && e.status === 503 && e.retryIn >= 1000));
    await sub.close();
  } finally {
    occupant.terminate();
    await client.close();
  }
});
