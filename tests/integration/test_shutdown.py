"""SIGTERM / SIGINT: every client gets close 1001, and the process exits 0 in bounded time."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import websockets

from tests.conftest import LIVE_ARGS
from tests.support.rawws import OP_CLOSE, RawWebSocket
from tests.support.server import run_server

ENDPOINTS = ("metrics", "transactions", "validators", "consensus", "network", "transactions")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_every_client_with_1001_and_exits_0(tmp_path: Path, sig: int) -> None:
    """Every client, even one ignoring the close, gets 1001; the process exits 0 promptly."""
    with run_server(*LIVE_ARGS, "--close-timeout", "1", tmp_path=tmp_path) as server:
        raw = RawWebSocket(server.port)
        raw.open("/ws/consensus")

        async def main() -> tuple[list[int | None], float]:
            clients = [
                await websockets.connect(server.ws(f"/ws/{name}"), max_queue=None)
                for name in ENDPOINTS
            ]
            for ws in clients:  # each connection is live before the signal
                await asyncio.wait_for(ws.recv(), 10)

            async def drain(ws: websockets.ClientConnection) -> int | None:
                async for _ in ws:
                    pass
                return ws.close_code

            readers = [asyncio.create_task(drain(ws)) for ws in clients]
            signalled = time.monotonic()
            server.proc.send_signal(sig)
            codes = await asyncio.wait_for(asyncio.gather(*readers), 15)
            exit_code = await asyncio.to_thread(server.proc.wait, 15)
            assert exit_code == 0, server.log()
            return list(codes), time.monotonic() - signalled

        codes, elapsed = asyncio.run(main())
        assert codes == [1001] * len(ENDPOINTS)
        assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
        close = raw.recv_until(OP_CLOSE, timeout=5)
        assert close.close_code() == 1001
        assert close.payload[2:] == b"server shutting down"
        raw.sock.close()
        server.stopped = True
        log = server.log()
        assert log.count("code=1001") == len(ENDPOINTS) + 1
        assert "Traceback" not in log
