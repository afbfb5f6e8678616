"""Replay, resume and snapshots end to end: no gap, no duplicate, never silent.

Real server processes and real clients; the load comes from a thread that
keeps publishing through the ingest API while clients drop and resume.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from tests.support.rawws import OP_CLOSE, OP_TEXT, RawWebSocket
from tests.support.redisserver import RedisServer
from tests.support.server import ServerProcess
from tests.support.streamtools import (
    address,
    consensus,
    open_server,
    peer,
    publish,
    recv_json,
    tx,
    validator,
)

A, B = address(0xA1), address(0xB2)


@pytest.fixture(scope="module", params=["memory", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A quiet server with a large history, shared by this module's tests: on the memory
    broker, then on Redis (where the history is a round trip away)."""
    args = ["--history-size", "100000"]
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        redis.flushall()
        args += ["--broker-url", redis.url]
    with open_server(tmp_path_factory.mktemp("replay"), *args) as s:
        yield s


def _txs(n: int, start: int = 0, status: str = "PENDING") -> list[dict[str, Any]]:
    return [tx(start + i, A, B, str(i + 1), status) for i in range(n)]


def test_replay_sends_the_last_n_then_live_messages(server: ServerProcess) -> None:
    """replay=N: a subscribed frame (recovered, position), the last N messages, then live ones."""
    published = publish(server, "transactions", _txs(20))
    with connect(server.ws("/ws/transactions?replay=5"), open_timeout=5) as ws:
        head = recv_json(ws)
        assert head["type"] == "subscribed"
        assert head["recovered"] is True
        assert head["replayed"] == 5
        assert head["position"]["seq"] == published[-1]["seq"]
        assert [recv_json(ws) for _ in range(5)] == published[-5:]
        live = publish(server, "transactions", _txs(3, 100))
        assert [recv_json(ws) for _ in range(3)] == live


def test_replay_applies_the_filter_and_a_plain_client_gets_no_control_frame(
    server: ServerProcess,
) -> None:
    """replay=N with a filter replays the last N matching messages; without replay the first
    frame is a spec message, not a control frame."""
    published = publish(server, "transactions", _txs(9, 200, "FAILED") + _txs(9, 300))
    failed = [m for m in published if m["status"] == "FAILED"]
    with (
        connect(server.ws("/ws/transactions?replay=4&status=FAILED"), open_timeout=5) as ws,
        connect(server.ws("/ws/transactions"), open_timeout=5) as plain,
    ):
        head = recv_json(ws)
        assert (head["replayed"], head["recovered"]) == (4, True)
        assert [recv_json(ws) for _ in range(4)] == failed[-4:]
        live = publish(server, "transactions", _txs(1, 400))
        assert recv_json(plain) == live[0]


def test_resume_after_dropped_connections_under_load_has_no_gap_and_no_duplicate(
    server: ServerProcess,
) -> None:
    """While a thread publishes continuously, a client drops its connection five times and
    resumes with since=SEQ:EPOCH: every seq arrives exactly once, in order, and each resume
    says recovered=true."""
    stop = threading.Event()
    published: list[int] = []

    def publisher() -> None:
        with httpx.Client(base_url=server.http, timeout=10) as http:
            for i in range(2000):  # bounded: at most 2000 batches of 20
                if stop.is_set():
                    return
                batch = _txs(20, 10_000 + i * 20)
                response = http.post("/api/v11/streams/transactions/events", json=batch)
                assert response.status_code == 200
                published.extend(response.json()["seqs"])

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        seen: list[int] = []
        replayed_total = 0
        with RawWebSocket(server.port) as first:
            first.open("/ws/transactions?replay=50")
            head = orjson.loads(first.recv_frame().payload)
            epoch = head["position"]["epoch"]
            assert head["recovered"] is True
            for _ in range(300):
                seen.append(orjson.loads(first.recv_frame().payload)["seq"])
        # The socket is closed without a closing handshake: a dropped connection.
        for _ in range(5):
            last = seen[-1]
            with RawWebSocket(server.port) as ws:
                ws.open(f"/ws/transactions?since={last}:{epoch}")
                head = orjson.loads(ws.recv_frame().payload)
                assert head["type"] == "subscribed"
                assert head["recovered"] is True, head
                assert head["position"]["epoch"] == epoch
                replayed_total += head["replayed"]
                for _ in range(head["replayed"] + 200):  # replayed, then live
                    frame = ws.recv_frame()
                    assert frame.opcode == OP_TEXT
                    seen.append(orjson.loads(frame.payload)["seq"])
    finally:
        stop.set()
        thread.join(30)
    assert seen == list(range(seen[0], seen[0] + len(seen))), "a gap or a duplicate"
    assert replayed_total > 0, "nothing was published while disconnected: no load"
    # Past the replay of older messages, everything seen was published under load.
    assert {s for s in seen if s >= published[0]} <= set(published)
    assert seen[-1] >= published[0] + 1000


def _epoch(server: ServerProcess, stream: str) -> tuple[int, str]:
    with connect(server.ws(f"/ws/{stream}?replay=0"), open_timeout=5) as ws:
        head = recv_json(ws)
        return head["position"]["seq"], head["position"]["epoch"]


def test_a_restarted_server_reports_recovered_false(tmp_path: Path) -> None:
    """After a restart the history is gone: since=SEQ:OLD_EPOCH gets recovered=false and no
    replay, then live messages; with snapshot=true it gets the current set instead."""
    with open_server(tmp_path) as first:
        publish(first, "transactions", _txs(10))
        publish(first, "validators", [validator(A)])
        seq, epoch = _epoch(first, "transactions")
        vseq, vepoch = _epoch(first, "validators")
        first.stop()
    assert seq == 10
    with open_server(tmp_path) as second:
        publish(second, "transactions", _txs(12, 50))  # the new history reaches past seq
        publish(second, "validators", [validator(B, "JAILED")])
        with connect(second.ws(f"/ws/transactions?since={seq}:{epoch}"), open_timeout=5) as ws:
            head = recv_json(ws)
            assert head["type"] == "subscribed"
            assert head["recovered"] is False
            assert head["replayed"] == 0
            assert head["position"]["epoch"] != epoch
            live = publish(second, "transactions", _txs(1, 99))
            assert recv_json(ws) == live[0]
        path = f"/ws/validators?since={vseq}&epoch={vepoch}&snapshot=true"
        with connect(second.ws(path), open_timeout=5) as ws:
            head = recv_json(ws)
            assert head["recovered"] is False
            snapshot = recv_json(ws)
            assert snapshot["type"] == "snapshot"
            assert [item["validator"] for item in snapshot["items"]] == [B]


def test_since_past_the_kept_history_is_not_recovered(tmp_path: Path) -> None:
    """since a seq the bounded history no longer holds: recovered=false; within it: true."""
    with open_server(tmp_path, "--history-streams", "transactions=10") as s:
        published = publish(s, "transactions", _txs(30))
        _, epoch = _epoch(s, "transactions")
        with connect(s.ws(f"/ws/transactions?since=5:{epoch}"), open_timeout=5) as ws:
            assert recv_json(ws)["recovered"] is False
        with connect(s.ws(f"/ws/transactions?since=24:{epoch}"), open_timeout=5) as ws:
            head = recv_json(ws)
            assert (head["recovered"], head["replayed"]) == (True, 6)
            assert [recv_json(ws) for _ in range(6)] == published[24:]


def test_snapshots_give_the_current_set_then_changes(server: ServerProcess) -> None:
    """snapshot=true: every validator as last published, the connected peers only, at a
    position after which the changes follow; built from ingested events, not a simulator."""
    v1, v2, v3 = address(0x51), address(0x52), address(0x53)
    publish(server, "validators", [validator(v1), validator(v2), validator(v3)])
    latest_v2 = publish(server, "validators", [validator(v2, "JAILED", 5)])[0]
    publish(server, "network", [peer("s-1"), peer("s-2"), peer("s-3")])
    publish(server, "network", [peer("s-1", False)])
    with (
        connect(server.ws("/ws/validators?snapshot=true"), open_timeout=5) as vws,
        connect(server.ws("/ws"), open_timeout=5) as mux,
    ):
        mux.send(orjson.dumps({"op": "subscribe", "id": "n", "stream": "network", "snapshot": 1}))
        assert recv_json(mux)["error"] == "invalid_snapshot"  # true or false only
        mux.send(
            orjson.dumps({"op": "subscribe", "id": "n", "stream": "network", "snapshot": True})
        )
        head = recv_json(vws)
        assert head["type"] == "subscribed"
        snap = recv_json(vws)
        assert snap["type"] == "snapshot"
        assert snap["position"] == head["position"]
        items = {item["validator"]: item for item in snap["items"]}
        assert {v1, v2, v3} <= set(items)
        assert items[v2] == latest_v2
        nhead, nsnap = recv_json(mux), recv_json(mux)
        assert (nhead["type"], nsnap["type"], nsnap["id"]) == ("subscribed", "snapshot", "n")
        peers = {item["peerId"] for item in nsnap["items"]}
        assert {"s-2", "s-3"} <= peers
        assert "s-1" not in peers
        change = publish(server, "validators", [validator(v3, "INACTIVE")])[0]
        assert change["seq"] == head["position"]["seq"] + 1
        assert recv_json(vws) == change


def _consensus_batch(n: int) -> list[dict[str, Any]]:
    return [consensus(i) for i in range(n)]


def test_latest_wins_gives_a_slow_consensus_client_the_newest_state(tmp_path: Path) -> None:
    """A consensus client with latest=true that stops reading is never closed as slow: it
    skips stale states and ends on the newest one, while a plain client in the same
    position is closed with 4008."""
    with (
        open_server(tmp_path, "--max-buffered-bytes", "65536") as s,
        RawWebSocket(s.port, rcvbuf=4096) as latest,
        RawWebSocket(s.port, rcvbuf=4096) as backlog,
        httpx.Client(base_url=s.http, timeout=30) as http,
    ):
        latest.open("/ws/consensus?latest=true")
        backlog.open("/ws/consensus")
        total = 0
        last = 0
        overflowed = False
        for _ in range(20):  # bounded: at most 20 batches of 2000
            response = http.post("/api/v11/streams/consensus/events", json=_consensus_batch(2000))
            last = response.json()["seqs"][-1]
            total += 2000
            if overflowed:
                break  # one more batch while the latest-wins client is held back
            report = http.get("/api/v11/websocket/stats").json()
            overflowed = report["endpoints"]["consensus"]["slowConsumerDisconnects"] >= 1
        assert overflowed, "the load never filled the socket buffers"
        seqs: list[int] = []
        for _ in range(total):
            frame = latest.recv_frame(timeout=10)
            assert frame.opcode == OP_TEXT, f"latest-wins client got opcode {frame.opcode}"
            seqs.append(orjson.loads(frame.payload)["seq"])
            if seqs[-1] == last:
                break
        assert seqs[-1] == last, "the newest state never arrived"
        assert seqs == sorted(set(seqs)), "out of order or repeated"
        assert len(seqs) < total, "nothing was skipped: it got the whole backlog"
        assert backlog.recv_until(OP_CLOSE, timeout=10).close_code() == 4008
        following = publish(s, "consensus", [consensus(1, "COMMITTED")])[0]
        assert orjson.loads(latest.recv_frame(timeout=5).payload) == following
