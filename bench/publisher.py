"""The publisher: transactions at a fixed rate, stamped with the time they are sent.

It runs in its own process (uvloop) so that its timing does not depend on the
controller. Every 10 ms tick it sends what the rate makes due since the start
(so a slow response is caught up by a larger next batch and the offered rate
holds), all stamped with the same send time in microseconds.

Two ways in:

* ``ingest``: our server's real ingest API, ``POST /api/v11/streams/{stream}/events``
  with a JSON array per tick over one keep-alive connection; the server assigns
  ``seq`` and returns it.
* ``ws``: a WebSocket publisher connection (the reference servers' entry
  points), one text frame per message; the publisher sets ``seq`` itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import orjson

from bench.client import iso_us
from bench.ipc import listen
from bench.procstat import cpu_seconds

__all__ = ["PublishResult", "Publisher", "Target", "transaction"]

TICK = 0.01
SINK = "0x" + "ee" * 20  # the "to" of every transaction; no subscriber filters on it
COMMAND_TIMEOUT_SLACK = 60.0


@dataclass(frozen=True)
class Target:
    """Where to publish: ``kind`` is "ingest" (our API) or "ws" (a publisher socket)."""

    kind: str
    host: str
    port: int
    path: str


@dataclass
class PublishResult:
    first: int  # seq of the first message published in the run
    last: int  # seq of the last one
    sent: int
    seconds: float  # first send to last send
    rate: float  # offered rate asked for
    cpu: float  # publisher CPU seconds during the run


def transaction(n: int, timestamp: str, sender: str) -> dict[str, Any]:
    """A transaction event valid for the transactions stream's ingest schema."""
    return {
        "timestamp": timestamp,
        "txHash": f"0x{n:064x}",
        "from": sender,
        "to": SINK,
        "value": "1000000000000000000",
        "status": "PENDING",
        "gasUsed": 21000,
    }


class _Ingest:
    """HTTP/1.1 keep-alive client for the ingest endpoint: minimal and fast."""

    # Servers close idle keep-alive connections (uvicorn after 5 s): reconnect before
    # sending on one idle for longer than this, rather than risk a request on a closing one.
    IDLE_REOPEN = 2.0

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used_at = 0.0

    async def open(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)
        self.used_at = time.monotonic()

    async def send(self, events: list[dict[str, Any]], next_seq: int) -> list[int]:
        if time.monotonic() - self.used_at > self.IDLE_REOPEN:
            await self.open()
        self.used_at = time.monotonic()
        assert self.reader is not None
        assert self.writer is not None
        body = orjson.dumps(events)
        head = (
            f"POST {self.target.path} HTTP/1.1\r\nHost: {self.target.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        reply = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"ingest answered {status}: {reply[:300]!r}")
        seqs: list[int] = orjson.loads(reply)["seqs"]
        return seqs

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    if not n:
        return head + key
    stream = (key * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return head + key + masked.to_bytes(n, "big")


class _WsPublisher:
    """A WebSocket client that only sends; it answers pings so servers keep it open."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._drain: asyncio.Task[None] | None = None

    async def open(self) -> None:
        t = self.target
        self.reader, self.writer = await asyncio.open_connection(t.host, t.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                f"GET {t.path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"publisher upgrade refused: {head[:200]!r}")
        self._drain = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.reader is not None
        assert self.writer is not None
        reader = self.reader
        while True:
            try:
                b0, b1 = await reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                elif n == 127:
                    n = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if b0 & 0x0F == 0x9:
                self.writer.write(_masked_frame(payload, 0xA))

    async def send(self, events: list[dict[str, Any]], next_seq: int) -> list[int]:
        assert self.writer is not None
        seqs = list(range(next_seq, next_seq + len(events)))
        self.writer.writelines(
            [
                _masked_frame(orjson.dumps({**e, "seq": s}))
                for e, s in zip(events, seqs, strict=True)
            ]
        )
        await self.writer.drain()
        return seqs

    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        if self.writer is not None:
            self.writer.close()


async def _run(
    client: _Ingest | _WsPublisher,
    state: dict[str, int],
    rate: float,
    duration: float,
    addresses: Sequence[str],
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * duration))
    start = loop.time()
    deadline = start + duration + COMMAND_TIMEOUT_SLACK / 2
    first = last = -1
    sent = 0
    last_send = start
    cpu0 = cpu_seconds(os.getpid())
    for tick in range(1, int((duration + COMMAND_TIMEOUT_SLACK / 2) / TICK) + 2):
        now = loop.time()
        due = min(total, int(rate * (now - start)) + 1)
        if due > sent:
            stamp = iso_us(time.time_ns() // 1000)
            batch = []
            for i in range(sent, due):
                state["n"] += 1
                batch.append(transaction(state["n"], stamp, addresses[i % len(addresses)]))
            seqs = await client.send(batch, state["next"])
            last_send = loop.time()
            state["next"] = seqs[-1] + 1
            if first < 0:
                first = seqs[0]
            last = seqs[-1]
            sent = due
        if sent >= total or loop.time() > deadline:
            break
        await asyncio.sleep(max(0.0, start + tick * TICK - loop.time()))
    return {
        "first": first,
        "last": last,
        "sent": sent,
        "seconds": last_send - start,
        "cpu": cpu_seconds(os.getpid()) - cpu0,
    }


async def _serve(pipe: Connection, target: Target) -> None:
    client: _Ingest | _WsPublisher = (
        _Ingest(target) if target.kind == "ingest" else _WsPublisher(target)
    )
    await client.open()
    state = {"n": int(time.time()) * 1000, "next": 1}
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    listen(pipe, loop, commands.put_nowait)
    pipe.send({"ok": True})
    while True:
        cmd = await commands.get()
        if cmd is None or cmd["op"] == "exit":
            break
        try:
            if cmd["op"] == "prime":
                seqs = await client.send(
                    [transaction(state["n"], iso_us(time.time_ns() // 1000), SINK)], state["next"]
                )
                state["n"] += 1
                state["next"] = seqs[-1] + 1
                pipe.send({"next": state["next"]})
            else:
                pipe.send(await _run(client, state, cmd["rate"], cmd["duration"], cmd["addresses"]))
        except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
            pipe.send({"error": f"{type(exc).__name__}: {exc}"})
    await client.close()


def publisher_main(pipe: Connection, target: Target) -> None:
    """Entry point of the publisher process."""
    import uvloop

    try:
        uvloop.run(_serve(pipe, target))
    except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


class Publisher:
    """Controller side of the publisher process; use as a context manager."""

    def __init__(self, target: Target) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, theirs = ctx.Pipe()
        self._proc: BaseProcess = ctx.Process(
            target=publisher_main, args=(theirs, target), name="bench-publisher", daemon=True
        )
        self._proc.start()
        theirs.close()
        self._reply(30.0)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reply(self, timeout: float) -> dict[str, Any]:
        if not self._pipe.poll(timeout):
            raise TimeoutError(f"publisher did not answer within {timeout}s")
        reply: dict[str, Any] = self._pipe.recv()
        if "error" in reply:
            raise RuntimeError(f"publisher: {reply['error']}")
        return reply

    def prime(self) -> int:
        """Publish one message (warms the path); returns the seq the next message gets."""
        self._pipe.send({"op": "prime"})
        return int(self._reply(30.0)["next"])

    def run(
        self, rate: float, duration: float, addresses: Sequence[str] = (SINK,)
    ) -> PublishResult:
        """Publish ``rate`` messages/s for ``duration`` s; blocks until done."""
        self._pipe.send(
            {"op": "run", "rate": rate, "duration": duration, "addresses": list(addresses)}
        )
        r = self._reply(duration + COMMAND_TIMEOUT_SLACK)
        return PublishResult(r["first"], r["last"], r["sent"], r["seconds"], rate, r["cpu"])

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._pipe.send({"op": "exit"})
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._pipe.close()
