"""Nodes sharing a real Redis, and the faults they survive, under a steady publisher.

Every check is exact: a follower's record holds every seq once, in order, or a
``recovered: false`` that announced the gap; everything the server acknowledged
reached the followers. Rates are small (tens of requests per second) and every
wait is bounded, so the tests hold on a loaded machine.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trustme
from websockets.sync.client import connect

from tests.support.faults import Follower, Publisher, check_exactly_once, request_of
from tests.support.opstools import poll
from tests.support.redisserver import RedisServer, redis_server
from tests.support.server import ServerProcess
from tests.support.streamtools import open_server, recv_json, validator


@contextmanager
def node(tmp_path: Path, redis: RedisServer, *args: str) -> Iterator[ServerProcess]:
    """A quiet server on ``redis``, its log in a folder of its own under ``tmp_path``."""
    directory = tmp_path / f"node-{next(_NODES)}"
    directory.mkdir()
    with open_server(
        directory, "--broker-url", redis.url, "--history-size", "20000", "--retry-after", "1", *args
    ) as server:
        yield server


_NODES = itertools.count()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, with an append-only file: the test restarts or pauses it."""
    with redis_server(tmp_path, aof=True) as server:
        yield server


def ready(server: ServerProcess) -> int:
    try:
        return httpx.get(f"{server.http}/q/health/ready", timeout=5).status_code
    except httpx.TransportError:
        return 0


def ws_base(server: ServerProcess) -> str:
    return f"ws://{server.host}:{server.port}"


def test_two_nodes_share_one_order_and_a_client_resumes_on_either(
    tmp_path: Path, redis: RedisServer
) -> None:
    """Two publishers, one per node, and a follower whose connection is dropped twice and
    resumes on the other node each time: every seq once, in order, nothing announced, and
    everything either node acknowledged received."""
    redis.flushall()
    with (
        node(tmp_path, redis) as a,
        node(tmp_path, redis) as b,
    ):
        follower = Follower([ws_base(a), ws_base(b)])
        follower.start()
        poll(lambda: follower.heads() or None, what="the follower subscribed")
        one, two = Publisher([a.http], rate=30, tag=1), Publisher([b.http], rate=30, tag=2)
        one.start()
        two.start()
        try:
            for _ in range(2):
                one.wait_acked(15)
                follower.ws.close()  # dropped: it resumes on the other node
                poll(lambda: follower.record.connects >= 2 or None, what="a reconnect")
            one.wait_acked(10)
        finally:
            one.stop()
            two.stop()
        follower.wait_for_seq(max(one.acked + two.acked))
        follower.stop()
    assert check_exactly_once(follower) == []
    assert follower.record.connects == 3
    assert sorted(one.acked + two.acked) == list(range(1, len(one.acked + two.acked) + 1))
    assert set(one.acked + two.acked) <= set(follower.seqs())
    assert all(h["recovered"] for h in follower.heads())


def test_a_node_started_later_serves_the_current_snapshot(
    tmp_path: Path, redis: RedisServer
) -> None:
    """Validators published through one node; a node started afterwards answers
    snapshot=true with the same set, from Redis."""
    redis.flushall()
    v1, v2 = "0x" + "51" * 20, "0x" + "52" * 20
    with node(tmp_path, redis) as a:
        for body in ([validator(v1), validator(v2)], [validator(v1, "JAILED")]):
            assert httpx.post(f"{a.http}/api/v11/streams/validators/events", json=body).is_success
        with (
            node(tmp_path, redis) as b,
            connect(f"{ws_base(b)}/ws/validators?snapshot=true", open_timeout=5) as ws,
        ):
            head, snapshot = recv_json(ws), recv_json(ws)
            assert head["position"]["seq"] == 3
            assert [(i["validator"], i["status"], i["seq"]) for i in snapshot["items"]] == [
                (v2, "ACTIVE", 2),
                (v1, "JAILED", 3),
            ]


def test_a_node_killed_with_sigkill_its_clients_resume_on_the_survivor(
    tmp_path: Path, redis: RedisServer
) -> None:
    """kill -9 of the node a follower is on: it reconnects to the other node, resumes with
    since, and has every seq exactly once; the publisher fails over too."""
    redis.flushall()
    with (
        node(tmp_path, redis) as a,
        node(tmp_path, redis) as b,
    ):
        follower = Follower([ws_base(a), ws_base(b)])
        follower.start()
        poll(lambda: follower.heads() or None, what="the follower subscribed")
        publisher = Publisher([a.http, b.http], rate=40)
        publisher.start()
        try:
            publisher.wait_acked(20)
            a.stop(signal.SIGKILL)
            publisher.wait_acked(20)
        finally:
            publisher.stop()
        follower.wait_for_seq(max(publisher.acked))
        follower.stop()
    assert check_exactly_once(follower) == []
    assert follower.record.connects == 2
    assert set(publisher.acked) <= set(follower.seqs())


def test_redis_restarted_with_aof_nothing_is_missed_and_ready_goes_down_then_up(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """Redis crashes and comes back from its append-only file: readiness goes DOWN then UP,
    the epoch is the same, subscribers stayed connected, and got every acknowledged seq."""
    with node(tmp_path, own_redis) as server:
        follower = Follower([ws_base(server)])
        follower.start()
        poll(lambda: follower.heads() or None, what="the follower subscribed")
        epoch = follower.heads()[0]["position"]["epoch"]
        publisher = Publisher([server.http], rate=40)
        publisher.start()
        try:
            publisher.wait_acked(20)
            own_redis.stop(signal.SIGKILL)
            poll(lambda: ready(server) == 503 or None, timeout=5, what="ready DOWN")
            own_redis.start()
            poll(lambda: ready(server) == 200 or None, timeout=10, what="ready UP")
            publisher.wait_acked(20)
        finally:
            publisher.stop()
        follower.wait_for_seq(max(publisher.acked))
        follower.stop()
    assert check_exactly_once(follower) == []
    assert follower.record.connects == 1, follower.record
    assert set(publisher.acked) <= set(follower.seqs())
    with own_redis.client() as client:
        assert client.hget("aurigraph:{transactions}:meta", "epoch") == epoch.encode()


def test_redis_restarted_without_persistence_a_new_epoch_is_announced(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Redis restarts empty: connected subscribers are told recovered=false with the new
    epoch, then get seq 1, 2, ... contiguously; a client resuming from the old epoch is
    told recovered=false too."""
    with (
        redis_server(tmp_path_factory.mktemp("volatile"), aof=False) as volatile,
        node(tmp_path, volatile) as server,
    ):
        follower = Follower([ws_base(server)])
        follower.start()
        poll(lambda: follower.heads() or None, what="the follower subscribed")
        old_epoch = follower.heads()[0]["position"]["epoch"]
        publisher = Publisher([server.http], rate=40)
        publisher.start()
        try:
            publisher.wait_acked(20)
            last_old = max(publisher.acked)
            volatile.restart()
            publisher.wait_acked(30)
        finally:
            publisher.stop()
        # The last seq acknowledged is of the new epoch (30 were, after the restart).
        last_new = publisher.acked[-1]
        poll(
            lambda: (follower.after_announced() or [0])[-1] == last_new or None,
            timeout=20,
            what=f"the new epoch announced and delivered up to {last_new}",
        )
        follower.stop()
        with connect(
            f"{ws_base(server)}/ws/transactions?since={last_old}:{old_epoch}", open_timeout=5
        ) as ws:
            resumed = recv_json(ws)
    announced = [h for h in follower.heads() if not h["recovered"]]
    assert check_exactly_once(follower) == announced
    new_epoch = announced[-1]["position"]["epoch"]
    assert new_epoch != old_epoch
    assert announced[-1]["position"]["seq"] == 0
    # After the announcement: the new epoch from seq 1, up to the last acknowledged.
    assert follower.after_announced() == list(range(1, last_new + 1))
    assert (resumed["recovered"], resumed["position"]["epoch"]) == (False, new_epoch)


def test_redis_unreachable_for_10_seconds(tmp_path: Path, own_redis: RedisServer) -> None:
    """Redis hangs (SIGSTOP) for 10 s under batches of 5: ingest answers 503 with
    Retry-After, readiness is DOWN within 2 s, subscribers stay connected, no request is
    broadcast in part, and everything acknowledged is received."""
    with node(tmp_path, own_redis) as server:
        follower = Follower([ws_base(server)])
        follower.start()
        poll(lambda: follower.heads() or None, what="the follower subscribed")
        publisher = Publisher([server.http], rate=20, batch=5)
        publisher.start()
        try:
            publisher.wait_acked(30)
            own_redis.pause()
            paused_at = time.monotonic()
            poll(lambda: ready(server) == 503 or None, timeout=5, what="ready DOWN")
            down_after = time.monotonic() - paused_at
            time.sleep(10 - (time.monotonic() - paused_at))  # the outage itself, 10 s
            own_redis.resume()
            poll(lambda: ready(server) == 200 or None, timeout=10, what="ready UP")
            publisher.wait_acked(30)
        finally:
            own_redis.resume()
            publisher.stop()
        # Requests that timed out (503) while Redis hung may still have been run by Redis
        # after SIGCONT: their events are stored and follow. Wait for the stored head.
        with own_redis.client() as client:
            stored = int(client.hget("aurigraph:{transactions}:meta", "seq") or 0)
        assert stored >= max(publisher.acked)
        follower.wait_for_seq(stored)
        follower.stop()
    assert down_after < 2.0, down_after
    assert publisher.statuses.get(503, 0) > 0, publisher.statuses
    assert publisher.retry_after == {"1"}
    assert check_exactly_once(follower) == []
    assert follower.record.connects == 1, follower.record
    assert set(publisher.acked) <= set(follower.seqs())
    # No request half broadcast: each request's events arrived all (5) or not at all.
    per_request: dict[int, int] = {}
    for hash_ in follower.hashes:
        _, request = request_of(hash_)
        per_request[request] = per_request.get(request, 0) + 1
    assert set(per_request.values()) == {5}, per_request


def test_a_tls_redis_with_a_password(tmp_path: Path) -> None:
    """rediss:// with a password in the URL: the node publishes and delivers through it,
    and the password appears in no line of its log."""
    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    files = (tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    issued.cert_chain_pems[0].write_to_path(str(files[0]))
    issued.private_key_pem.write_to_path(str(files[1]))
    ca.cert_pem.write_to_path(str(files[2]))
    password = "correct-horse-battery-staple"
    with (
        redis_server(tmp_path, password=password, tls=files) as secured,
        node(tmp_path, secured) as server,
        connect(f"{ws_base(server)}/ws/transactions?replay=0", open_timeout=5) as ws,
    ):
        assert secured.url.startswith("rediss://:")
        assert recv_json(ws)["type"] == "subscribed"
        publisher = Publisher([server.http], rate=50)
        publisher.start()
        try:
            publisher.wait_acked(5)
        finally:
            publisher.stop()
        assert [recv_json(ws)["seq"] for _ in publisher.acked] == publisher.acked
        assert ready(server) == 200
        log = server.log()
    assert "rediss://:[redacted]@localhost" in log
    assert password not in log
