// Access tokens: the client connects with one, refreshes it before it expires
// without reconnecting, and stops when a fixed token expires or is refused.
// Server: the JWT secret in STREAM_JWT_SECRET, auth_expiry_grace 0.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type ClientEvent, ConnectionClosedError } from "../src/index.js";
import { mintToken, newClient, nextEvent, take, within } from "./support.js";

function secret(): string {
  const value = process.env["STREAM_JWT_SECRET"];
  if (value === undefined) throw new Error("STREAM_JWT_SECRET is not set: run through pytest");
  return value;
}

function token(seconds: number, subject = "sdk-test"): string {
  const now = Math.floor(Date.now() / 1000);
  return mintToken(secret(), { sub: subject, streams: "*", iat: now, exp: now + seconds });
}

test("a token callback refreshes before exp on the open connection: no reconnect, no lost message", async () => {
  let minted = 0;
  const client = newClient({
    token: () => {
      minted += 1;
      return token(6);
    },
  });
  const events: ClientEvent[] = [];
  client.on((event) => events.push(event));
  try {
    const sub = client.subscribe("metrics");
    await nextEvent(client, (e) => e.type === "subscribed");
    // Three refreshes, over more than a 6 s token's lifetime: only they keep it open.
    for (let i = 0; i < 3; i++) await nextEvent(client, (e) => e.type === "refreshed", 10_000);
    const [item] = await take(sub, 1);
    assert.equal(item?.type, "message");
    assert.deepEqual(
      events.filter((e) => e.type === "disconnected" || e.type === "connecting").map((e) => e.type),
      ["connecting"],
    );
    assert.ok(minted >= 4);
    const refreshed = events.find((e) => e.type === "refreshed");
    assert.ok(refreshed?.type === "refreshed" && typeof refreshed.expiresAt === "number");
  } finally {
    await client.close();
  }
});

test("a fixed token that expires ends the client with 4001, and the subscription with it", async () => {
  const client = newClient({ token: token(3) });
  const sub = client.subscribe("metrics");
  await nextEvent(client, (e) => e.type === "subscribed");
  const closed = await nextEvent(client, (e) => e.type === "closed", 15_000);
  assert.ok(closed.type === "closed" && closed.error instanceof ConnectionClosedError);
  assert.equal(closed.error.code, 4001);
  assert.equal(closed.error.info?.name, "TOKEN_EXPIRED");
  await within(
    (async () => {
      for (let i = 0; i < 10_000; i++) {
        await sub.next(); // drain what came before the close; then the error
      }
    })().then(
      () => assert.fail("the subscription did not end"),
      (error: unknown) => assert.ok(error instanceof ConnectionClosedError && error.code === 4001),
    ),
    10_000,
    "the subscription to end",
  );
  assert.equal(client.state, "closed");
});

test("a refused handshake (401) stops the client at once: no retry loop", async () => {
  const client = newClient(); // no token
  const sub = client.subscribe("metrics");
  const closed = await nextEvent(client, (e) => e.type === "closed");
  assert.ok(closed.type === "closed" && closed.error instanceof ConnectionClosedError);
  assert.equal(closed.error.status, 401);
  await assert.rejects(sub.next(), ConnectionClosedError);
});
