// The live dashboard at /: the view the Enterprise Portal builds with
// updateDashboard(metrics), fed by the TypeScript client over one /ws connection.
import {
  Client,
  type ClientEvent,
  type ConsensusMessage,
  type Gap,
  type Item,
  type NetworkMessage,
  type StreamName,
  type Subscription,
  type TransactionMessage,
  type ValidatorMessage,
} from "../src/index.js";
import { LiveChart } from "./charts.js";

const FEED_ROWS = 50;
const LOG_ROWS = 100;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

function element<T extends HTMLElement = HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (found === null) throw new Error(`the page has no ${selector}`);
  return found;
}

function cell(text: string, className?: string): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  if (className !== undefined) td.className = className;
  return td;
}

function short(hex: string): string {
  return hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

// -- the connection ------------------------------------------------------------
const connection = element("#connection");
const log = element<HTMLOListElement>("#log");

function setState(state: string, text: string = state): void {
  connection.dataset["state"] = state;
  connection.textContent = text;
}

function note(kind: string, text: string): void {
  const li = document.createElement("li");
  li.dataset["kind"] = kind;
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  log.prepend(li);
  while (log.children.length > LOG_ROWS) log.lastElementChild?.remove();
}

function onClientEvent(event: ClientEvent): void {
  switch (event.type) {
    case "open":
      setState("connected");
      note("connected", event.reconnected ? "reconnected" : "connected");
      return;
    case "disconnected": {
      const why = event.status !== undefined ? `HTTP ${event.status}` : `${event.code} ${event.info?.name ?? "connection lost"}`;
      if (event.retryIn < 0) {
        note("closed", `closed: ${why}`);
        return;
      }
      setState("reconnecting", `reconnecting (${why})`);
      note("reconnecting", `disconnected (${why}); reconnecting in ${(event.retryIn / 1000).toFixed(1)} s`);
      return;
    }
    case "subscribed":
      if (event.resumed && event.recovered) {
        setState("resumed");
        note("resumed", `${event.stream}: resumed, nothing missed (${event.replayed} replayed)`);
      }
      return;
    case "error":
      note("error", event.error.message);
      return;
    case "closed":
      setState("closed");
      note("closed", `stopped${event.error !== undefined ? `: ${event.error.message}` : ""}`);
      return;
    default:
      return;
  }
}

function announceGap(gap: Gap): void {
  const missed = gap.missed === null ? "an unknown number of messages" : `${gap.missed} messages`;
  const why = gap.reason === "epoch_changed" ? "the server lost its history (restart)" : "history no longer reaches back";
  setState("gap", `gap (${gap.stream})`);
  note("gap", `${gap.stream}: gap, ${missed} missed: ${why}; now at ${gap.position.seq}:${gap.position.epoch}`);
}

/** Run `handle` on every item of `sub` until it ends; a gap is announced, then handled. */
async function consume<S extends StreamName>(sub: Subscription<S>, handle: (item: Item<S>) => void): Promise<void> {
  try {
    for await (const item of sub) {
      if (item.type === "gap") announceGap(item);
      handle(item);
    }
  } catch (error) {
    note("closed", `${sub.stream}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

// -- metrics -------------------------------------------------------------------
/** Each chart's colour and the least top of its y axis (null: fitted to the values). */
const METRICS = {
  tps: ["#2563eb", 10],
  cpu: ["#c2410c", 5],
  memory: ["#7c3aed", null],
  errorRate: ["#b3261e", 0.01],
} as const;
type MetricName = keyof typeof METRICS;

function charts(): Map<MetricName, { chart: LiveChart; value: HTMLElement }> {
  const made = new Map<MetricName, { chart: LiveChart; value: HTMLElement }>();
  for (const [name, [color, floor]] of Object.entries(METRICS) as [MetricName, readonly [string, number | null]][]) {
    const figure = element(`figure[data-metric="${name}"]`);
    made.set(name, {
      chart: new LiveChart(figure, color, floor),
      value: element(`figure[data-metric="${name}"] [data-value]`),
    });
  }
  return made;
}

function format(name: MetricName, value: number): string {
  if (name === "errorRate") return value.toFixed(4);
  return value.toFixed(1);
}

// -- validators and peers: a set kept from a snapshot and its changes --------
function renderValidators(validators: Map<string, ValidatorMessage>): void {
  const rows = [...validators.values()].sort((a, b) => b.votingPower - a.votingPower || a.validator.localeCompare(b.validator));
  element("#validators tbody").replaceChildren(
    ...rows.map((v) => {
      const tr = document.createElement("tr");
      tr.dataset["validator"] = v.validator;
      tr.append(
        cell(short(v.validator), "mono"),
        cell(v.status, `status-${v.status}`),
        cell(v.votingPower.toLocaleString("en"), "num"),
        cell(v.uptime.toFixed(2), "num"),
        cell(String(v.lastBlockProposed), "num"),
      );
      return tr;
    }),
  );
  const active = rows.filter((v) => v.status === "ACTIVE").length;
  element("#validator-count").textContent = `${rows.length} (${active} active)`;
}

function renderPeers(peers: Map<string, NetworkMessage>): void {
  const rows = [...peers.values()].sort((a, b) => a.peerId.localeCompare(b.peerId));
  element("#peers tbody").replaceChildren(
    ...rows.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset["peer"] = p.peerId;
      tr.append(cell(short(p.peerId), "mono"), cell(p.ip, "mono"), cell(p.latency.toFixed(1), "num"), cell(p.version));
      return tr;
    }),
  );
  element("#peer-count").textContent = String(rows.length);
}

/** Render at most once per frame, however many changes arrive. */
function throttled(render: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };
}

// -- transactions ----------------------------------------------------------------
function feedRow(tx: TransactionMessage): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset["seq"] = String(tx.seq);
  tr.dataset["from"] = tx.from.toLowerCase();
  tr.dataset["to"] = tx.to.toLowerCase();
  tr.append(
    cell(String(tx.seq), "num"),
    cell(short(tx.txHash), "mono"),
    cell(short(tx.from), "mono"),
    cell(short(tx.to), "mono"),
    cell(ether(tx.value), "num"),
    cell(tx.status, `status-${tx.status}`),
  );
  return tr;
}

/** Wei as a decimal of 10^18 (four places): a readable amount, exact enough to show. */
function ether(wei: string): string {
  const value = BigInt(wei);
  const unit = 10n ** 18n;
  const fraction = ((value % unit) * 10_000n) / unit;
  return `${(value / unit).toLocaleString("en")}.${fraction.toString().padStart(4, "0")}`;
}

function gapRow(gap: Gap): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.className = "gap";
  const td = cell(`gap: ${gap.missed ?? "unknown number of"} transactions missed (${gap.reason})`);
  td.colSpan = 6;
  tr.append(td);
  return tr;
}

function start(): void {
  const client = new Client(location.origin);
  client.on(onClientEvent);
  setState("connecting");

  const metricCharts = charts();
  void consume(client.subscribe("metrics"), (item) => {
    const now = Date.now() / 1000;
    if (item.type === "gap") {
      for (const { chart } of metricCharts.values()) chart.gap(now);
      return;
    }
    if (item.type !== "message") return;
    for (const [name, { chart, value }] of metricCharts) {
      const v = item.data[name];
      chart.add(now, v);
      value.textContent = format(name, v);
    }
  });

  void consume(client.subscribe("consensus", { filter: { latest: true } }), (item) => {
    if (item.type !== "message") return;
    const c: ConsensusMessage = item.data;
    for (const field of ["epoch", "round", "state", "leader", "activeValidators"] as const) {
      element(`#consensus [data-field="${field}"]`).textContent = String(c[field]);
    }
  });

  const validators = new Map<string, ValidatorMessage>();
  const drawValidators = throttled(() => renderValidators(validators));
  void consume(client.subscribe("validators", { snapshot: true }), (item) => {
    if (item.type === "snapshot") {
      validators.clear(); // a snapshot is the whole set (after a gap too)
      for (const v of item.items) validators.set(v.validator, v);
    } else if (item.type === "message") {
      validators.set(item.data.validator, item.data);
    }
    drawValidators();
  });

  const peers = new Map<string, NetworkMessage>();
  const drawPeers = throttled(() => renderPeers(peers));
  void consume(client.subscribe("network", { snapshot: true }), (item) => {
    if (item.type === "snapshot") {
      peers.clear();
      for (const p of item.items) peers.set(p.peerId, p);
    } else if (item.type === "message") {
      if (item.data.connected) peers.set(item.data.peerId, item.data);
      else peers.delete(item.data.peerId);
    }
    drawPeers();
  });

  // The feed, filtered by the server: a new filter is a new subscription.
  const feed = element("#tx-feed tbody");
  const input = element<HTMLInputElement>("#tx-filter");
  const status = element("#tx-filter-status");
  let transactions: Subscription<"transactions"> | null = null;
  const follow = (address: string): void => {
    void transactions?.close();
    feed.replaceChildren();
    const sub = client.subscribe("transactions", address === "" ? {} : { filter: { address } });
    transactions = sub;
    status.textContent = address === "" ? "all transactions" : `transactions from or to ${address}`;
    status.dataset["filter"] = address;
    void consume(sub, (item) => {
      if (item.type === "gap") feed.prepend(gapRow(item));
      else if (item.type === "message") feed.prepend(feedRow(item.data));
      while (feed.children.length > FEED_ROWS) feed.lastElementChild?.remove();
    });
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const apply = (): void => {
    const address = input.value.trim();
    const valid = address === "" || ADDRESS.test(address);
    input.setAttribute("aria-invalid", String(!valid));
    if (!valid) {
      status.textContent = "an address is 0x and 40 hex digits";
      return;
    }
    if (address.toLowerCase() !== (status.dataset["filter"] ?? "").toLowerCase()) follow(address);
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(apply, 300);
  });
  element<HTMLFormElement>("#tx-filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    apply();
  });
  follow("");
}

start();
