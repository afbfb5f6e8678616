"""A reader that stops reading is closed with 4008 while a fast one misses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from tests.support.rawws import OP_CLOSE, OP_TEXT, RawFrame, RawWebSocket
from tests.support.server import run_server

CAP = 65536
BATCH = 250


def _transactions(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": "2025-10-25T09:35:02Z",
            "txHash": f"0x{start + i:064x}",
            "from": "0x" + "11" * 20,
            "to": "0x" + "22" * 20,
            "value": "1" + "0" * 60,
            "status": "PENDING",
            "gasUsed": 21000,
        }
        for i in range(n)
    ]


def test_slow_reader_is_closed_with_4008_and_a_fast_reader_misses_nothing(tmp_path: Path) -> None:
    """A non-reading client past --max-buffered-bytes gets 4008; a fast one gets every seq."""
    with run_server(
        "--no-simulate",
        "--max-buffered-bytes",
        str(CAP),
        "--close-timeout",
        "60",
        "--metrics-interval",
        "0.1",
        "--log-level",
        "INFO",
        tmp_path=tmp_path,
    ) as server:
        slow = RawWebSocket(server.port, rcvbuf=4096)
        slow.open("/ws/transactions")  # ... and then it stops reading.

        async def main() -> tuple[list[int], int]:
            fast_seqs: list[int] = []
            error_rates: list[float] = []
            async with (
                websockets.connect(server.ws("/ws/transactions"), max_queue=None) as fast,
                websockets.connect(server.ws("/ws/metrics")) as metrics,
                httpx.AsyncClient(base_url=server.http) as http,
            ):
                target = 0
                caught_up = asyncio.Event()

                async def read_fast() -> None:
                    async for raw in fast:
                        fast_seqs.append(orjson.loads(raw)["seq"])
                        if fast_seqs[-1] >= target:
                            caught_up.set()

                async def read_metrics() -> None:
                    async for raw in metrics:
                        error_rates.append(orjson.loads(raw)["errorRate"])

                readers = [asyncio.create_task(read_fast()), asyncio.create_task(read_metrics())]
                last = 0

                async def publish() -> None:
                    nonlocal last
                    events = _transactions(last, BATCH)
                    response = await http.post("/api/v11/streams/transactions/events", json=events)
                    assert response.status_code == 200, response.text
                    seqs = response.json()["seqs"]
                    assert seqs == list(range(last + 1, last + BATCH + 1))
                    last = seqs[-1]
                    # Pace the publisher by the fast reader: it keeps up, by definition.
                    await asyncio.wait_for(caught_up.wait(), 10)
                    assert fast_seqs[-1] == last

                async def publish_and_wait() -> None:
                    nonlocal target
                    target = last + BATCH
                    caught_up.clear()
                    await publish()

                # The slow client's kernel buffers absorb a few MB on loopback, then the
                # server's buffer grows past the cap; errorRate > 0 says a send was dropped.
                for _ in range(600):
                    await publish_and_wait()
                    if any(rate > 0 for rate in error_rates):
                        break
                assert any(rate > 0 for rate in error_rates), "the slow reader was never cut off"
                for _ in range(3):  # and the fast reader goes on receiving
                    await publish_and_wait()
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            return fast_seqs, last

        fast_seqs, last = asyncio.run(main())
        assert fast_seqs == list(range(1, last + 1))

        # Now drain the slow socket: an in-order prefix of the stream, then the 4008 close.
        frames: list[RawFrame] = []
        for _ in range(last + 2):
            frames.append(slow.recv_frame(timeout=10))
            if frames[-1].opcode == OP_CLOSE:
                break
        close = frames.pop()
        assert close.opcode == OP_CLOSE
        assert close.close_code() == 4008
        assert close.payload[2:] == b"slow consumer"
        assert all(f.opcode == OP_TEXT for f in frames)
        slow_seqs = [orjson.loads(f.payload)["seq"] for f in frames]
        assert slow_seqs == list(range(1, len(slow_seqs) + 1))
        assert len(slow_seqs) < last
        slow.send_frame(OP_CLOSE, close.payload[:2])
        server.wait_for_log("code=4008")  # the server saw the close reply and logged it
        slow.sock.close()
