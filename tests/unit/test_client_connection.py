"""The Python SDK's connection loop without sockets: websockets' ``connect`` is replaced by
scripted connections that hand the client the frames a test writes and record the commands
it sends. A close the client starts is echoed, and ``close_code`` is the code received, as
websockets has them. The real server's side of the same paths: tests/integration/test_client_*.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import orjson
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close
from websockets.protocol import State

import aurigraph_stream_client.client as client_module
from aurigraph_stream_client import (
    Backoff,
    Client,
    ConnectionEvent,
    Disconnected,
)

BOUND = 5.0  # seconds any one wait of these tests may take


class _Protocol:
    def __init__(self) -> None:
        self.state = State.OPEN
        self.close_rcvd: Close | None = None

    @property
    def close_exc(self) -> ConnectionClosedError:
        return ConnectionClosedError(self.close_rcvd, None)


class Scripted:
    """One connection as the client sees it: frames in (``feed``), commands out (``sent``)."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.protocol = _Protocol()
        self.closed_with: tuple[int, str] | None = None  # the close the client started
        self.headers: dict[str, str] = {}

    @property
    def close_code(self) -> int | None:
        close = self.protocol.close_rcvd
        return close.code if close is not None and self.protocol.state is State.CLOSED else None

    @property
    def close_reason(self) -> str | None:
        close = self.protocol.close_rcvd
        return close.reason if close is not None and self.protocol.state is State.CLOSED else None

    def feed(self, frame: dict[str, Any] | str | bytes) -> None:
        self.frames.put_nowait(orjson.dumps(frame).decode() if isinstance(frame, dict) else frame)

    def server_close(self, code: int, reason: str = "") -> None:
        self._closed(code, reason)

    def _closed(self, code: int, reason: str) -> None:
        if self.protocol.state is not State.CLOSED:
            self.protocol.close_rcvd = Close(code, reason)
            self.protocol.state = State.CLOSED
            self.frames.put_nowait(None)

    async def send(self, text: str) -> None:
        command = orjson.loads(text)
        self.sent.append(command)
        self.commands.put_nowait(command)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed_with is None:
            self.closed_with = (code, reason)
        self._closed(code, reason)  # the server echoes the client's close

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[str | bytes]:
        while True:
            frame = await self.frames.get()
            if frame is None:
                return
            yield frame

    async def command(self) -> dict[str, Any]:
        """The next command the client sends on this connection."""
        async with asyncio.timeout(BOUND):
            return await self.commands.get()


class Network:
    """Stands in for ``websockets.connect``: each attempt takes the next scripted outcome."""

    def __init__(self) -> None:
        self.outcomes: asyncio.Queue[Scripted | BaseException] = asyncio.Queue()
        self.attempts: list[dict[str, str]] = []  # the headers of each attempt

    def accept(self) -> Scripted:
        conn = Scripted()
        self.outcomes.put_nowait(conn)
        return conn

    def refuse(self, error: BaseException) -> None:
        self.outcomes.put_nowait(error)

    async def connect(self, url: str, **options: Any) -> Scripted:
        self.attempts.append(dict(options.get("additional_headers") or {}))
        outcome = await self.outcomes.get()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    net = Network()
    monkeypatch.setattr(client_module, "connect", net.connect)
    return net


def quick(initial: float = 0.01) -> Backoff:
    """Short delays without jitter, so a test can tell them apart."""
    return Backoff(initial=initial, maximum=1.0, jitter=0.0, rng=random.Random(1))


def subscribed(sub_id: str, seq: int, epoch: str = "e1", replayed: int = 0) -> dict[str, Any]:
    return {
        "type": "subscribed",
        "id": sub_id,
        "stream": "transactions",
        "position": {"seq": seq, "epoch": epoch},
        "recovered": True,
        "replayed": replayed,
    }


def message(sub_id: str, seq: int) -> dict[str, Any]:
    return {"type": "message", "id": sub_id, "stream": "transactions", "data": {"seq": seq}}


async def take(sub: Any, n: int) -> list[Any]:
    async with asyncio.timeout(BOUND):
        return [await anext(sub) for _ in range(n)]


def dropped(events: list[ConnectionEvent], n: int) -> bool:
    """At least ``n`` Disconnected events."""
    return sum(isinstance(e, Disconnected) for e in events) >= n


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded in count and time)."""
    async with asyncio.timeout(BOUND):
        for _ in range(100_000):
            if predicate():
                return
            await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


def test_the_refresher_pauses_after_a_failing_token_callback(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token already past its refresh time and a callback that keeps failing: the tries
    are at least the minimum pause apart, not a busy loop."""
    pause = 0.05
    monkeypatch.setattr(client_module, "_MIN_REFRESH_PAUSE", pause)
    calls: list[float] = []
    four = asyncio.Event()

    def token() -> str:
        calls.append(time.monotonic())
        if len(calls) == 4:
            four.set()
        raise RuntimeError("token service down")

    async def main() -> None:
        client = Client(token=token)
        client._token = jwt.encode({"sub": "a", "exp": int(time.time())}, "k" * 32)
        refresher = asyncio.ensure_future(client._refresher(Scripted()))  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(BOUND):
                await four.wait()
        finally:
            refresher.cancel()

    asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert len(gaps) >= 3
    assert min(gaps) >= pause * 0.8, gaps
