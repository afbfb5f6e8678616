// /q/dev/: live figures from the stats endpoint, and a "watch" button per stream.
"use strict";

const statsUrl = new URL(document.body.dataset.statsUrl, location.href);
const REFRESH_MS = 2000;

function setStat(stream, stat, value) {
  for (const cell of document.querySelectorAll(
    `[data-stream="${stream}"][data-stat="${stat}"]`,
  )) {
    cell.textContent = String(value);
  }
}

async function refresh() {
  const status = document.getElementById("stats-status");
  try {
    const response = await fetch(statsUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const stats = await response.json();
    for (const [name, endpoint] of Object.entries(stats.endpoints)) {
      setStat(name, "connections", endpoint.connections);
      setStat(name, "messagesSent", endpoint.messagesSent);
      setStat(name, "p99", endpoint.broadcastLatencyMs.p99);
    }
    status.textContent =
      `${stats.connections} open connections; up ${Math.round(stats.uptimeSeconds)} s; ` +
      `updated ${new Date().toLocaleTimeString()}`;
    status.dataset.loaded = "true";
  } catch (error) {
    status.textContent = `live figures unavailable: ${error.message}`;
  }
}

function watch(button) {
  const name = button.dataset.watch;
  const live = document.querySelector(`[data-live="${name}"]`);
  const status = document.querySelector(`[data-watch-status="${name}"]`);
  if (button.socket) {
    button.socket.close(1000);
    return;
  }
  const url = new URL(button.dataset.path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  let received = 0;
  button.socket = socket;
  button.textContent = "Stop";
  status.textContent = "connecting...";
  live.hidden = false;
  socket.onopen = () => {
    status.textContent = "connected, waiting for a message";
  };
  socket.onmessage = (event) => {
    received += 1;
    status.textContent = `${received} received`;
    status.dataset.received = String(received);
    live.textContent = JSON.stringify(JSON.parse(event.data), null, 2);
  };
  socket.onclose = (event) => {
    status.textContent = `closed (${event.code}) after ${received} messages`;
    button.socket = null;
    button.textContent = "Watch live";
  };
}

for (const button of document.querySelectorAll("button[data-watch]")) {
  button.addEventListener("click", () => watch(button));
}
refresh();
setInterval(refresh, REFRESH_MS);
