"""Real clients against a live server: the spec's Python client, wscat, websockets, raw
sockets with and without permessage-deflate."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from tests.support.rawws import OP_TEXT, RawWebSocket
from tests.support.server import ROOT, ServerProcess
from tests.support.subproc import LineReader, stop

# The "Python Client" example of the spec, verbatim but for the URL.
SPEC_PYTHON_CLIENT = """\
import websocket
import json

def on_message(ws, message):
    data = json.loads(message)
    print(f"TPS: {data['tps']}, CPU: {data['cpu']}%")

def on_error(ws, error):
    print(f"Error: {error}")

def on_close(ws, close_status_code, close_msg):
    print("Connection closed")

def on_open(ws):
    print("Connected to metrics stream")

ws = websocket.WebSocketApp(
    "ws://localhost:9003/ws/metrics",
    on_open=on_open,
    on_message=on_message,
    on_error=on_error,
    on_close=on_close
)

ws.run_forever()
"""
TPS_LINE = re.compile(r"^TPS: (\d+(\.\d+)?), CPU: (\d+(\.\d+)?)%$")


def _wscat() -> str:
    found = shutil.which("wscat") or str(ROOT / "node_modules" / ".bin" / "wscat")
    assert Path(found).exists(), "wscat is missing: run `npm ci` (make test does)"
    return found


def test_spec_python_client_prints_tps_and_cpu(live_server: ServerProcess, tmp_path: Path) -> None:
    """The spec's websocket-client program, run as a process, prints `TPS: ..., CPU: ...%`."""
    script = tmp_path / "client.py"
    script.write_text(
        SPEC_PYTHON_CLIENT.replace("ws://localhost:9003/ws/metrics", live_server.ws("/ws/metrics"))
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    out = LineReader(proc.stdout)
    try:
        out.wait_for(lambda line: line == "Connected to metrics stream", timeout=15)
        lines = out.wait_for(lambda line: len([x for x in out.lines if TPS_LINE.match(x)]) >= 3, 15)
    finally:
        stop(proc, signal.SIGTERM)
        out.close()
    readings = [TPS_LINE.match(line) for line in lines if TPS_LINE.match(line)]
    assert len(readings) >= 3
    assert not [line for line in lines if line.startswith("Error")]
    # The simulator publishes transactions, so the reported TPS is not all zero.
    assert any(float(m.group(1)) > 0 for m in readings if m is not None)


def test_wscat_receives_metrics_with_permessage_deflate(live_server: ServerProcess) -> None:
    """`wscat -c ws://.../ws/metrics` prints metrics JSON; the server negotiated deflate."""
    log_before = len(live_server.log())
    proc = subprocess.Popen(
        [_wscat(), "-c", live_server.ws("/ws/metrics")],
        stdin=subprocess.PIPE,  # kept open: wscat exits when stdin closes
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    out = LineReader(proc.stdout)
    try:
        messages: list[dict[str, Any]] = []

        def is_metrics(line: str) -> bool:
            if line.startswith("{"):
                messages.append(orjson.loads(line))
            return len(messages) >= 3

        out.wait_for(is_metrics, timeout=15)
        opened = [
            line
            for line in live_server.log()[log_before:].splitlines()
            if "open endpoint=metrics" in line
        ]
    finally:
        stop(proc, signal.SIGTERM)
        out.close()
        proc.stdin.close()
    fields = {"timestamp", "tps", "cpu", "memory", "connections", "errorRate", "seq"}
    assert set(messages[0]) == fields
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(opened) == 1, opened
    assert "deflate=True" in opened[0].split(), opened


def test_websockets_client_negotiates_deflate_and_decodes_the_same_json(
    live_server: ServerProcess,
) -> None:
    """websockets: deflate when offered, plain when not; both decode the same message."""

    async def main() -> None:
        async with (
            websockets.connect(live_server.ws("/ws/metrics")) as packed,
            websockets.connect(live_server.ws("/ws/metrics"), compression=None) as plain,
        ):
            assert packed.response is not None
            assert plain.response is not None
            answer = packed.response.headers.get("Sec-WebSocket-Extensions", "")
            assert answer.startswith("permessage-deflate")
            assert "server_no_context_takeover" in answer
            assert "Sec-WebSocket-Extensions" not in plain.response.headers
            a = orjson.loads(await asyncio.wait_for(packed.recv(), 5))
            b = orjson.loads(await asyncio.wait_for(plain.recv(), 5))
            for _ in range(5):  # line the two up on one seq
                if a["seq"] < b["seq"]:
                    a = orjson.loads(await asyncio.wait_for(packed.recv(), 5))
                elif b["seq"] < a["seq"]:
                    b = orjson.loads(await asyncio.wait_for(plain.recv(), 5))
            assert a == b

    asyncio.run(main())


@pytest.mark.parametrize("offer", [True, False], ids=["deflate", "plain"])
def test_raw_frames_are_compressed_only_when_offered(
    live_server: ServerProcess, offer: bool
) -> None:
    """With an offer, frames have RSV1 set and inflate to JSON; without, they are plain JSON."""
    with RawWebSocket(live_server.port) as ws:
        response = ws.open("/ws/metrics", extensions="permessage-deflate" if offer else None)
        assert ("sec-websocket-extensions" in response.headers) is offer
        for _ in range(2):
            frame = ws.recv_until(OP_TEXT)
            assert frame.fin
            assert frame.rsv1 is offer
            message = orjson.loads(frame.inflate() if offer else frame.payload)
            assert "tps" in message
            assert "seq" in message
