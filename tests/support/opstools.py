"""Helpers for the operator-endpoint tests: events to publish, scrapes, bounded polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ServerProcess
from tests.support.streamtools import example_event

__all__ = ["events", "frame_size", "get_json", "poll", "publish", "sample", "scrape"]

T = TypeVar("T")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def events(stream: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` valid events of ``stream``, each different from the others."""
    base = example_event(stream)
    out = []
    for i in range(start, start + n):
        event = dict(base)
        if stream == "transactions":
            event["txHash"] = f"0x{i:064x}"
        elif stream == "validators":
            event["votingPower"] = 1000 + i
        elif stream == "consensus":
            event["round"] = i
        elif stream == "network":
            event["peerId"] = f"peer-{i}"
        else:
            event["tps"] = i
        out.append(event)
    return out


def publish(server: ServerProcess, stream: str, batch: list[dict[str, Any]]) -> list[int]:
    """POST ``batch`` to the ingest API; returns the assigned seqs."""
    response = httpx.post(f"{server.http}/api/v11/streams/{stream}/events", json=batch, timeout=10)
    assert response.status_code == 200, response.text
    seqs: list[int] = response.json()["seqs"]
    return seqs


def get_json(server: ServerProcess, path: str, status: int = 200) -> Any:
    response = httpx.get(f"{server.http}{path}", timeout=10)
    assert response.status_code == status, (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def scrape(server: ServerProcess) -> Samples:
    """Every sample of /q/metrics, parsed by prometheus-client's own parser."""
    response = httpx.get(f"{server.http}/q/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; fails the test if the exposition lacks it."""
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels} in /q/metrics"
    return samples[key]


def frame_size(payload_length: int) -> int:
    """Bytes of an unmasked server frame carrying ``payload_length`` bytes (RFC 6455 5.2)."""
    if payload_length < 126:
        return 2 + payload_length
    if payload_length < 65536:
        return 4 + payload_length
    return 10 + payload_length


def poll(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Call ``check`` until it returns something other than None (bounded in count and time)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")
