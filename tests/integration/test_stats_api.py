"""GET /api/v11/websocket/stats against a real server, checked against what real clients got."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.sync.client import connect

from tests.support.opstools import events, frame_size, get_json, poll, publish, sample, scrape
from tests.support.rawws import OP_CLOSE, OP_TEXT, RawWebSocket
from tests.support.server import ServerProcess, run_server

STATS = "/api/v11/websocket/stats"


def _endpoint(server: ServerProcess, name: str) -> dict[str, Any]:
    endpoint: dict[str, Any] = get_json(server, STATS)["endpoints"][name]
    return endpoint


def test_stats_agree_with_what_clients_received(quiet_server: ServerProcess) -> None:
    """Connections, messages, raw and wire bytes, and latency counts equal the clients' own
    tally, for a plain library client, a plain raw client and a permessage-deflate one."""
    k = 30
    batch = events("transactions", k)
    raw_total = wire_total = 0
    with (
        RawWebSocket(quiet_server.port) as plain,
        RawWebSocket(quiet_server.port) as deflated,
        connect(quiet_server.ws("/ws/transactions"), compression=None) as lib,
    ):
        plain.open("/ws/transactions")
        answer = deflated.open("/ws/transactions", extensions="permessage-deflate")
        assert "permessage-deflate" in answer.headers["sec-websocket-extensions"]
        before = time.perf_counter()
        seqs = publish(quiet_server, "transactions", batch[:10])
        seqs += publish(quiet_server, "transactions", batch[10:])
        deflated_raw = deflated_wire = 0
        for client in (plain, deflated):
            for i in range(k):
                frame = client.recv_frame()
                assert frame.opcode == OP_TEXT
                payload = frame.inflate() if frame.rsv1 else frame.payload
                assert orjson.loads(payload) == {**batch[i], "seq": seqs[i]}
                raw_total += len(payload)
                wire_total += frame_size(len(frame.payload))
                if client is deflated:
                    assert frame.rsv1
                    deflated_raw += len(payload)
                    deflated_wire += frame_size(len(frame.payload))
        for i in range(k):
            text = lib.recv(timeout=5)
            assert isinstance(text, str)
            assert orjson.loads(text)["seq"] == seqs[i]
            raw_total += len(text.encode())
            wire_total += frame_size(len(text.encode()))
        elapsed_ms = (time.perf_counter() - before) * 1000
        report = get_json(quiet_server, STATS)
        tx = report["endpoints"]["transactions"]
        assert tx["connections"] == 3
        assert tx["connects"] == 3
        assert tx["messagesSent"] == 3 * k
        assert tx["bytesSent"] == {"raw": raw_total, "wire": wire_total}
        assert deflated_wire < deflated_raw  # compression shows in the wire figure
        latency = tx["broadcastLatencyMs"]
        assert latency["count"] == k  # per event, not per delivery
        assert 0 < latency["p50"] <= latency["p99"] <= latency["p999"] <= latency["max"]
        # Each event was accepted after `before` and flushed before its last client read it.
        assert latency["max"] <= elapsed_ms
        assert 0 < latency["mean"] <= latency["max"]
        assert latency["targetMs"] == 100.0
        # The sampler publishes on /ws/metrics, but nobody listened: no broadcast to measure.
        assert report["endpoints"]["metrics"]["broadcastLatencyMs"]["count"] == 0
        assert report["ingest"]["accepted"] == {"transactions": k}
        assert report["connections"] == 3
        assert report["profile"] == "dev"
        assert report["uptimeSeconds"] > 0
        assert report["limits"]["maxConnections"] == 5000
        assert report["limits"]["maxFrameSize"] == 65536
        assert report["limits"]["maxMessageSize"] == 1048576
        assert report["limits"]["compressionLevel"] == 6
    # The library client closed with 1000; the raw ones dropped their sockets (1006).
    closed = poll(
        lambda: (
            r
            if (r := get_json(quiet_server, STATS))["endpoints"]["transactions"]["connections"] == 0
            else None
        ),
        what="all three closes counted",
    )
    assert closed["closes"] == {"1000": 1, "1006": 2}
    assert closed["endpoints"]["transactions"]["connects"] == 3


def test_keepalive_disconnects_are_counted(tmp_path: Path) -> None:
    """A client that never answers pings is closed with 4009 and counted as a keepalive
    disconnect, in the stats and in Prometheus, while a client that answers stays."""
    with (
        run_server(
            "--no-simulate", "--ping-interval", "0.2", "--ping-timeout", "0.3", tmp_path=tmp_path
        ) as server,
        connect(server.ws("/ws/network")) as answering,
        RawWebSocket(server.port) as silent,
    ):
        silent.open("/ws/network")
        code = silent.recv_until(OP_CLOSE, timeout=10).close_code()
        assert code == 4009
        silent.sock.close()  # no close reply: the server's side ends when the socket does
        counted = poll(
            lambda: e if (e := _endpoint(server, "network"))["connections"] == 1 else None,
            what="the silent connection gone",
        )
        assert counted["keepaliveDisconnects"] == 1
        assert counted["connections"] == 1  # the library client answers pings
        assert answering.ping().wait(5)  # and is still served
        samples = scrape(server)
        assert sample(
            samples, "aurigraph_websocket_keepalive_disconnects_total", endpoint="network"
        ) == (1)
        assert (
            sample(
                samples,
                "aurigraph_websocket_disconnects_total",
                code="4009",
                reason="keepalive ping timeout",
            )
            == 1
        )


def test_slow_consumer_disconnects_are_counted(tmp_path: Path) -> None:
    """A client that stops reading is closed as slow (4008) once its backlog passes the cap,
    and the stats and Prometheus count it on its endpoint."""
    with (
        run_server("--no-simulate", "--max-buffered-bytes", "1024", tmp_path=tmp_path) as server,
        RawWebSocket(server.port, rcvbuf=4096) as stalled,
    ):
        stalled.open("/ws/transactions")
        # The kernel's socket buffers take a few MB first; big events fill them sooner.
        size = 1000
        for n in range(40):  # at most 40 batches of ~340 kB
            batch = [dict(e, value="9" * 78) for e in events("transactions", size, n * size)]
            publish(server, "transactions", batch)
            if _endpoint(server, "transactions")["slowConsumerDisconnects"]:
                break
        stats = get_json(server, STATS)
        assert stats["endpoints"]["transactions"]["slowConsumerDisconnects"] == 1
        samples = scrape(server)
        assert (
            sample(
                samples,
                "aurigraph_websocket_slow_consumer_disconnects_total",
                endpoint="transactions",
            )
            == 1
        )


def test_refused_connects_are_counted_by_reason(tmp_path: Path) -> None:
    """A connect over max_connections and one to an unknown path are refused and counted
    by reason, in the stats and in Prometheus."""
    with (
        run_server("--no-simulate", "--max-connections", "1", tmp_path=tmp_path) as server,
        RawWebSocket(server.port) as first,
        RawWebSocket(server.port) as second,
        RawWebSocket(server.port) as lost,
    ):
        first.open("/ws/consensus")
        full = second.request("/ws/consensus")
        assert full.status == 503
        assert orjson.loads(full.body)["error"] == "too_many_connections"
        assert lost.request("/ws/nowhere").status == 404
        stats = get_json(server, STATS)
        assert stats["refused"] == {"too_many_connections": 1, "unknown_stream": 1}
        samples = scrape(server)
        for reason in ("too_many_connections", "unknown_stream"):
            assert sample(samples, "aurigraph_websocket_refused_total", reason=reason) == 1
        assert httpx.get(f"{server.http}/q/health/ready").status_code == 503  # full


def test_a_closed_connection_leaves_the_open_count(quiet_server: ServerProcess) -> None:
    """Open connections go up on connect and down on close, per endpoint."""
    with connect(quiet_server.ws("/ws/validators")):
        with connect(quiet_server.ws("/ws/validators")):
            assert _endpoint(quiet_server, "validators")["connections"] == 2
        poll(
            lambda: True if _endpoint(quiet_server, "validators")["connections"] == 1 else None,
            what="one validators connection left",
        )
    final = poll(
        lambda: e if (e := _endpoint(quiet_server, "validators"))["connections"] == 0 else None,
        what="no validators connection left",
    )
    assert final["connects"] == 2
