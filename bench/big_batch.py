"""Huge ingest batches to many subscribers: how long the loop is held, and what stays pinned.

Starts the server (``--source TREE`` runs another tree's code), opens N plain
``/ws/transactions`` subscribers that only count bytes (a subscriber knows a
batch has arrived when it has read every frame's bytes, computed from the
events and the returned seqs), then posts ``--batches`` batches of
``--events`` transactions, one after the other. While each batch is fanned
out a probe asks ``/q/health/live`` every 20 ms: its slowest answer is how
long the event loop was held. Reported per batch size: the time from the POST
to the last subscriber having the whole batch (the median and the worst over
the batches), the probe's slowest answer, and the server's RSS growth.

Run: ``.venv/bin/python -m bench.big_batch --subscribers 1000 --events 1800``
(1,800 transactions are about 0.5 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def _event(i: int) -> dict[str, Any]:
    return {
        "timestamp": "2025-10-25T09:35:02.123456Z",
        "txHash": f"0x{i:064x}",
        "from": "0x" + "11" * 20,
        "to": "0x" + "22" * 20,
        "value": "1000000000000000000",
        "status": "PENDING",
        "gasUsed": 21000,
    }


def _frame_bytes(event: dict[str, Any], seq: int) -> int:
    n = len(orjson.dumps({**event, "seq": seq}))
    return n + (2 if n < 126 else 4)


async def _subscriber(port: int, counts: list[int], index: int, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/transactions HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    ready.set()
    try:
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                return
            counts[index] += len(chunk)
    finally:
        writer.close()


def _probe(port: int, stop: Any, worst: Any) -> None:
    """In a process of its own, so that the subscribers' reading does not delay it."""
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as http:
        while not stop.is_set():
            start = time.perf_counter()
            http.get("/q/health/live")
            worst.value = max(worst.value, time.perf_counter() - start)
            time.sleep(0.02)


async def _run(port: int, pid: int, subscribers: int, events: int, batches: int) -> dict[str, Any]:
    counts = [0] * subscribers
    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = [
        asyncio.create_task(_subscriber(port, counts, i, readies[i])) for i in range(subscribers)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    process = psutil.Process(pid)
    rss_before = process.memory_info().rss
    expected = 0
    done_times: list[float] = []
    probes: list[float] = []
    next_id = 0
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=120) as http:
        for _ in range(batches):
            batch = [_event(next_id + i) for i in range(events)]
            next_id += events
            body = orjson.dumps(batch)
            spawn = multiprocessing.get_context("spawn")
            worst, stop = spawn.Value("d", 0.0), spawn.Event()
            probe = spawn.Process(target=_probe, args=(port, stop, worst))
            probe.start()
            await asyncio.sleep(0.5)  # the probe's first answer: it is up
            start = time.perf_counter()
            response = await http.post(
                "/api/v11/streams/transactions/events",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
            seqs = response.json()["seqs"]
            expected += sum(_frame_bytes(e, s) for e, s in zip(batch, seqs, strict=True))
            for _ in range(12_000):  # at most 120 s
                if min(counts) >= expected:
                    break
                await asyncio.sleep(0.01)
            done_times.append(time.perf_counter() - start)
            stop.set()
            await asyncio.to_thread(probe.join, 30)
            probes.append(worst.value)
    rss_after = process.memory_info().rss
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "body_kb": len(body) / 1024,
        "done_median_s": statistics.median(done_times),
        "done_max_s": max(done_times),
        "probe_max_ms": max(probes) * 1000,
        "rss_growth_mb": (rss_after - rss_before) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, action="append", help="batch size; repeatable")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--source", type=Path, help="run the server from this tree")
    args = parser.parse_args(argv)
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source / "src")
    command = [sys.executable, "-m", "aurigraph_stream", "serve", "--port", str(port)]
    command += ["--no-simulate", "--metrics-interval", "3600", "--log-level", "WARNING"]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://{HOST}:{port}/q/health/live", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        for events in args.events or [1800]:
            r = asyncio.run(_run(port, proc.pid, args.subscribers, events, args.batches))
            print(
                f"subscribers={args.subscribers} events={events} body={r['body_kb']:.0f} KB "
                f"all-delivered median={r['done_median_s']:.2f} s max={r['done_max_s']:.2f} s "
                f"loop-held max={r['probe_max_ms']:.0f} ms rss+={r['rss_growth_mb']:.0f} MB"
            )
    finally:
        proc.terminate()
        proc.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
