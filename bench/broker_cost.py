"""What the Redis broker adds over the memory broker: broadcast latency and CPU per event.

For each broker, starts ``aurigraph-stream serve`` (dev profile, no simulator) on a free
port, with a redis-server of its own for ``redis``, opens ``--subscribers`` WebSockets
on /ws/transactions that read everything, publishes ``--rate`` events per second through
the ingest API (batches of 10, one request per 10 ms) for ``--seconds``, and reports:
the server's broadcast latency p50/p99 (``/api/v11/websocket/stats``: from the broker
accepting an event to its bytes being handed to every subscriber's socket), the ingest
request's round trip p50/p99 seen by the publisher, and the server's CPU time per event
(and Redis's, for ``redis``). Short and light on purpose: it runs beside other work.

    .venv/bin/python -m bench.broker_cost --seconds 10 --rate 1000 --subscribers 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
BATCH = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


def _event(n: int) -> dict[str, Any]:
    return {
        "timestamp": "2025-10-25T09:35:02Z",
        "txHash": f"0x{n:064x}",
        "from": "0x" + "11" * 20,
        "to": "0x" + "22" * 20,
        "value": "1000",
        "status": "PENDING",
        "gasUsed": 21000,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _load(port: int, subscribers: int, rate: float, seconds: float) -> list[float]:
    """Subscribers reading, a publisher at ``rate``; returns the ingest round trips (ms)."""
    received = 0

    async def read(ws: Any) -> None:
        nonlocal received
        async for _ in ws:
            received += 1

    sockets = [
        await websockets.connect(f"ws://127.0.0.1:{port}/ws/transactions", max_queue=None)
        for _ in range(subscribers)
    ]
    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    trips: list[float] = []
    interval = BATCH / rate
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for i in range(int(seconds / interval)):
            body = [_event(i * BATCH + k) for k in range(BATCH)]
            began = time.perf_counter()
            response = await http.post("/api/v11/streams/transactions/events", json=body)
            trips.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
    await asyncio.sleep(0.5)
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    return trips


def _cpu(proc: psutil.Process) -> float:
    """User+system seconds of a process and its children (the workers of --workers)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(broker: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One run; ``broker`` is memory, redis, or redis:N for N worker processes."""
    port = _free_port()
    redis_proc = None
    command = [sys.executable, "-m", "aurigraph_stream", "serve", "--port", str(port)]
    command += ["--no-simulate", "--log-level", "WARNING", "--metrics-interval", "3600"]
    broker, _, workers = broker.partition(":")
    if workers:
        command += ["--workers", workers]
    if broker == "redis":
        redis_port = _free_port()
        redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=tmp,
        )
        command += ["--broker-url", f"redis://127.0.0.1:{redis_port}/0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/q/health/ready")
        time.sleep(3 if workers else 0)  # every worker listening
        proc = psutil.Process(server.pid)
        rproc = psutil.Process(redis_proc.pid) if redis_proc is not None else None
        cpu0 = _cpu(proc)
        rcpu0 = sum(rproc.cpu_times()[:2]) if rproc else 0.0
        trips = asyncio.run(_load(port, args.subscribers, args.rate, args.seconds))
        cpu = _cpu(proc) - cpu0
        rcpu = (sum(rproc.cpu_times()[:2]) - rcpu0) if rproc else 0.0
        time.sleep(2.5 if workers else 0)  # the workers' figures exchanged (ops/workers.py)
        stats = httpx.get(f"http://127.0.0.1:{port}/api/v11/websocket/stats").json()
        latency = stats["endpoints"]["transactions"]["broadcastLatencyMs"]
        events = len(trips) * BATCH  # published (latency["count"] is per worker that broadcast)
        return {
            "broker": broker + (f" x{workers} workers" if workers else ""),
            "events": events,
            "latency_p50": latency["p50"],
            "latency_p99": latency["p99"],
            "ingest_p50": round(_pct(trips, 0.5), 2),
            "ingest_p99": round(_pct(trips, 0.99), 2),
            "server_us_per_event": round(cpu / events * 1e6, 1) if events else None,
            "redis_us_per_event": round(rcpu / events * 1e6, 1) if events and rproc else None,
        }
    finally:
        server.terminate()
        server.wait(30)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument(
        "--brokers", default="memory,redis", help="memory, redis, redis:N (N worker processes)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="broker-cost-") as tmp:
        for broker in args.brokers.split(","):
            print(measure(broker, args, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
