"""A steady publisher and resuming subscribers, for the tests that break things under load.

:class:`Publisher` posts one transaction per tick to the ingest API of one or more
servers (the next one when a server does not answer), and keeps what was
acknowledged. :class:`Follower` holds a WebSocket on ``/ws/transactions``, and when
it drops, reconnects (to the next server) and resumes with ``since=SEQ:EPOCH``.
:func:`check_exactly_once` then reads a follower's record: every seq exactly
once, in order, unless a ``recovered: false`` announced the gap.

Both run on threads, bounded in count and time, and stop on :meth:`stop`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from tests.support.streamtools import address, tx

__all__ = ["Follower", "Publisher", "check_exactly_once", "request_of", "tx_hash"]

A, B = address(0xF1), address(0xF2)


def tx_hash(tag: int, request: int, index: int) -> str:
    """The txHash of event ``index`` of request ``request`` of publisher ``tag``."""
    return f"0x{tag:08x}{request:048x}{index:08x}"


def request_of(hash_: str) -> tuple[int, int]:
    """(publisher tag, request) of a txHash made by :func:`tx_hash`."""
    return int(hash_[2:10], 16), int(hash_[10:58], 16)


class Publisher(threading.Thread):
    """Publishes ``rate`` requests of ``batch`` events per second, to the first of ``bases``
    that answers (the next one after a connection failure).

    Request ``n``'s events have the txHashes :func:`tx_hash` ``(n, i)``, so a test can
    tell which request a received message came from.
    """

    def __init__(
        self, bases: list[str], rate: float = 40.0, batch: int = 1, limit: int = 5000, tag: int = 0
    ) -> None:
        super().__init__(daemon=True)
        self.bases = bases
        self.interval = 1.0 / rate
        self.batch = batch
        self.limit = limit
        self.tag = tag
        self.acked: list[int] = []  # seqs of 200 answers, in order
        self.requests: dict[int, int] = {}  # request n -> its HTTP status (0: no answer)
        self.statuses: dict[int, int] = {}  # HTTP status -> count
        self.retry_after: set[str] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        target = 0
        next_at = time.monotonic()
        with httpx.Client(timeout=5.0) as http:
            for n in range(self.limit):
                if self._halt.is_set():
                    return
                base = self.bases[target % len(self.bases)]
                events = [
                    {**tx(0, A, B, str(n + 1)), "txHash": tx_hash(self.tag, n, i)}
                    for i in range(self.batch)
                ]
                try:
                    response = http.post(f"{base}/api/v11/streams/transactions/events", json=events)
                    status = response.status_code
                    if status == 200:
                        self.acked.extend(response.json()["seqs"])
                    elif status == 503:
                        self.retry_after.add(response.headers.get("retry-after", ""))
                except httpx.TransportError:
                    status = 0
                    target += 1  # that server is gone: the next one
                self.requests[n] = status
                self.statuses[status] = self.statuses.get(status, 0) + 1
                next_at += self.interval
                self._halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(15)

    def wait_acked(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` more events than now were acknowledged (bounded)."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.acked)} of {target} acknowledged: {self.statuses}")
            time.sleep(0.02)


@dataclass
class Record:
    """What a follower saw, in order: ("head", frame) and ("msg", seq) entries."""

    entries: list[tuple[str, Any]] = field(default_factory=list)
    connects: int = 0
    refused: list[str] = field(default_factory=list)


class Follower(threading.Thread):
    """Follows ``/ws/transactions`` across reconnects, resuming with ``since``.

    Args:
        urls: ``ws://host:port`` of the servers to use, tried in turn when one drops.
    """

    def __init__(self, urls: list[str], limit: int = 500) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.limit = limit
        self.record = Record()
        self.position: tuple[int, str] | None = None  # the last seq received, its epoch
        self.hashes: list[str] = []  # txHash of each message, in order
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.ws: Any = None

    def run(self) -> None:
        for attempt in range(self.limit):  # connections, bounded; the next server each time
            if self._halt.is_set():
                return
            url = self.urls[attempt % len(self.urls)]
            query = "replay=0" if self.position is None else "since={}:{}".format(*self.position)
            try:
                with connect(f"{url}/ws/transactions?{query}", open_timeout=5) as ws:
                    self.ws = ws
                    self.record.connects += 1
                    self._follow(ws)
            except (
                ConnectionClosed,
                InvalidStatus,
                InvalidHandshake,
                OSError,
                TimeoutError,
            ) as exc:
                self.record.refused.append(type(exc).__name__)
            finally:
                self.ws = None
            if self._halt.is_set():
                return
            self._halt.wait(0.1)

    def _follow(self, ws: Any) -> None:
        while not self._halt.is_set():
            try:
                raw = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            message = orjson.loads(raw)
            with self._lock:
                if message.get("type") == "subscribed":
                    self.record.entries.append(("head", message))
                    position = message["position"]
                    if not message["recovered"] or self.position is None:
                        self.position = (position["seq"], position["epoch"])
                else:
                    assert self.position is not None
                    self.record.entries.append(("msg", message["seq"]))
                    self.hashes.append(message["txHash"])
                    self.position = (message["seq"], self.position[1])

    def seqs(self) -> list[int]:
        with self._lock:
            return [value for kind, value in self.record.entries if kind == "msg"]

    def heads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [value for kind, value in self.record.entries if kind == "head"]

    def after_announced(self) -> list[int] | None:
        """The seqs received after the last ``recovered: false`` frame; None before one."""
        with self._lock:
            entries = list(self.record.entries)
        for at in range(len(entries) - 1, -1, -1):
            kind, value = entries[at]
            if kind == "head" and not value["recovered"]:
                return [v for k, v in entries[at + 1 :] if k == "msg"]
        return None

    def wait_for_seq(self, seq: int, timeout: float = 20.0) -> None:
        """Until a message with ``seq`` or later arrived (bounded)."""
        deadline = time.monotonic() + timeout
        while not any(s >= seq for s in self.seqs()[-50:]):
            if time.monotonic() > deadline:
                raise AssertionError(f"seq {seq} not received; record: {self.record}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(15)


def check_exactly_once(follower: Follower) -> list[dict[str, Any]]:
    """Every message is the one after the last, unless a subscribed frame with
    ``recovered: false`` came between them (the gap announced). Returns those frames.

    After a ``subscribed`` frame with ``recovered: true`` (a resume), the replay must
    continue exactly where the follower was.
    """
    announced = []
    expected: int | None = None
    for kind, value in follower.record.entries:
        if kind == "head":
            if not value["recovered"]:
                announced.append(value)
            if expected is None or not value["recovered"]:
                expected = value["position"]["seq"] + 1
            continue
        assert expected is not None, "a message before the subscribed frame"
        assert value == expected, f"got seq {value}, expected {expected} (gap or duplicate)"
        expected = value + 1
    return announced
