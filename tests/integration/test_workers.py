"""``--workers N``: processes on one port (SO_REUSEPORT) fed by a real Redis; one simulator
and one sampler per cluster; the node's figures summed; a killed worker replaced and its
clients resumed; SIGTERM draining every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.faults import Follower, Publisher, check_exactly_once
from tests.support.opstools import poll, sample, scrape
from tests.support.redisserver import RedisServer
from tests.support.server import ROOT, ServerProcess, run_server
from tests.support.streamtools import OPEN_ARGS


def workers_of(server: ServerProcess) -> list[psutil.Process]:
    """The worker processes of a server started with --workers (not multiprocessing's
    resource tracker)."""
    workers = []
    for child in psutil.Process(server.proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(
                child.cmdline()
            ):
                workers.append(child)
        except psutil.Error:  # gone, or not yet reaped
            continue
    return workers


@pytest.fixture
def cluster(tmp_path: Path, redis: RedisServer) -> Iterator[ServerProcess]:
    """Two workers on a clean Redis, no simulator, a fast metrics sampler."""
    redis.flushall()
    args = (*OPEN_ARGS, "--workers", "2", "--broker-url", redis.url, "--shutdown-delay", "0.5")
    with run_server(*args, "--metrics-interval", "0.2", tmp_path=tmp_path) as server:
        poll(lambda: listening(server) == 2 or None, timeout=30, what="two workers listening")
        yield server


def listening(server: ServerProcess) -> int:
    """How many workers listen on the server's port."""
    count = 0
    for worker in workers_of(server):
        try:
            sockets = worker.net_connections(kind="tcp")
        except psutil.Error:
            continue
        count += any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in sockets
        )
    return count


def test_more_than_one_worker_on_the_memory_broker_is_refused(tmp_path: Path) -> None:
    """--workers 2 with memory:// stops at start, saying what to use instead."""
    result = subprocess.run(
        [sys.executable, "-m", "aurigraph_stream", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")},
    )
    assert result.returncode == 2
    assert "use --broker-url redis://" in result.stderr


def test_the_node_reports_every_workers_connections_and_one_sampler_runs(
    cluster: ServerProcess,
) -> None:
    """Twenty connections spread over two workers: whichever worker answers, stats and
    /q/metrics count all twenty; /ws/metrics gets one message per interval, not two."""
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(connect(cluster.ws("/ws/consensus"), open_timeout=5))
            for _ in range(20)
        ]

        def counted() -> bool | None:
            for _ in range(4):  # several requests: both workers answer some
                stats = httpx.get(f"{cluster.http}/api/v11/websocket/stats", timeout=5).json()
                if stats["connections"] != 20 or stats["endpoints"]["consensus"]["connects"] != 20:
                    return None
            return True

        poll(counted, timeout=10, what="stats counting all 20 connections")

        def scraped() -> bool | None:
            for _ in range(4):
                open_now = sample(
                    scrape(cluster), "aurigraph_websocket_connections_total", endpoint="consensus"
                )
                if open_now != 20:
                    return None
            return True

        # The other worker's part is at most two exchanges old (ops/workers.py).
        poll(scraped, timeout=10, what="/q/metrics counting all 20 connections")
        # SO_REUSEPORT spread them: each worker holds some of the twenty.
        held = [
            sum(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == cluster.port
                for c in worker.net_connections(kind="tcp")
            )
            for worker in workers_of(cluster)
        ]
        assert sum(held) == 20
        assert min(held) > 0, held
        assert len(sockets) == 20
    with connect(cluster.ws("/ws/metrics"), open_timeout=5) as ws:
        began = time.monotonic()
        seqs = [orjson.loads(ws.recv(timeout=5))["seq"] for _ in range(10)]
        elapsed = time.monotonic() - began
    assert seqs == list(range(seqs[0], seqs[0] + 10))
    # One sampler at 0.2 s: ten messages take about 1.8 s; two samplers would take half.
    assert elapsed > 1.2, elapsed


def test_a_killed_worker_is_replaced_and_its_clients_resume_on_any_worker(
    cluster: ServerProcess,
) -> None:
    """kill -9 of one worker under a steady publisher: the parent starts another, the
    clients that were on it reconnect (to whichever worker the kernel picks) and resume:
    every seq exactly once."""
    base = f"ws://{cluster.host}:{cluster.port}"
    followers = [Follower([base]) for _ in range(6)]
    for follower in followers:
        follower.start()
    poll(lambda: all(f.heads() for f in followers) or None, what="followers subscribed")
    publisher = Publisher([cluster.http], rate=40)
    publisher.start()
    try:
        publisher.wait_acked(20)
        # The worker holding the most of the followers' connections (SO_REUSEPORT may put
        # them all on one): killing it must cut some of them.
        victim = max(workers_of(cluster), key=lambda w: _established(w, cluster.port))
        assert _established(victim, cluster.port) > 0
        victim.kill()
        poll(
            lambda: (
                (
                    len(workers_of(cluster)) == 2
                    and victim.pid not in {p.pid for p in workers_of(cluster)}
                )
                or None
            ),
            timeout=15,
            what="a replacement worker",
        )
        publisher.wait_acked(30)
    finally:
        publisher.stop()
    for follower in followers:
        follower.wait_for_seq(max(publisher.acked))
        follower.stop()
        assert check_exactly_once(follower) == []
        assert set(publisher.acked) <= set(follower.seqs())
    assert any(f.record.connects > 1 for f in followers), "no client was on the killed worker"
    assert "worker died; replacing it" in cluster.log()


def _established(worker: psutil.Process, port: int) -> int:
    """Client connections a worker holds on ``port``."""
    try:
        sockets = worker.net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in sockets)


def _close_code(ws: ClientConnection) -> int | None:
    try:
        for _ in range(1000):
            ws.recv(timeout=10)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    return None


def test_sigterm_to_the_parent_drains_every_worker(cluster: ServerProcess) -> None:
    """SIGTERM to the parent: readiness goes DOWN while the connections are still open,
    then every client of every worker gets 1001, and the parent exits 0."""
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(connect(cluster.ws("/ws/network"), open_timeout=5))
            for _ in range(8)
        ]
        poll(
            lambda: (
                httpx.get(f"{cluster.http}/api/v11/websocket/stats").json()["connections"] == 8
                or None
            ),
            what="8 connections counted",
        )
        cluster.proc.send_signal(signal.SIGTERM)
        poll(
            lambda: httpx.get(f"{cluster.http}/q/health/ready").status_code == 503 or None,
            timeout=5,
            what="ready DOWN while draining",
        )
        codes = [_close_code(ws) for ws in sockets]
        assert cluster.proc.wait(30) == 0
        cluster.stopped = True
    assert codes == [1001] * 8
