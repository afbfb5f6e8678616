"""The Python SDK never loses a message silently: 2,000 events, five dropped connections.

A publisher thread sends 2,000 transactions through the ingest API at a steady
rate. The SDK reaches the server through a TCP proxy (tests/support/tcpproxy.py)
while the test breaks its connection five times:

1. the network drops it (the proxy aborts it: 1006);
2. the client stops reading (the proxy stalls its next connection) until the
   server closes it as a slow consumer (4008);
3. the network drops it again;
4. the server restarts (SIGTERM, 1001; same port);
5. the network drops it once more.

With the memory broker the restart loses the history, so the application must
see every seq exactly once, in order, except across the restart, where it gets
one Gap naming both epochs, and then every seq after the position the gap gives.
With the Redis broker the server is a node of a cluster: its history outlives it,
so the application sees every seq exactly once and no gap at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from aurigraph_stream_client import Client, ConnectionEvent, Disconnected, Gap
from tests.support.redisserver import redis_server
from tests.support.server import ServerProcess, free_port, run_server
from tests.support.streamtools import OPEN_ARGS, address, tx
from tests.support.tcpproxy import TcpProxy, tcp_proxy

TOTAL = 2000
BATCH = 5
PERIOD = 0.04  # one batch every 40 ms: 125 events per second
A, B = address(0xA1), address(0xB2)
SERVER_ARGS = (
    *OPEN_ARGS,
    "--history-size",
    "10000",
    # Small enough that a stalled reader trips it soon, large enough for a resume's replay.
    "--max-buffered-bytes",
    "49152",
    "--close-timeout",
    "30",
)


class Publisher(threading.Thread):
    """Publishes TOTAL events in batches at a steady rate; retries a batch the server missed.

    ``hold()`` stops it between batches (for the restart); ``runs[g]`` lists the seqs
    server run ``g`` assigned.
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/api/v11/streams/transactions/events"
        self.sent = 0
        self.generation = 1
        self.runs: dict[int, list[int]] = {1: [], 2: []}
        self.allowed = threading.Event()
        self.allowed.set()
        self.idle = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def hold(self, timeout: float = 10.0) -> None:
        self.allowed.clear()
        if not self.idle.wait(timeout):
            raise AssertionError("the publisher did not stop")

    def release(self) -> None:
        self.idle.clear()
        self.allowed.set()

    def run(self) -> None:
        try:
            self._publish()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _publish(self) -> None:
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=5) as http:
            while self.sent < TOTAL and not self.stop.is_set():
                if not self.allowed.is_set():
                    self.idle.set()
                    self.allowed.wait(30)
                    continue
                start = time.monotonic()
                batch = [tx(self.sent + i, A, B, str(i + 1)) for i in range(BATCH)]
                try:
                    response = http.post(self.url, json=batch)
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    self.runs[self.generation] += response.json()["seqs"]
                    self.sent += BATCH
                if time.monotonic() > deadline:
                    raise AssertionError(f"publishing took over 120 s ({self.sent} sent)")
                time.sleep(max(0.0, PERIOD - (time.monotonic() - start)))
        self.idle.set()


def slow_disconnects(server: ServerProcess) -> int:
    stats = httpx.get(f"{server.http}/api/v11/websocket/stats", timeout=5).json()
    return int(stats["endpoints"]["ws"]["slowConsumerDisconnects"])


async def until(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Poll (bounded) until ``predicate()`` holds."""
    deadline = time.monotonic() + within
    for _ in range(100_000):
        if predicate():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


def five_drops(
    tmp_path: Path, server_args: tuple[str, ...], *, history_survives: bool
) -> tuple[list[dict[str, Any] | Gap], list[ConnectionEvent], Publisher]:
    """Run the five drops against a server started with ``server_args``: what the
    application received, the SDK's connection events, and the publisher's seqs.

    ``history_survives``: whether the restarted server still has the history (a
    cluster's node), so that the SDK resumes without a gap."""
    port = free_port()
    received: list[dict[str, Any] | Gap] = []
    events: list[ConnectionEvent] = []
    publisher = Publisher(port)
    servers: list[ServerProcess] = []

    async def consume(client: Client) -> None:
        async for item in client.subscribe("transactions", address=A):
            assert not isinstance(item, dict) or "seq" in item
            received.append(item)  # type: ignore[arg-type]

    def seen_after_restart() -> list[int]:
        """The seqs received after the restart's gap, or all of them where it left none."""
        after = [i for i, item in enumerate(received) if isinstance(item, Gap)]
        tail = received[after[0] + 1 :] if after else received
        return [m["seq"] for m in tail if isinstance(m, dict)]

    async def drop(proxy: TcpProxy, progress: int) -> None:
        """Once ``progress`` events are out, abort the connection; wait for the reconnect."""
        await until(lambda: publisher.sent >= progress, f"{progress} events published")
        connections = proxy.connections
        proxy.cut()
        await until(lambda: proxy.connections > connections, f"a reconnect after {progress}")

    async def scenario(proxy: TcpProxy) -> None:
        # 1. the network drops the connection
        await drop(proxy, 300)
        # 2. the client stops reading (from its next connection on) until the server
        #    closes it as a slow consumer
        await until(lambda: publisher.sent >= 500, "500 events published")
        before = slow_disconnects(servers[0])
        proxy.stall_next()
        await drop(proxy, 500)
        await until(
            lambda: slow_disconnects(servers[0]) > before, "the server closing it with 4008"
        )
        proxy.resume()
        await until(
            lambda: any(isinstance(e, Disconnected) and e.code == 4008 for e in events),
            "the SDK seeing 4008",
        )
        # 3. the network drops it again
        await drop(proxy, 1000)
        # 4. the server restarts on the same port and forgets its history
        await until(lambda: publisher.sent >= 1300, "1300 events published")
        await asyncio.to_thread(publisher.hold)
        await asyncio.to_thread(servers[0].stop)
        servers.append(await asyncio.to_thread(stack.enter_context, restart()))
        publisher.generation = 2
        publisher.release()
        if history_survives:
            await until(
                lambda: bool(publisher.runs[2]) and publisher.runs[2][0] in seen_after_restart(),
                "the first event published after the restart",
            )
        else:
            await until(lambda: any(isinstance(i, Gap) for i in received), "a gap")
        # 5. and the network drops it once more
        await drop(proxy, 1700)
        await until(lambda: publisher.sent >= TOTAL, "every event published", 90)
        last = publisher.runs[2][-1]
        await until(lambda: last in seen_after_restart(), "the last event received", 30)

    def restart() -> Any:
        return run_server(*server_args, tmp_path=tmp_path, port=port)

    async def main() -> None:
        async with tcp_proxy(port) as proxy:
            # Uncompressed: a stalled reader falls behind by the cap sooner.
            client = Client(
                f"ws://127.0.0.1:{proxy.port}", on_event=events.append, compression=False
            )
            async with client:
                reader = asyncio.ensure_future(consume(client))
                await client.wait_connected()
                publisher.start()
                try:
                    await scenario(proxy)
                finally:
                    publisher.stop.set()
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader

    with contextlib.ExitStack() as stack:
        servers.append(stack.enter_context(run_server(*server_args, tmp_path=tmp_path, port=port)))
        try:
            asyncio.run(main())
        finally:
            publisher.stop.set()
            publisher.allowed.set()
            publisher.join(10)
    assert publisher.error is None, publisher.error
    return received, events, publisher


def assert_five_drops_seen(events: list[ConnectionEvent]) -> None:
    """Five drops, each seen by the SDK: the cuts (1006), 4008, the restart (1001)."""
    codes = [e.code for e in events if isinstance(e, Disconnected) and e.code >= 1000]
    assert 4008 in codes
    assert 1001 in codes
    assert codes.count(1006) >= 3
    assert len([c for c in codes if c in (1001, 1006, 4008)]) >= 5
    assert all(e.retry_in is not None for e in events if isinstance(e, Disconnected))


def test_every_seq_exactly_once_across_five_drops_and_a_gap_for_the_restart(
    tmp_path: Path,
) -> None:
    received, events, publisher = five_drops(tmp_path, SERVER_ARGS, history_survives=False)
    assert_five_drops_seen(events)
    # One gap, for the restart; before it run 1's seqs, after it run 2's.
    gaps = [i for i, item in enumerate(received) if isinstance(item, Gap)]
    assert len(gaps) == 1, [received[i] for i in gaps]
    gap = received[gaps[0]]
    assert isinstance(gap, Gap)
    run1 = [m["seq"] for m in received[: gaps[0]] if isinstance(m, dict)]
    run2 = [m["seq"] for m in received[gaps[0] + 1 :] if isinstance(m, dict)]
    assert gap.old_epoch is not None
    assert gap.old_epoch != gap.new_epoch
    assert gap.missed is None  # across epochs nobody can count
    # Run 1: every seq from the first, exactly once, in order, up to the gap's last_seq.
    assert run1 == list(range(1, len(run1) + 1))
    assert gap.last_seq == run1[-1]
    assert set(run1) <= set(publisher.runs[1])
    # Run 2: every seq after the gap's position, exactly once, to the last one published.
    assert run2 == list(range(gap.resume_seq + 1, publisher.runs[2][-1] + 1))
    assert publisher.runs[2] == list(range(1, len(publisher.runs[2]) + 1))
    assert len(publisher.runs[1]) + len(publisher.runs[2]) == TOTAL


def test_every_seq_exactly_once_across_five_drops_and_a_cluster_node_restart(
    tmp_path: Path,
) -> None:
    """The same drops against a node of a cluster (the Redis broker): the restart
    loses nothing, so there is no gap, and every seq arrives exactly once, in order."""
    with redis_server(tmp_path) as redis:
        received, events, publisher = five_drops(
            tmp_path, (*SERVER_ARGS, "--broker-url", redis.url), history_survives=True
        )
    assert_five_drops_seen(events)
    assert not [item for item in received if isinstance(item, Gap)]
    seqs = [m["seq"] for m in received if isinstance(m, dict)]
    # One order across the restart: the node that came back went on from Redis.
    assert publisher.runs[1] + publisher.runs[2] == list(range(1, TOTAL + 1))
    assert seqs == list(range(1, TOTAL + 1))
