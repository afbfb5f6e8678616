"""Helpers the subscription tests share: publishing through the ingest API, and
reading frames with bounded waits."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.sync.client import ClientConnection

from aurigraph_stream.streams import REGISTRY
from tests.support.server import ServerProcess, run_server

__all__ = [
    "OPEN_ARGS",
    "address",
    "consensus",
    "example_event",
    "metrics",
    "open_server",
    "peer",
    "publish",
    "recv_json",
    "tx",
    "validator",
]

# No simulator, no sampler during a test, and no per-address limits: the tests
# open many connections from 127.0.0.1 and must see only what they publish.
OPEN_ARGS = (
    "--no-simulate",
    "--metrics-interval",
    "3600",
    "--handshake-rate",
    "0",
    "--max-connections-per-ip",
    "0",
    "--inbound-message-rate",
    "0",
    "--log-level",
    "INFO",
)

TS = "2025-10-25T09:35:02Z"


def example_event(stream: str) -> dict[str, Any]:
    """The stream's documented example as a publisher sends it: without ``seq``."""
    return {k: v for k, v in REGISTRY[stream].example.items() if k != "seq"}


@contextmanager
def open_server(tmp_path: Path, *args: str) -> Iterator[ServerProcess]:
    with run_server(*OPEN_ARGS, *args, tmp_path=tmp_path) as server:
        yield server


def address(n: int) -> str:
    return "0x" + f"{n:040x}"


def tx(n: int, sender: str, receiver: str, value: str, status: str = "PENDING") -> dict[str, Any]:
    return {
        "timestamp": TS,
        "txHash": "0x" + f"{n:064x}",
        "from": sender,
        "to": receiver,
        "value": value,
        "status": status,
        "gasUsed": 21000,
    }


def validator(addr: str, status: str = "ACTIVE", power: int = 1000) -> dict[str, Any]:
    return {
        "timestamp": TS,
        "validator": addr,
        "status": status,
        "votingPower": power,
        "uptime": 99.5,
        "lastBlockProposed": 7,
    }


def peer(peer_id: str, connected: bool = True, latency: float = 25) -> dict[str, Any]:
    return {
        "timestamp": TS,
        "peerId": peer_id,
        "ip": "192.0.2.10",
        "connected": connected,
        "latency": latency,
        "version": "11.4.3",
    }


def consensus(round_: int, state: str = "VOTING") -> dict[str, Any]:
    return {
        "timestamp": TS,
        "leader": address(1),
        "epoch": 1,
        "round": round_,
        "term": 1,
        "state": state,
        "performanceScore": 0.9,
        "activeValidators": 21,
    }


def metrics(tps: float) -> dict[str, Any]:
    return {
        "timestamp": TS,
        "tps": tps,
        "cpu": 12.5,
        "memory": 100.0,
        "connections": 3,
        "errorRate": 0.0,
    }


def publish(
    server: ServerProcess, stream: str, events: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Publish through the ingest API; returns the messages as subscribers get them (with seq)."""
    response = httpx.post(
        f"{server.http}/api/v11/streams/{stream}/events", json=list(events), timeout=30
    )
    assert response.status_code == 200, response.text
    seqs: list[int] = response.json()["seqs"]
    return [{**event, "seq": seq} for event, seq in zip(events, seqs, strict=True)]


def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    """The next message, parsed; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
    return orjson.loads(message)
