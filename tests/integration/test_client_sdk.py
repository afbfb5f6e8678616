"""The Python SDK against a real server: one connection for many subscriptions, the three
formats, replay and snapshots, command errors, token refresh, Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from aurigraph_stream_client import (
    AuthenticationError,
    Backoff,
    Client,
    CommandError,
    Connected,
    ConnectionEvent,
    Disconnected,
    Gap,
    Position,
    Snapshot,
    SyncClient,
    TokenExpired,
    TokenRefreshed,
)
from tests.support.server import ServerProcess, run_server
from tests.support.streamtools import (
    address,
    consensus,
    open_server,
    peer,
    publish,
    tx,
    validator,
)

A, B, C, D = address(0xA1), address(0xB2), address(0xC3), address(0xD4)
SECRET = "a-client-sdk-test-secret-long-enough-for-hs256"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A quiet server (only what the tests publish), shared by this module's tests."""
    with open_server(tmp_path_factory.mktemp("sdk"), "--history-size", "10000") as s:
        yield s


def base(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}"


def ws_connects(server: ServerProcess) -> int:
    """Connections the multiplexed endpoint accepted since the server started."""
    stats = httpx.get(f"{server.http}/api/v11/websocket/stats", timeout=5).json()
    return int(stats["endpoints"]["ws"]["connects"])


async def until_subscribed(sub: Any) -> None:
    """Wait (bounded) for the subscribed reply: the SDK then knows the position."""
    async with asyncio.timeout(10):
        for _ in range(100_000):
            if sub.position is not None:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the server never confirmed the subscription")


async def take(sub: Any, n: int) -> list[Any]:
    """The next n items of a subscription, within a bound."""
    async with asyncio.timeout(10):
        return [await anext(sub) for _ in range(n)]


@pytest.mark.parametrize("fmt", ["json", "msgpack", "protobuf"])
def test_subscriptions_share_one_connection_with_filters_replay_and_snapshot(
    server: ServerProcess, fmt: str
) -> None:
    """Three subscriptions on one socket: a filtered transaction feed, consensus with a
    replay, validators with a snapshot; each gets exactly its messages, decoded alike in
    every format."""
    published = publish(server, "consensus", [consensus(r) for r in range(3)])
    publish(server, "validators", [validator(A), validator(B, "JAILED")])
    connects = ws_connects(server)

    async def main() -> None:
        async with Client(base(server), format=fmt) as client:  # type: ignore[arg-type]
            txs = client.subscribe("transactions", address=A)
            cons = client.subscribe("consensus", replay=2)
            vals = client.subscribe("validators", snapshot=True)
            await client.wait_connected()
            snapshot = (await take(vals, 1))[0]
            assert isinstance(snapshot, Snapshot)
            assert sorted(v["validator"] for v in snapshot.items) == [A, B]
            assert await take(cons, 2) == published[1:]
            # The subscriptions are acknowledged before any of this is published.
            assert txs.position is not None
            sent = publish(server, "transactions", [tx(1, A, B, "5"), tx(2, B, C, "6")])
            sent += publish(server, "transactions", [tx(3, C, A, "7")])
            got = await take(txs, 2)
            assert got == [sent[0], sent[2]]
            assert got[0]["from"] == A
            assert ws_connects(server) == connects + 1  # one socket for the three

    asyncio.run(main())


def test_resume_from_a_given_position_and_a_gap_for_a_lost_epoch(server: ServerProcess) -> None:
    """since=SEQ:EPOCH resumes exactly after SEQ; an epoch the server never had is a typed
    gap before the next message."""
    first = publish(server, "network", [peer(f"p{i}") for i in range(4)])

    async def main() -> None:
        async with Client(base(server)) as client:
            probe = client.subscribe("network", replay=0)
            await client.wait_connected()
            await until_subscribed(probe)
            assert probe.position is not None
            epoch = probe.position.epoch
            resumed = client.subscribe("network", since=f"{first[1]['seq']}:{epoch}")
            assert await take(resumed, 2) == first[2:]
            lost = client.subscribe("network", since=Position(first[1]["seq"], "not-an-epoch"))
            (gap,) = await take(lost, 1)
            assert isinstance(gap, Gap)
            assert (gap.old_epoch, gap.new_epoch, gap.missed) == ("not-an-epoch", epoch, None)
            assert (gap.last_seq, gap.resume_seq) == (first[1]["seq"], first[-1]["seq"])
            later = publish(server, "network", [peer("late")])
            assert await take(lost, 1) == later

    asyncio.run(main())


def test_a_refused_subscription_raises_and_the_others_go_on(server: ServerProcess) -> None:
    """A bad filter ends that subscription with CommandError; the connection stays."""

    async def main() -> None:
        async with Client(base(server)) as client:
            bad = client.subscribe("transactions", minValue="lots")
            good = client.subscribe("consensus")
            with pytest.raises(CommandError) as refused:
                await take(bad, 1)
            assert refused.value.error == "invalid_filter"
            await client.wait_connected()
            await until_subscribed(good)
            sent = publish(server, "consensus", [consensus(99)])
            assert await take(good, 1) == sent

    asyncio.run(main())


def test_an_unreadable_frame_is_read_again_after_a_resume(server: ServerProcess) -> None:
    """The SDK cannot read one message frame (its decoder fails, once): it closes that
    connection with 1002, which the server echoes, reconnects by its own decision, and
    resumes from the last message delivered: every message once, in order."""
    events: list[ConnectionEvent] = []

    async def main() -> tuple[list[Any], list[Any]]:
        client = Client(
            base(server), on_event=events.append, backoff=Backoff(initial=0.05, maximum=0.5)
        )
        decode = client._decode
        frames: list[dict[str, Any]] = []

        def third_message_unreadable(frame: str | bytes) -> dict[str, Any]:
            data = decode(frame)
            if data.get("type") == "message":
                frames.append(data)
                if len(frames) == 3:
                    raise ValueError("this frame cannot be read")
            return data

        client._decode = third_message_unreadable
        async with client:
            sub = client.subscribe("transactions", address=D)
            await client.wait_connected()
            await until_subscribed(sub)
            sent = publish(server, "transactions", [tx(700 + i, D, A, "1") for i in range(6)])
            got = await take(sub, 6)
            assert sub.duplicates == 0
            return sent, got

    sent, got = asyncio.run(main())
    assert got == sent
    drops = [e for e in events if isinstance(e, Disconnected)]
    assert [(d.code, d.reason) for d in drops] == [(1002, "unreadable frame")]
    assert drops[0].retry_in is not None
    assert [e.attempt for e in events if isinstance(e, Connected)] == [0, 1]


def test_the_sync_client_iterates_without_asyncio(server: ServerProcess) -> None:
    with SyncClient(base(server)) as client:
        sub = client.subscribe("validators", replay=0)
        client.wait_connected(timeout=10)
        deadline = time.monotonic() + 10
        for _ in range(1000):  # the subscribed reply comes right after connecting
            if sub._sub.position is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert sub._sub.position is not None, "the server never confirmed the subscription"
        sent = publish(server, "validators", [validator(C)])
        assert sub.get(timeout=10) == sent[0]
        sub.unsubscribe()
        with pytest.raises(StopIteration):
            next(sub)


# -- tokens --------------------------------------------------------------------------


def hs_token(ttl: float, sub: str = "sdk", streams: Any = "*") -> str:
    now = time.time()
    claims = {"sub": sub, "iat": int(now), "exp": int(now + ttl), "streams": streams}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(
        "--no-simulate",
        "--metrics-interval",
        "0.2",
        "--auth-expiry-grace",
        "0",
        tmp_path=tmp_path_factory.mktemp("sdk-jwt"),
        env={"AURIGRAPH_JWT_SECRET": SECRET},
    ) as server:
        yield server


def test_a_token_callback_refreshes_without_reconnecting(jwt_server: ServerProcess) -> None:
    """Tokens of 4 s from an async callback: the SDK sends refresh before each exp, the
    connection outlives three of them, and metrics arrive with no seq missing."""
    events: list[ConnectionEvent] = []
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return hs_token(4)

    async def main() -> list[int]:
        seqs: list[int] = []
        async with Client(base(jwt_server), token=token, on_event=events.append) as client:
            deadline = time.monotonic() + 10
            async with asyncio.timeout(30):  # metrics come every 0.2 s: 10 s of them
                async for msg in client.subscribe("metrics"):
                    assert not isinstance(msg, Gap | Snapshot)
                    seqs.append(msg["seq"])
                    if time.monotonic() > deadline:
                        break
        return seqs

    seqs = asyncio.run(main())
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(seqs) > 20
    refreshed = [e for e in events if isinstance(e, TokenRefreshed)]
    assert len(refreshed) >= 3
    assert calls >= 4
    assert [type(e) for e in events if not isinstance(e, TokenRefreshed)] == [Connected]


def test_a_fixed_token_that_expires_stops_with_token_expired(jwt_server: ServerProcess) -> None:
    """No callback, no new token: after 4001 the SDK stops, after delivering what came."""

    received: list[Any] = []

    async def drain(client: Client) -> None:
        async with asyncio.timeout(15):
            async for msg in client.subscribe("metrics"):
                received.append(msg)

    async def main() -> None:
        async with Client(base(jwt_server), token=hs_token(2)) as client:
            with pytest.raises(TokenExpired) as stopped:
                await drain(client)
            assert stopped.value.code == 4001

    asyncio.run(main())
    assert len(received) > 3


def test_a_refused_token_is_an_authentication_error(jwt_server: ServerProcess) -> None:
    async def main() -> None:
        bad = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "w" * 40, algorithm="HS256")
        async with Client(base(jwt_server), token=bad) as client:
            with pytest.raises(AuthenticationError) as refused:
                async with asyncio.timeout(15):
                    await anext(client.subscribe("metrics"))
            assert (refused.value.status, refused.value.error) == (401, "invalid_token")

    asyncio.run(main())


# -- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "status"),
    [("--max-connections", 503), ("--max-connections-per-ip", 429)],
)
def test_a_full_server_is_retried_no_sooner_than_retry_after(
    tmp_path: Path, limit: str, status: int
) -> None:
    """At the cap the upgrade gets 503 (or 429 per address) with Retry-After: 2; the SDK
    reports it, waits at least 2 s, and connects once a slot is free."""
    with run_server("--no-simulate", limit, "1", "--retry-after", "2", tmp_path=tmp_path) as s:

        async def main() -> None:
            events: list[tuple[float, ConnectionEvent]] = []
            holder = await websockets.connect(s.ws("/ws"))
            async with Client(
                base(s), on_event=lambda e: events.append((time.monotonic(), e))
            ) as client:
                async with asyncio.timeout(15):
                    for _ in range(100_000):
                        if events:
                            break
                        await asyncio.sleep(0.01)
                refused_at, refused = events[0]
                assert isinstance(refused, Disconnected)
                assert refused.code == status
                assert refused.retry_in is not None
                assert refused.retry_in >= 2.0
                await holder.close()
                async with asyncio.timeout(15):
                    await client.wait_connected()
                connected = [(t, e) for t, e in events if isinstance(e, Connected)]
                assert connected
                assert connected[0][0] - refused_at >= 2.0
                await until_subscribed(client.subscribe("consensus", replay=0))

        asyncio.run(main())
