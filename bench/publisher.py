"""The publisher: transactions at a fixed rate, stamped with the time they are sent.

It runs in its own process (uvloop) so that its timing does not depend on the
controller. Every 10 ms tick it sends what the rate makes due since the start
(so a slow response is caught up by a larger next batch and the offered rate
holds), all stamped with the same send time in microseconds.

Four ways in:

* ``ingest``: our server's real ingest API, ``POST /api/v11/streams/{stream}/events``
  with a JSON array per tick (at most :data:`MAX_BATCH` events per request; more
  go in further requests, one after the other) over one keep-alive connection;
  the server assigns ``seq`` and returns it.
* ``ws``: a WebSocket publisher connection (the reference servers' entry
  points), one text frame per message; the publisher sets ``seq`` itself.
* ``pipelined``: the ingest API with one event per request, every request
  written when it falls due (a tick of :data:`PIPELINE_TICK`) without waiting for
  the answers to earlier ones, which a reader takes in order: the publisher of
  single events that the flush governor is for.
* ``pipelined-post``: the same against an HTTP publishing endpoint that does not
  number messages (nchan's ``POST /publish/{stream}``): the publisher sets ``seq``.

Every request's acknowledgement time (from writing it to reading its answer) is
recorded, and a run reports its percentiles: the ingest API's "acknowledged"
figure. Transactions go from one of the given addresses to ``SINK``, or with
``pair`` to another of them, so that each matches two address subscribers.
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
from bench.histogram import SIZE as HIST_SIZE
from bench.histogram import Histogram, bucket_of
from bench.ipc import listen
from bench.procstat import cpu_seconds

__all__ = ["PublishResult", "Publisher", "Target", "consensus_state", "transaction"]

TICK = 0.01
PIPELINE_TICK = 0.001  # single-event requests are written at most this long after they fall due
MAX_BATCH = 1000  # events per ingest request (1,000 transactions are about 330 KB)
SINK = "0x" + "ee" * 20  # the "to" of every transaction; no subscriber filters on it
COMMAND_TIMEOUT_SLACK = 60.0
ANSWER_TIMEOUT = 30.0  # a pipelined run waits this long after its last request for the answers


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
    requests: int = 0  # requests (or frames) it took
    acked: int = 0  # of those, answered (pipelined: within ANSWER_TIMEOUT of the last)
    ack_p50_ms: float | None = None  # request written to answer read
    ack_p99_ms: float | None = None
    ack_max_ms: float | None = None


def transaction(n: int, timestamp: str, sender: str, receiver: str = SINK) -> dict[str, Any]:
    """A transaction event valid for the transactions stream's ingest schema."""
    return {
        "timestamp": timestamp,
        "txHash": f"0x{n:064x}",
        "from": sender,
        "to": receiver,
        "value": "1000000000000000000",
        "status": "PENDING",
        "gasUsed": 21000,
    }


def consensus_state(n: int, timestamp: str) -> dict[str, Any]:
    """A consensus event valid for the consensus stream's ingest schema (round ``n``)."""
    return {
        "timestamp": timestamp,
        "leader": "0x" + "33" * 20,
        "epoch": 1 + n // 1000,
        "round": n,
        "term": 1,
        "state": ("PROPOSING", "VOTING", "COMMITTED")[n % 3],
        "performanceScore": 0.98,
        "activeValidators": 21,
    }


class _Acks:
    """Acknowledgement times, in the load generator's histogram (10 us buckets)."""

    def __init__(self) -> None:
        self.hist = [0] * HIST_SIZE
        self.max_us = 0
        self.count = 0

    def record(self, seconds: float) -> None:
        us = int(seconds * 1e6)
        self.hist[bucket_of(us)] += 1
        self.max_us = max(self.max_us, us)
        self.count += 1

    def figures(self) -> dict[str, Any]:
        hist = Histogram.from_buckets({i: n for i, n in enumerate(self.hist) if n}, self.max_us)
        p50, p99 = hist.percentile_us(0.5), hist.percentile_us(0.99)
        return {
            "ack_p50_ms": None if p50 is None else p50 / 1000,
            "ack_p99_ms": None if p99 is None else p99 / 1000,
            "ack_max_ms": self.max_us / 1000 if self.count else None,
        }


def _http_request(host: str, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP response: (status, body)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    status = int(raw[9:12])
    length = 0
    for line in raw.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


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
        self.acks = _Acks()
        self.requests = 0

    async def open(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)
        self.used_at = time.monotonic()

    async def send(self, events: list[dict[str, Any]], next_seq: int) -> list[int]:
        seqs: list[int] = []
        for start in range(0, len(events), MAX_BATCH):
            seqs += await self._request(events[start : start + MAX_BATCH])
        return seqs

    async def _request(self, events: list[dict[str, Any]]) -> list[int]:
        if time.monotonic() - self.used_at > self.IDLE_REOPEN:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        sent_at = time.monotonic()
        self.writer.write(_http_request(self.target.host, self.target.path, orjson.dumps(events)))
        status, reply = await _read_answer(self.reader)
        self.used_at = time.monotonic()
        self.acks.record(self.used_at - sent_at)
        self.requests += 1
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
        self.acks = _Acks()  # nothing is answered: stays empty
        self.requests = 0

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
        self.requests += len(events)
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


class _Pipelined:
    """Single-event POST requests on one keep-alive connection, written without waiting.

    A reader takes the answers in order (HTTP/1.1 answers pipelined requests in the
    order they came) and times each one from the moment its request was written.
    ``numbered``: the server assigns seq and answers with it (our ingest API); else
    the publisher sets it in the message (nchan's publishing endpoint).
    """

    def __init__(self, target: Target, *, numbered: bool) -> None:
        self.target = target
        self.numbered = numbered
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.acks = _Acks()
        self.requests = 0
        self.failed = 0  # answers that were not a success
        self.used_at = 0.0

    async def open(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)
        self.used_at = time.monotonic()

    async def _fresh(self) -> None:
        """Reopen a connection idle long enough for the server to be closing it."""
        if time.monotonic() - self.used_at > _Ingest.IDLE_REOPEN:
            await self.open()

    async def send(self, events: list[dict[str, Any]], next_seq: int) -> list[int]:
        """Publish ``events`` one request each and wait for every answer (priming)."""
        await self._fresh()
        sent: list[float] = []
        for offset, event in enumerate(events):
            sent.append(time.monotonic())
            self._write(event, next_seq + offset)
        return await self._answers(len(events), sent, next_seq, asyncio.sleep(0))

    def _write(self, event: dict[str, Any], seq: int) -> None:
        assert self.writer is not None
        body = event if self.numbered else {**event, "seq": seq}
        self.writer.write(_http_request(self.target.host, self.target.path, orjson.dumps(body)))
        self.requests += 1

    async def _answers(self, n: int, sent: list[float], next_seq: int, writing: Any) -> list[int]:
        """Run ``writing`` while reading ``n`` answers; the seqs published, in order."""
        assert self.reader is not None
        writer_task = asyncio.ensure_future(writing)
        seqs: list[int] = []
        try:
            for index in range(n):
                status, body = await asyncio.wait_for(_read_answer(self.reader), ANSWER_TIMEOUT)
                # The time is noted before the request is written: it is always there.
                self.acks.record(time.monotonic() - sent[index])
                if status not in (200, 201, 202):
                    self.failed += 1
                    raise RuntimeError(f"publishing answered {status}: {body[:300]!r}")
                seqs.append(orjson.loads(body)["seqs"][0] if self.numbered else next_seq + index)
        finally:
            await writer_task
            self.used_at = time.monotonic()
        return seqs

    async def run(
        self, state: dict[str, int], rate: float, duration: float, make: Any
    ) -> dict[str, Any]:
        """Write each event's request when it falls due; then wait for the answers."""
        await self._fresh()
        assert self.writer is not None
        loop = asyncio.get_running_loop()
        total = max(1, round(rate * duration))
        sent_at: list[float] = []
        next_seq = state["next"]
        stop = loop.time() + duration + COMMAND_TIMEOUT_SLACK / 2
        done: dict[str, float] = {}

        async def write() -> None:
            start = loop.time()
            sent = 0
            for tick in range(1, int((stop - start) / PIPELINE_TICK) + 2):
                due = min(total, int(rate * (loop.time() - start)) + 1)
                if due > sent:
                    stamp = iso_us(time.time_ns() // 1000)
                    for i in range(sent, due):
                        state["n"] += 1
                        sent_at.append(time.monotonic())
                        self._write(make(state["n"], stamp, i), next_seq + i)
                    sent = due
                    done["last"] = loop.time() - start
                    # Backpressure: a server that stops reading stalls the publisher,
                    # and the step shows it as a rate not held.
                    assert self.writer is not None
                    await self.writer.drain()
                if sent >= total or loop.time() > stop:
                    break
                await asyncio.sleep(max(0.0, start + tick * PIPELINE_TICK - loop.time()))
            done["sent"] = sent

        cpu0 = cpu_seconds(os.getpid())
        self.acks = _Acks()  # this run's answers only
        acked0, requests0 = 0, self.requests
        seqs: list[int] = []
        error = None
        try:
            seqs = await self._answers(total, sent_at, next_seq, write())
        except (TimeoutError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        state["next"] = (seqs[-1] if seqs else next_seq + int(done.get("sent", 0)) - 1) + 1
        result: dict[str, Any] = {
            "first": seqs[0] if seqs else next_seq,
            "last": seqs[-1] if seqs else next_seq + int(done.get("sent", 0)) - 1,
            "sent": int(done.get("sent", 0)),
            "seconds": done.get("last", 0.0),
            "cpu": cpu_seconds(os.getpid()) - cpu0,
            "requests": self.requests - requests0,
            "acked": self.acks.count - acked0,
            **self.acks.figures(),
        }
        if error is not None:
            result["note"] = error
        return result

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


Client = _Ingest | _WsPublisher | _Pipelined


def _maker(stream: str, addresses: Sequence[str], pair: bool) -> Any:
    """The messages of a run: ``make(n, stamp, i)`` for the i-th message of the run."""
    if stream == "consensus":
        return lambda n, stamp, i: consensus_state(n, stamp)
    count = len(addresses)
    half = max(1, count // 2)

    def make(n: int, stamp: str, i: int) -> dict[str, Any]:
        sender = addresses[i % count]
        receiver = addresses[(i + half) % count] if pair and count > 1 else SINK
        return transaction(n, stamp, sender, receiver)

    return make


async def _run(
    client: _Ingest | _WsPublisher,
    state: dict[str, int],
    rate: float,
    duration: float,
    make: Any,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * duration))
    start = loop.time()
    deadline = start + duration + COMMAND_TIMEOUT_SLACK / 2
    first = last = -1
    sent = 0
    last_send = start
    cpu0 = cpu_seconds(os.getpid())
    client.acks = _Acks()  # this run's answers only
    acks0, requests0 = 0, client.requests
    for tick in range(1, int((duration + COMMAND_TIMEOUT_SLACK / 2) / TICK) + 2):
        now = loop.time()
        due = min(total, int(rate * (now - start)) + 1)
        if due > sent:
            stamp = iso_us(time.time_ns() // 1000)
            batch = []
            for i in range(sent, due):
                state["n"] += 1
                batch.append(make(state["n"], stamp, i))
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
        "requests": client.requests - requests0,
        # A WebSocket publisher is not answered: every frame counts as taken.
        "acked": (
            client.requests - requests0
            if isinstance(client, _WsPublisher)
            else client.acks.count - acks0
        ),
        **client.acks.figures(),
    }


def _client(target: Target) -> Client:
    if target.kind == "ingest":
        return _Ingest(target)
    if target.kind == "pipelined":
        return _Pipelined(target, numbered=True)
    if target.kind == "pipelined-post":
        return _Pipelined(target, numbered=False)
    return _WsPublisher(target)


async def _serve(pipe: Connection, target: Target) -> None:
    client = _client(target)
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
                stamp = iso_us(time.time_ns() // 1000)
                make = _maker(cmd.get("stream", "transactions"), [SINK], False)
                seqs = await client.send([make(state["n"], stamp, 0)], state["next"])
                state["n"] += 1
                state["next"] = seqs[-1] + 1
                pipe.send({"next": state["next"]})
            else:
                make = _maker(cmd.get("stream", "transactions"), cmd["addresses"], cmd["pair"])
                if isinstance(client, _Pipelined):
                    result = await client.run(state, cmd["rate"], cmd["duration"], make)
                else:
                    result = await _run(client, state, cmd["rate"], cmd["duration"], make)
                pipe.send(result)
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
        self._started = (0.0, 0.0)
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

    def prime(self, stream: str = "transactions") -> int:
        """Publish one message (warms the path); returns the seq the next message gets."""
        self._pipe.send({"op": "prime", "stream": stream})
        return int(self._reply(30.0)["next"])

    def start(
        self,
        rate: float,
        duration: float,
        addresses: Sequence[str] = (SINK,),
        *,
        pair: bool = False,
        stream: str = "transactions",
    ) -> None:
        """Begin publishing ``rate`` messages/s for ``duration`` s; :meth:`result` waits."""
        self._pipe.send(
            {
                "op": "run",
                "rate": rate,
                "duration": duration,
                "addresses": list(addresses),
                "pair": pair,
                "stream": stream,
            }
        )
        self._started = (rate, duration)

    def result(self) -> PublishResult:
        """What the run begun by :meth:`start` published."""
        rate, duration = self._started
        r = self._reply(duration + COMMAND_TIMEOUT_SLACK + ANSWER_TIMEOUT)
        return PublishResult(
            r["first"],
            r["last"],
            r["sent"],
            r["seconds"],
            rate,
            r["cpu"],
            requests=r.get("requests", 0),
            acked=r.get("acked", 0),
            ack_p50_ms=r.get("ack_p50_ms"),
            ack_p99_ms=r.get("ack_p99_ms"),
            ack_max_ms=r.get("ack_max_ms"),
        )

    def run(
        self,
        rate: float,
        duration: float,
        addresses: Sequence[str] = (SINK,),
        *,
        pair: bool = False,
        stream: str = "transactions",
    ) -> PublishResult:
        """Publish ``rate`` messages/s for ``duration`` s; blocks until done."""
        self.start(rate, duration, addresses, pair=pair, stream=stream)
        return self.result()

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._pipe.send({"op": "exit"})
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._pipe.close()
