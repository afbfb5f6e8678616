"""Keepalive: pings every --ping-interval; no pong within --ping-timeout closes with 4009."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import orjson
import pytest
import websockets

from tests.support.rawws import OP_CLOSE, OP_PING, OP_PONG, RawWebSocket
from tests.support.server import ServerProcess, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server pinging every 0.3 s and waiting 0.3 s for the pong."""
    with run_server(
        "--no-simulate",
        "--ping-interval",
        "0.3",
        "--ping-timeout",
        "0.3",
        "--metrics-interval",
        "0.1",
        "--log-level",
        "INFO",
        tmp_path=tmp_path_factory.mktemp("keepalive"),
    ) as server:
        yield server


def test_client_that_never_answers_pings_is_closed_with_4009(server: ServerProcess) -> None:
    """A raw client that completes the handshake but ignores pings gets close 4009."""
    with RawWebSocket(server.port) as ws:
        ws.open("/ws/transactions")
        opened = time.monotonic()
        first = ws.recv_frame(timeout=3)
        assert first.opcode == OP_PING
        close = ws.recv_until(OP_CLOSE, timeout=3)
        elapsed = time.monotonic() - opened
        assert close.close_code() == 4009
        assert close.payload[2:] == b"keepalive ping timeout"
        assert elapsed < 2.0  # one interval to the ping, one timeout to the close
        ws.send_frame(OP_CLOSE, close.payload[:2])
    server.wait_for_log("code=4009")


def test_client_that_answers_pings_stays_connected(server: ServerProcess) -> None:
    """A raw client answering each ping with its pong gets 5 pings in a row and no close."""
    with RawWebSocket(server.port) as ws:
        ws.open("/ws/transactions")
        pings = []
        for _ in range(5):
            frame = ws.recv_frame(timeout=3)
            assert frame.opcode == OP_PING, frame
            pings.append(time.monotonic())
            ws.send_frame(OP_PONG, frame.payload)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(0.15 < gap < 1.5 for gap in gaps), gaps


def test_websockets_client_stays_connected_across_ping_intervals(server: ServerProcess) -> None:
    """A websockets client (it answers pings) stays open, gapless, over about 7 ping intervals."""

    async def main() -> None:
        async with websockets.connect(server.ws("/ws/metrics"), ping_interval=None) as ws:
            started = time.monotonic()
            seqs = [orjson.loads(await asyncio.wait_for(ws.recv(), 3))["seq"] for _ in range(20)]
            assert time.monotonic() - started > 3 * 0.3
            assert seqs == list(range(seqs[0], seqs[0] + 20))
            assert ws.close_code is None
            pong = await ws.ping()
            await asyncio.wait_for(pong, 3)

    asyncio.run(main())
