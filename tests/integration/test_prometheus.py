"""GET /q/metrics parsed by prometheus-client's own parser, as clients connect and messages flow."""

from __future__ import annotations

import math

import httpx
import orjson
from websockets.sync.client import connect

from aurigraph_stream.streams import NAMES
from tests.support.opstools import events, poll, publish, sample, scrape
from tests.support.server import ServerProcess

LATENCY = "aurigraph_websocket_broadcast_latency_ms"
OPEN = "aurigraph_websocket_connections_total"


def test_spec_names_and_process_figures_are_exported(quiet_server: ServerProcess) -> None:
    """The spec's three names exist for all five endpoints, beside process CPU and memory."""
    samples = scrape(quiet_server)
    for name in NAMES:
        assert sample(samples, "aurigraph_websocket_connections_total", endpoint=name) == 0
        assert sample(samples, "aurigraph_websocket_messages_sent_total", endpoint=name) == 0
        assert sample(samples, f"{LATENCY}_count", endpoint=name) == 0
        assert sample(samples, f"{LATENCY}_bucket", endpoint=name, le="+Inf") == 0
    assert sample(samples, "process_cpu_seconds_total") > 0
    assert sample(samples, "process_resident_memory_bytes") > 10 * 2**20
    assert sample(samples, "aurigraph_stream_start_time_seconds") > 1.7e9


def test_values_move_as_clients_connect_and_messages_flow(quiet_server: ServerProcess) -> None:
    """Connections, messages, bytes, latency and ingest counters move by exactly what
    the test's clients and publishes did."""
    k = 12
    before = scrape(quiet_server)
    with (
        connect(quiet_server.ws("/ws/validators"), compression=None) as a,
        connect(quiet_server.ws("/ws/validators"), compression=None) as b,
    ):
        during = scrape(quiet_server)
        assert sample(during, "aurigraph_websocket_connections_total", endpoint="validators") == 2
        assert (
            sample(during, "aurigraph_websocket_connections_opened_total", endpoint="validators")
            == 2
        )
        batch = events("validators", k)
        seqs = publish(quiet_server, "validators", batch)
        payload_bytes = 0
        for client in (a, b):
            for seq in seqs:
                text = client.recv(timeout=5)
                assert isinstance(text, str)
                assert orjson.loads(text)["seq"] == seq
                payload_bytes += len(text.encode())
        bad = httpx.post(
            f"{quiet_server.http}/api/v11/streams/validators/events", json={"validator": "x"}
        )
        assert bad.status_code == 422
        nowhere = httpx.post(f"{quiet_server.http}/api/v11/streams/nowhere/events", json={})
        assert nowhere.status_code == 404
        after = scrape(quiet_server)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("aurigraph_websocket_messages_sent_total", endpoint="validators") == 2 * k
    assert moved("aurigraph_websocket_payload_bytes_sent_total", endpoint="validators") == (
        payload_bytes
    )
    assert moved("aurigraph_websocket_wire_bytes_sent_total", endpoint="validators") > (
        payload_bytes
    )
    assert moved(f"{LATENCY}_count", endpoint="validators") == k  # one per event
    assert moved(f"{LATENCY}_sum", endpoint="validators") > 0
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in after.items()
        if name == f"{LATENCY}_bucket" and dict(labels)["endpoint"] == "validators"
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts)  # cumulative
    assert buckets[-1] == (math.inf, sample(after, f"{LATENCY}_count", endpoint="validators"))
    assert sample(after, "aurigraph_ingest_events_accepted_total", stream="validators") == k
    assert (
        sample(
            after,
            "aurigraph_ingest_requests_rejected_total",
            stream="validators",
            reason="validation_failed",
        )
        == 1
    )
    assert (
        sample(
            after,
            "aurigraph_ingest_requests_rejected_total",
            stream="other",
            reason="unknown_stream",
        )
        == 1
    )
    # Both clients closed with 1000 on leaving the block.
    closed = poll(
        lambda: (
            now if sample(now := scrape(quiet_server), OPEN, endpoint="validators") == 0 else None
        ),
        what="both validators connections closed",
    )
    assert (
        sample(
            closed, "aurigraph_websocket_disconnects_total", code="1000", reason="normal closure"
        )
        == 2
    )
