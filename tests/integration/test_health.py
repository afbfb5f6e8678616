"""/q/health, /q/health/live and /q/health/ready on a real server: shape, UP, and each way DOWN."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.opstools import poll
from tests.support.rawws import RawWebSocket
from tests.support.server import ServerProcess, run_server

# MicroProfile Health 3.x: {"status": "UP"|"DOWN", "checks": [{"name", "status", "data"?}]}.
MICROPROFILE_HEALTH = Draft202012Validator(
    {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"enum": ["UP", "DOWN"]},
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "status"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "status": {"enum": ["UP", "DOWN"]},
                        "data": {
                            "type": "object",
                            "additionalProperties": {"type": ["string", "number", "boolean"]},
                        },
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }
)


def health(server: ServerProcess, path: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of one health endpoint, checked against the MicroProfile shape."""
    response = httpx.get(f"{server.http}{path}", timeout=10)
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    MICROPROFILE_HEALTH.validate(body)
    overall = "UP" if all(c["status"] == "UP" for c in body["checks"]) else "DOWN"
    assert body["status"] == overall
    assert response.status_code == (200 if overall == "UP" else 503)
    return response.status_code, body


def checks(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["checks"]}


def test_a_running_server_is_up(live_server: ServerProcess) -> None:
    """All three endpoints answer 200 UP; /q/health holds the liveness and readiness checks."""
    assert health(live_server, "/q/health/live")[0] == 200
    _, live = health(live_server, "/q/health/live")
    _, ready = health(live_server, "/q/health/ready")
    status, both = health(live_server, "/q/health")
    assert status == 200
    assert list(checks(live)) == ["event-loop"]
    assert list(checks(ready)) == ["broker", "shutdown", "websocket-capacity"]
    assert list(checks(both)) == ["event-loop", "broker", "shutdown", "websocket-capacity"]
    loop = checks(live)["event-loop"]["data"]
    assert 0 <= loop["lagMs"] <= loop["windowLagMs"] < loop["thresholdMs"] == 5000
    assert loop["windowSeconds"] == 5
    assert checks(ready)["broker"]["data"] == {"broker": "memory"}


def test_readiness_is_down_while_full(tmp_path: Path) -> None:
    """At max_connections readiness is DOWN (503) with the capacity check saying why; one
    close later it is UP again. Liveness does not change."""
    with run_server("--no-simulate", "--max-connections", "2", tmp_path=tmp_path) as server:
        with RawWebSocket(server.port) as one, RawWebSocket(server.port) as two:
            one.open("/ws/metrics")
            assert health(server, "/q/health/ready")[0] == 200
            two.open("/ws/metrics")
            status, ready = health(server, "/q/health/ready")
            assert status == 503
            capacity = checks(ready)["websocket-capacity"]
            assert capacity == {
                "name": "websocket-capacity",
                "status": "DOWN",
                "data": {"connections": 2, "maxConnections": 2},
            }
            assert checks(ready)["broker"]["status"] == "UP"
            assert health(server, "/q/health/live")[0] == 200
            assert health(server, "/q/health")[0] == 503
        poll(
            lambda: True if health(server, "/q/health/ready")[0] == 200 else None,
            what="readiness UP after the connections closed",
        )


def test_readiness_is_down_while_draining(tmp_path: Path) -> None:
    """On SIGTERM with a shutdown delay the server keeps serving with readiness DOWN and
    refuses new WebSockets with 503, then closes its clients with 1001 and exits 0."""
    with (
        run_server("--no-simulate", "--shutdown-delay", "2", tmp_path=tmp_path) as server,
        connect(server.ws("/ws/consensus")) as client,
    ):
        assert health(server, "/q/health/ready")[0] == 200
        server.proc.send_signal(signal.SIGTERM)
        _, ready = poll(
            lambda: r if (r := health(server, "/q/health/ready"))[0] == 503 else None,
            what="readiness DOWN after SIGTERM",
        )
        assert checks(ready)["shutdown"] == {
            "name": "shutdown",
            "status": "DOWN",
            "data": {"draining": True},
        }
        assert health(server, "/q/health/live")[0] == 200  # draining is not dead
        with RawWebSocket(server.port) as late:
            refused = late.request("/ws/consensus")
            assert refused.status == 503
            assert orjson.loads(refused.body)["error"] == "shutting_down"
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert server.proc.wait(20) == 0
        server.stopped = True


def test_liveness_is_down_while_the_event_loop_is_stuck(tmp_path: Path) -> None:
    """A server whose loop did not run for longer than the threshold reports liveness DOWN
    with the measured lag; once the loop runs freely it is UP again."""
    with run_server(
        "--no-simulate",
        "--loop-lag-threshold",
        "0.1",
        "--loop-lag-interval",
        "0.05",
        tmp_path=tmp_path,
    ) as server:
        assert health(server, "/q/health/live")[0] == 200
        # The stall itself: the process is stopped, so no callback of its loop runs, as when
        # one holds the loop. Its length (0.4 s) is the stimulus, four times the threshold.
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.4)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        status, live = health(server, "/q/health/live")
        assert status == 503
        down = checks(live)["event-loop"]
        assert down["status"] == "DOWN"
        assert down["data"]["windowLagMs"] >= 300 > down["data"]["thresholdMs"] == 100
        poll(
            lambda: True if health(server, "/q/health/live")[0] == 200 else None,
            what="liveness UP again",
        )
