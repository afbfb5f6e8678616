"""The five endpoints on a live server: schema-valid messages, gapless seq, and
streams that agree with each other (metrics tps vs transactions, connections)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import websockets
from jsonschema import Draft202012Validator

from tests.conftest import LIVE_ARGS
from tests.support.server import ServerProcess

STREAMS = ("metrics", "transactions", "validators", "consensus", "network")
# Enough consecutive messages to check seq; network moves about once per 2 s.
WANTED = {"metrics": 4, "transactions": 20, "validators": 4, "consensus": 10, "network": 3}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
ADDRESS_FIELDS = {
    "transactions": ("from", "to"),
    "validators": ("validator",),
    "consensus": ("leader",),
}
TX_RATE = float(LIVE_ARGS[LIVE_ARGS.index("--sim-tx-rate") + 1])
METRICS_INTERVAL = float(LIVE_ARGS[LIVE_ARGS.index("--metrics-interval") + 1])


@pytest.fixture(scope="module")
def received(live_server: ServerProcess) -> dict[str, list[dict[str, Any]]]:
    """Consecutive messages from each endpoint, read concurrently on five connections."""

    async def read(stream: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with websockets.connect(live_server.ws(f"/ws/{stream}")) as ws:
            for _ in range(WANTED[stream]):
                out.append(orjson.loads(await asyncio.wait_for(ws.recv(), 30)))
        return out

    async def main() -> dict[str, list[dict[str, Any]]]:
        results = await asyncio.gather(*(read(s) for s in STREAMS))
        return dict(zip(STREAMS, results, strict=True))

    return asyncio.run(main())


@pytest.fixture(scope="module")
def schemas(live_server: ServerProcess) -> dict[str, dict[str, Any]]:
    """Each stream's published JSON Schema, fetched over HTTP."""
    out = {}
    for stream in STREAMS:
        response = httpx.get(f"{live_server.http}/api/v11/streams/{stream}/schema")
        assert response.status_code == 200
        out[stream] = response.json()
    return out


@pytest.mark.parametrize("stream", STREAMS)
def test_messages_validate_against_the_published_schema(
    stream: str,
    received: dict[str, list[dict[str, Any]]],
    schemas: dict[str, dict[str, Any]],
) -> None:
    """Every message validates (formats checked) against GET /api/v11/streams/{s}/schema."""
    schema = schemas[stream]
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    messages = received[stream]
    assert len(messages) == WANTED[stream]
    for message in messages:
        errors = [e.message for e in validator.iter_errors(message)]
        assert errors == [], f"{stream}: {message}"
        assert set(message) == set(schema["properties"])  # exactly the spec's fields + seq


@pytest.mark.parametrize("stream", STREAMS)
def test_seq_increases_by_exactly_one(
    stream: str, received: dict[str, list[dict[str, Any]]]
) -> None:
    """Consecutive messages on one connection carry seq, seq+1, seq+2, ..."""
    seqs = [m["seq"] for m in received[stream]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[0] >= 1


@pytest.mark.parametrize("stream", STREAMS)
def test_field_level_rules(stream: str, received: dict[str, list[dict[str, Any]]]) -> None:
    """timestamp is ISO-8601 UTC ending in Z and recent; addresses, txHash, value well formed."""
    now = time.time()
    for message in received[stream]:
        stamp = message["timestamp"]
        assert TIMESTAMP.match(stamp), stamp
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert parsed.utcoffset() == UTC.utcoffset(None)
        assert abs(parsed.timestamp() - now) < 120
        for name in ADDRESS_FIELDS.get(stream, ()):
            assert ADDRESS.match(message[name]), (name, message[name])
        if stream == "transactions":
            assert TX_HASH.match(message["txHash"])
            value = message["value"]
            assert isinstance(value, str)
            assert value.isascii()
            assert value.isdigit()
            assert str(int(value)) == value  # decimal, no sign, no leading zeros
            assert isinstance(message["gasUsed"], int)
        if stream == "metrics":
            for name in ("tps", "cpu", "memory", "errorRate"):
                assert isinstance(message[name], int | float)
                assert message[name] >= 0
            assert isinstance(message["connections"], int)
        if stream == "network":
            assert isinstance(message["connected"], bool)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_metrics_tps_matches_the_transactions_a_subscriber_saw(live_server: ServerProcess) -> None:
    """sum(tps x interval) equals the PENDING transactions a subscriber saw in that window."""
    intervals = 15

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        metrics: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        async with (
            websockets.connect(live_server.ws("/ws/transactions")) as txs,
            websockets.connect(live_server.ws("/ws/metrics")) as mws,
        ):
            first = orjson.loads(await asyncio.wait_for(txs.recv(), 10))  # tx flow has begun
            start = _epoch(first["timestamp"])

            async def read_metrics() -> None:
                for _ in range(intervals * 3):
                    message = orjson.loads(await mws.recv())
                    if _epoch(message["timestamp"]) > start + 0.1:
                        metrics.append(message)
                    if len(metrics) == intervals + 1:
                        return

            async def read_transactions() -> None:
                for _ in range(100_000):
                    message = orjson.loads(await txs.recv())
                    if message["status"] == "PENDING":
                        pending.append(message)
                    if (
                        len(metrics) == intervals + 1
                        and _epoch(message["timestamp"]) > _epoch(metrics[-1]["timestamp"]) + 0.2
                    ):
                        return

            await asyncio.wait_for(asyncio.gather(read_metrics(), read_transactions()), 30)
        return metrics, pending

    metrics, pending = asyncio.run(main())
    stamps = [_epoch(m["timestamp"]) for m in metrics]
    expected = sum(
        m["tps"] * (b - a) for m, a, b in zip(metrics[1:], stamps, stamps[1:], strict=False)
    )
    seen = sum(stamps[0] < _epoch(tx["timestamp"]) <= stamps[-1] for tx in pending)
    assert seen > 0
    # A transaction stamped just before a sample may be published one tick after it.
    assert abs(expected - seen) <= max(10, 0.1 * seen), (expected, seen)
    duration = stamps[-1] - stamps[0]
    assert duration == pytest.approx(intervals * METRICS_INTERVAL, rel=0.2)
    # And the simulator runs at its configured rate (Poisson: within ~4 sigma).
    assert seen / duration == pytest.approx(TX_RATE, rel=0.35)


def test_metrics_connections_counts_the_connections_held(live_server: ServerProcess) -> None:
    """`connections` equals the WebSocket connections open on the server, as they come and go."""

    async def settle(ws: Any, want: int) -> list[int]:
        """Read metrics until `connections` is `want` twice in a row (bounded)."""
        seen: list[int] = []
        for _ in range(40):
            seen.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5))["connections"])
            if seen[-2:] == [want, want]:
                return seen
        raise AssertionError(f"connections never settled at {want}: {seen}")

    async def main() -> None:
        async with websockets.connect(live_server.ws("/ws/metrics")) as mws:
            await settle(mws, 1)
            extra = [
                await websockets.connect(live_server.ws(f"/ws/{s}"))
                for s in ("network", "consensus", "validators", "metrics")
            ]
            await settle(mws, 5)
            for ws in extra[:2]:
                await ws.close()
            await settle(mws, 3)
            for ws in extra[2:]:
                await ws.close()
            await settle(mws, 1)

    asyncio.run(main())
