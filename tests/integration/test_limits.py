"""Inbound size limits (close 1009) and the connection cap (HTTP 503, others unharmed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.support.rawws import OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWebSocket
from tests.support.server import ServerProcess, run_server

MIB = 1048576
FRAME = 65536
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with no simulator, default size limits (64 KiB frames, 1 MiB messages)."""
    with run_server(
        "--no-simulate",
        "--metrics-interval",
        "0.2",
        "--log-level",
        "INFO",
        tmp_path=tmp_path_factory.mktemp("limits"),
    ) as server:
        yield server


def _fragments(total: int) -> list[bytes]:
    """A message of ``total`` bytes split into frames of at most 64 KiB."""
    return [b"a" * min(FRAME, total - start) for start in range(0, total, FRAME)]


def _send_fragmented(ws: RawWebSocket, total: int) -> None:
    parts = _fragments(total)
    for i, part in enumerate(parts):
        ws.send_frame(OP_TEXT if i == 0 else OP_CONT, part, fin=i == len(parts) - 1)


def test_message_of_1mib_plus_one_byte_closes_with_1009(server: ServerProcess) -> None:
    """17 frames totalling 1,048,577 bytes: the server closes with 1009 'message too big'."""
    with RawWebSocket(server.port) as ws:
        ws.open("/ws/transactions")
        _send_fragmented(ws, MIB + 1)
        close = ws.recv_until(OP_CLOSE)
        assert close.close_code() == 1009
        assert b"too big" in close.payload or b"limit" in close.payload


def test_message_of_exactly_1mib_is_accepted(server: ServerProcess) -> None:
    """A 1,048,576-byte message is within the limit: the connection still answers a ping."""
    with RawWebSocket(server.port) as ws:
        ws.open("/ws/transactions")
        _send_fragmented(ws, MIB)
        ws.send_frame(OP_PING, b"still there?")
        pong = ws.recv_until(OP_PONG)
        assert pong.payload == b"still there?"


def test_single_frame_over_64kib_closes_with_1009(server: ServerProcess) -> None:
    """One frame of 65,537 bytes is refused from its header: close 1009."""
    with RawWebSocket(server.port) as ws:
        ws.open("/ws/transactions")
        ws.send_frame(OP_TEXT, b"a" * (FRAME + 1))
        assert ws.recv_until(OP_CLOSE).close_code() == 1009


def test_websockets_client_sees_1009_for_both_limits(server: ServerProcess) -> None:
    """websockets gets 1009 for a 64 KiB+1 frame, a 1 MiB+1 message and a deflate bomb."""

    async def closed_with(payload: str | list[str], compression: str | None) -> int:
        async with websockets.connect(
            server.ws("/ws/transactions"), compression=compression, max_size=None
        ) as ws:
            await ws.send(payload)
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    async def main() -> None:
        assert await closed_with("a" * (FRAME + 1), None) == 1009
        assert await closed_with(["a" * FRAME] * 16 + ["a"], None) == 1009
        assert await closed_with("a" * (MIB + 1), "deflate") == 1009

    asyncio.run(main())


def test_server_keeps_serving_after_oversize_messages(server: ServerProcess) -> None:
    """After the 1009 closes above the server still serves new connections, without a crash."""

    async def main() -> dict[str, object]:
        async with websockets.connect(server.ws("/ws/metrics")) as ws:
            message: dict[str, object] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            return message

    assert "tps" in asyncio.run(main())
    assert server.proc.poll() is None
    assert "code=1009" in server.log()
    assert "Traceback" not in server.log()


def test_connection_beyond_the_cap_gets_503_and_the_others_keep_receiving(tmp_path: Path) -> None:
    """The 21st of 20 gets 503 + Retry-After + JSON; the 20 keep every seq; a freed slot admits."""
    with run_server(
        "--no-simulate",
        "--max-connections",
        str(MAX_CONNECTIONS),
        "--metrics-interval",
        "0.1",
        "--retry-after",
        "7",
        tmp_path=tmp_path,
    ) as server:

        async def main() -> None:
            clients = [
                await websockets.connect(server.ws("/ws/metrics")) for _ in range(MAX_CONNECTIONS)
            ]
            seqs: list[list[int]] = [[] for _ in clients]

            async def read(i: int, n: int) -> None:
                for _ in range(n):
                    seqs[i].append(
                        orjson.loads(await asyncio.wait_for(clients[i].recv(), 5))["seq"]
                    )

            await asyncio.gather(*(read(i, 1) for i in range(len(clients))))

            # The 21st, on a raw socket: a plain HTTP refusal.
            def refused() -> None:
                with RawWebSocket(server.port) as extra:
                    response = extra.request("/ws/metrics")
                    assert response.status == 503
                    assert response.headers["retry-after"] == "7"
                    assert response.headers["content-type"] == "application/json"
                    body = response.json()
                    assert isinstance(body, dict)
                    assert body["error"] == "too_many_connections"
                    assert str(MAX_CONNECTIONS) in body["detail"]

            await asyncio.to_thread(refused)
            with pytest.raises(InvalidStatus) as info:
                await websockets.connect(server.ws("/ws/transactions"))
            assert info.value.response.status_code == 503

            await asyncio.gather(*(read(i, 5) for i in range(len(clients))))
            for got in seqs:
                assert got == list(range(got[0], got[0] + len(got))), got
            last = orjson.loads(await asyncio.wait_for(clients[0].recv(), 5))
            assert last["connections"] == MAX_CONNECTIONS

            await clients.pop().close()
            newcomer = None
            for _ in range(50):  # the slot frees when the server sees the close
                try:
                    newcomer = await websockets.connect(server.ws("/ws/metrics"))
                    break
                except InvalidStatus:
                    await asyncio.sleep(0.05)
            assert newcomer is not None
            assert "seq" in orjson.loads(await asyncio.wait_for(newcomer.recv(), 5))
            for ws in [*clients, newcomer]:
                await ws.close()

        asyncio.run(main())
        assert server.log().count("status=503 reason=too_many_connections") >= 2


def test_an_oversize_frame_counts_one_protocol_error(tmp_path: Path) -> None:
    """The bytes after a refused frame are not counted as more errors: stats show exactly one."""
    with run_server("--no-simulate", tmp_path=tmp_path) as server:

        async def main() -> int:
            async with websockets.connect(server.ws("/ws/transactions"), compression=None) as ws:
                await ws.send(bytes(range(256)) * 1024)  # 256 KiB of varied bytes, one frame
                with pytest.raises(ConnectionClosedError) as info:
                    await asyncio.wait_for(ws.recv(), 10)
                assert info.value.rcvd is not None
                return info.value.rcvd.code

        assert asyncio.run(main()) == 1009
        server.wait_for_log("code=1009")
        stats = httpx.get(f"{server.http}/api/v11/websocket/stats").json()
        assert stats["endpoints"]["transactions"]["protocolErrors"] == 1
