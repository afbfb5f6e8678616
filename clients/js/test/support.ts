// What the tests share: the server under test (from the environment, started
// by tests/integration/test_js_client.py), publishing through the ingest API,
// and bounded waits.
import { createHmac } from "node:crypto";
import WebSocket from "ws";
import { Client, type ClientEvent, type ClientOptions, type Item, type StreamName } from "../src/index.js";

/** The HTTP base URL of the server under test, e.g. http://127.0.0.1:41234. */
export function serverUrl(): string {
  const url = process.env["STREAM_URL"];
  if (url === undefined) throw new Error("STREAM_URL is not set: run through pytest");
  return url;
}

export function newClient(options: ClientOptions = {}, url: string = serverUrl()): Client {
  return new Client(url, {
    WebSocket, // the ws package's, as an application passes it
    backoff: { initial: 50, max: 1000 },
    ...options,
  });
}

let counter = 0;

/** A valid transaction event (no seq: the server assigns it). */
export function transaction(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1;
  return {
    timestamp: "2025-10-25T09:35:02Z",
    txHash: `0x${(Date.now() * 1000 + counter).toString(16).padStart(64, "0")}`,
    from: "0x" + "11".repeat(20),
    to: "0x" + "22".repeat(20),
    value: "1000000000000000000",
    status: "PENDING",
    gasUsed: 21000,
    ...overrides,
  };
}

export function validator(address: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    timestamp: "2025-10-25T09:35:02Z",
    validator: address,
    status: "ACTIVE",
    votingPower: 1000,
    uptime: 99.5,
    lastBlockProposed: 10,
    ...overrides,
  };
}

/** Publish events through the ingest API; returns the seqs the server assigned. */
export async function publish(
  stream: StreamName,
  events: Record<string, unknown>[],
  base: string = serverUrl(),
): Promise<number[]> {
  const response = await fetch(`${base}/api/v11/streams/${stream}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  if (response.status !== 200) throw new Error(`ingest answered ${response.status}: ${await response.text()}`);
  const body = (await response.json()) as { seqs: number[] };
  return body.seqs;
}

/** Take the next `count` items, failing after `ms`. */
export async function take<S extends StreamName>(
  iterator: AsyncIterator<Item<S>>,
  count: number,
  ms = 10_000,
): Promise<Item<S>[]> {
  const items: Item<S>[] = [];
  const deadline = Date.now() + ms;
  while (items.length < count) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out after ${items.length} of ${count} items`);
    const result = await within(iterator.next(), left, `item ${items.length + 1} of ${count}`);
    if (result.done === true) throw new Error(`the subscription ended after ${items.length} items`);
    items.push(result.value);
  }
  return items;
}

/** `promise`, or a failure after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolve on the first client event that `match` accepts, failing after `ms`. */
export function nextEvent(client: Client, match: (event: ClientEvent) => boolean, ms = 10_000): Promise<ClientEvent> {
  let stop: () => void = () => undefined;
  const found = new Promise<ClientEvent>((resolve) => {
    stop = client.on((event) => {
      if (match(event)) resolve(event);
    });
  });
  return within(found, ms, "a client event").finally(() => stop());
}

/** Poll `check` until it returns a value (bounded in count and time). */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 10_000, what = "a condition"): Promise<T> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 10_000; i++) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** An HS256 JWT signed with `secret`. */
export function mintToken(secret: string, claims: Record<string, unknown>): string {
  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const head = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  const signature = createHmac("sha256", secret).update(head).digest("base64url");
  return `${head}.${signature}`;
}
