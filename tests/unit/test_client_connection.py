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
from functools import partial
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
    CommandError,
    Connected,
    ConnectionEvent,
    Disconnected,
    GaveUp,
    StreamClientError,
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


def test_an_unreadable_frame_reconnects_and_resumes_from_the_last_message(
    network: Network,
) -> None:
    """The client closes with 1002 and the server echoes 1002: the client's own decision to
    reconnect stands, nothing after the bad frame is read from that connection, and the
    resume asks for what came after the last message delivered. A connection ended so does
    not count as one that worked: the next delay is longer."""
    events: list[ConnectionEvent] = []

    async def main() -> list[Any]:
        first = network.accept()
        async with Client(backoff=quick(), on_event=events.append) as client:
            sub = client.subscribe("transactions")
            assert (await first.command())["op"] == "subscribe"
            first.feed(subscribed("s1", 10))
            first.feed(message("s1", 11))
            first.feed(b"\xff not json")
            first.feed(message("s1", 12))  # after the bad frame: left for the resume
            assert await take(sub, 1) == [{"seq": 11}]
            second = network.accept()
            resume = await second.command()
            assert resume == {"op": "subscribe", "id": "s1", "stream": "transactions"} | {
                "since": "11:e1"
            }
            assert first.closed_with == (1002, "unreadable frame")
            second.feed(subscribed("s1", 13, replayed=2))
            second.feed(message("s1", 12))
            second.feed(message("s1", 13))
            second.feed(b"{broken")
            got = await take(sub, 2)
            third = network.accept()
            assert (await third.command())["since"] == "13:e1"
            assert client.error is None
            return got

    assert asyncio.run(main()) == [{"seq": 12}, {"seq": 13}]
    drops = [e for e in events if isinstance(e, Disconnected)]
    assert [(d.code, d.reason) for d in drops] == [(1002, "unreadable frame")] * 2
    assert [d.retry_in for d in drops] == [0.01, 0.02]  # the back-off was not started over
    assert [e.attempt for e in events if isinstance(e, Connected)] == [0, 1, 2]


def test_a_fault_in_the_background_task_ends_every_subscription(network: Network) -> None:
    """A frame the client reads but cannot handle (here a message without its data) makes the
    background task fail: each subscription raises StreamClientError, caused by the fault,
    instead of waiting for ever; the connection is closed."""

    async def main() -> tuple[BaseException, Scripted]:
        conn = network.accept()
        async with Client(backoff=quick()) as client:
            one = client.subscribe("transactions")
            two = client.subscribe("metrics")
            await conn.command()
            await conn.command()
            conn.feed(subscribed("s1", 10))
            conn.feed({"type": "message", "id": "s1", "stream": "transactions"})
            with pytest.raises(StreamClientError) as failed:
                await take(one, 1)
            with pytest.raises(StreamClientError):
                await take(two, 1)
            assert client.error is failed.value
            with pytest.raises(StreamClientError):
                client.subscribe("consensus")
            return failed.value, conn

    error, conn = asyncio.run(main())
    assert isinstance(error.__cause__, KeyError)
    assert conn.closed_with == (1011, "client failure")


def test_history_unavailable_is_asked_again_from_the_same_position(network: Network) -> None:
    """The server could not read the history to start the subscription: the SDK asks again,
    with the same since, after a back-off, and the subscription goes on."""

    async def main() -> list[Any]:
        conn = network.accept()
        async with Client(backoff=quick()) as client:
            sub = client.subscribe("transactions", since="40:e1")
            first = await conn.command()
            assert first["since"] == "40:e1"
            unavailable = {"type": "error", "id": "s1", "op": "subscribe"} | {
                "error": "history_unavailable",
                "detail": "the broker did not answer",
            }
            conn.feed(unavailable)
            assert await conn.command() == first
            conn.feed(unavailable)
            assert await conn.command() == first
            conn.feed(subscribed("s1", 42, replayed=2))
            conn.feed(message("s1", 41))
            conn.feed(message("s1", 42))
            return await take(sub, 2)

    assert asyncio.run(main()) == [{"seq": 41}, {"seq": 42}]


def test_history_unavailable_gives_up_after_max_retries(network: Network) -> None:
    async def main() -> CommandError:
        conn = network.accept()
        async with Client(backoff=quick(), max_retries=1) as client:
            sub = client.subscribe("transactions")
            unavailable = {"type": "error", "id": "s1", "op": "subscribe"} | {
                "error": "history_unavailable",
                "detail": "the broker did not answer",
            }
            for _ in range(2):
                await conn.command()
                conn.feed(unavailable)
            with pytest.raises(CommandError) as refused:
                await take(sub, 1)
            return refused.value

    assert asyncio.run(main()).error == "history_unavailable"


def test_an_idle_client_starts_its_backoff_over_after_each_good_connection(
    network: Network,
) -> None:
    """Without subscriptions an open connection is a working one: after each drop the delay
    is the first one again, and three such drops do not exhaust max_retries=1."""
    events: list[ConnectionEvent] = []

    async def main() -> None:
        async with Client(backoff=quick(), max_retries=1, on_event=events.append) as client:
            for n in range(1, 4):
                conn = network.accept()
                await until(lambda: client.connected, "connected")
                conn.server_close(1001, "going away")
                await until(partial(dropped, events, n), "a drop")
            network.accept()
            await client.wait_connected()
            assert client.error is None

    asyncio.run(main())
    assert [e.retry_in for e in events if isinstance(e, Disconnected)] == [0.01] * 3


def test_gave_up_after_max_retries_plus_one_failures_names_the_last_as_its_cause(
    network: Network,
) -> None:
    """max_retries=2: the first attempt and two retries fail, then GaveUp, caused by the
    last failure."""
    last = OSError("connection refused (the third)")
    for error in (OSError("first"), OSError("second"), last):
        network.refuse(error)

    async def main() -> GaveUp:
        async with Client(backoff=quick(), max_retries=2) as client:
            with pytest.raises(GaveUp) as gave_up:
                await take(client.subscribe("metrics"), 1)
            return gave_up.value

    gave_up = asyncio.run(main())
    assert gave_up.__cause__ is last
    assert len(network.attempts) == 3


def test_a_session_that_ended_is_the_cause_of_gave_up(network: Network) -> None:
    async def main() -> GaveUp:
        async with Client(backoff=quick(), max_retries=0) as client:
            sub = client.subscribe("metrics")
            conn = network.accept()
            await conn.command()
            conn.server_close(4008, "slow consumer")
            with pytest.raises(GaveUp) as gave_up:
                await take(sub, 1)
            return gave_up.value

    cause = asyncio.run(main()).__cause__
    assert isinstance(cause, ConnectionClosedError)
    assert cause.rcvd is not None
    assert (cause.rcvd.code, cause.rcvd.reason) == (4008, "slow consumer")


def test_a_failing_token_callback_at_connect_is_a_failed_attempt(network: Network) -> None:
    """The callback raises: reported, retried after the back-off (as the TypeScript SDK
    does), and the next token it gives is the one the connection uses."""
    events: list[ConnectionEvent] = []
    answers: list[str | Exception] = [RuntimeError("token service down"), "tok-2"]

    def token() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main() -> None:
        network.accept()
        async with Client(backoff=quick(), token=token, on_event=events.append) as client:
            await client.wait_connected()

    asyncio.run(main())
    assert network.attempts == [{"Authorization": "Bearer tok-2"}]
    (drop,) = [e for e in events if isinstance(e, Disconnected)]
    assert drop.code == 1006
    assert "token service down" in drop.reason
    assert drop.retry_in == 0.01


def test_after_4001_a_failing_callback_is_asked_again_for_the_next_attempt(
    network: Network,
) -> None:
    """The server refused the token (4001); the callback fails once: the attempt after that
    asks it again rather than reuse the refused token."""
    answers: list[str | Exception] = ["tok-1", RuntimeError("token service down"), "tok-3"]

    def token() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main() -> None:
        first = network.accept()
        async with Client(backoff=quick(), token=token) as client:
            await client.wait_connected()
            first.server_close(4001, "token expired")
            network.accept()
            await until(lambda: len(network.attempts) == 2 and client.connected, "a reconnect")

    asyncio.run(main())
    assert network.attempts == [{"Authorization": f"Bearer tok-{n}"} for n in (1, 3)]
    assert answers == []


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
