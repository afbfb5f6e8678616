"""What only a shared broker does, against a real redis-server: one order for several
brokers, refusing publishes while Redis is away, new epochs when Redis loses a stream or
some of its last writes, and announcing what a reader could not deliver instead of
leaving a gap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aurigraph_stream.broker.base import BrokerUnavailable
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.broker.redis import POOL_SIZE, RedisBroker, stream_keys
from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from tests.contract.test_broker import Received, msgs, run
from tests.support.redisserver import RedisServer, redis_server

POLICIES = {"a": HistoryPolicy(5), "b": HistoryPolicy(1000), "network": HistoryPolicy(100)}


class Resets:
    """The on_reset handler: keeps every (stream, position, items) it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Position, list[dict[str, Any]] | None]] = []

    def __call__(self, stream: str, position: Position, items: list[dict[str, Any]] | None) -> None:
        self.calls.append((stream, position, items))

    def of(self, stream: str) -> list[Position]:
        return [position for name, position, _ in self.calls if name == stream]

    async def wait_for(self, stream: str, count: int, within: float = 10.0) -> None:
        for _ in range(int(within / 0.01) + 1):
            if len(self.of(stream)) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.of(stream))} of {count} resets of {stream}")


async def started(server: RedisServer) -> tuple[RedisBroker, Received, Resets]:
    broker = RedisBroker(server.url, POLICIES)
    received, resets = Received(), Resets()
    await broker.start(received, resets)
    return broker, received, resets


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path, aof=True) as s:
        yield s


def test_two_brokers_on_one_redis_share_one_seq_order(server: RedisServer) -> None:
    """Publishes through two brokers interleave into one contiguous order, and each
    broker's reader delivers all of it, in that order."""

    async def scenario() -> None:
        (one, got_one, _), (two, got_two, _) = await started(server), await started(server)
        results = await asyncio.gather(
            *((one if i % 2 else two).publish("b", msgs(7, batch=i, node=i % 2)) for i in range(20))
        )
        seqs = sorted(s for batch in results for s in batch)
        assert seqs == list(range(1, 141))
        for batch in results:
            assert batch == list(range(batch[0], batch[0] + 7))
        await got_one.wait_for(140)
        await got_two.wait_for(140)
        assert got_one.seqs("b") == got_two.seqs("b") == list(range(1, 141))
        # The same message under the same seq, whichever node took the publish.
        assert [e.data for e in got_one.events] == [e.data for e in got_two.events]
        await one.close()
        await two.close()

    run(scenario)


def test_publishing_while_redis_is_down_is_refused_and_nothing_is_stored(
    server: RedisServer,
) -> None:
    """With Redis gone, publish raises BrokerUnavailable and ping says False; once it is
    back (AOF: same epoch), the seq order goes on from the last stored event."""

    async def scenario() -> None:
        broker, received, resets = await started(server)
        assert await broker.publish("b", msgs(3)) == [1, 2, 3]
        epoch = (await broker.history("b", None)).position.epoch
        server.stop()
        with pytest.raises(BrokerUnavailable):
            await broker.publish("b", msgs(2))
        assert await broker.ping() is False
        server.start()
        assert await broker.ping() is True
        assert await broker.publish("b", msgs(1)) == [4]
        read = await broker.history("b", None)
        assert read.position == Position(4, epoch)
        assert [e.seq for e in read.events or ()] == [1, 2, 3, 4]
        await received.wait_for(4)
        assert received.seqs("b") == [1, 2, 3, 4]
        assert resets.of("b") == [Position(0, epoch)]  # only the one at start: no gap
        await broker.close()

    run(scenario)


def test_a_hung_redis_answers_within_the_timeouts(server: RedisServer) -> None:
    """A Redis that accepts connections but answers nothing (SIGSTOP): ping says False
    within a second and a publish fails instead of hanging."""

    async def scenario() -> None:
        broker, _received, _resets = await started(server)
        server.pause()
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert await broker.ping() is False
            assert loop.time() - began < 1.9
            with pytest.raises(BrokerUnavailable):
                await broker.publish("b", msgs(1))
        finally:
            server.resume()
        await broker.close()

    run(scenario)


def test_flushall_starts_a_new_epoch_and_the_reader_announces_it(server: RedisServer) -> None:
    """After FLUSHALL the next publish starts seq 1 under a new epoch; a running reader
    calls on_reset with position 0 of it, then delivers the new epoch from seq 1."""

    async def scenario() -> None:
        broker, received, resets = await started(server)
        await broker.publish("b", msgs(4))
        await received.wait_for(4)
        old = (await broker.history("b", None)).position
        server.flushall()
        assert await broker.publish("b", msgs(2)) == [1, 2]
        await received.wait_for(6)
        new = (await broker.history("b", None)).position
        assert new.epoch != old.epoch
        assert received.seqs("b") == [1, 2, 3, 4, 1, 2]
        await resets.wait_for("b", 2)
        assert resets.of("b")[-1] == Position(0, new.epoch)
        assert broker.delivered("b") == Position(2, new.epoch)
        # A client resuming from the old epoch cannot be served from it.
        assert (await broker.history("b", 4)).position.epoch != old.epoch
        await broker.close()

    run(scenario)


def test_a_restart_with_aof_keeps_the_epoch_and_the_reader_goes_on(server: RedisServer) -> None:
    """Redis crashes and restarts from its append-only file: the epoch is unchanged, no
    reset is announced, and events published after it are delivered in order."""

    async def scenario() -> None:
        broker, received, resets = await started(server)
        await broker.publish("b", msgs(5))
        await received.wait_for(5)
        epoch = broker.delivered("b").epoch
        server.restart()
        seqs: list[int] = []
        for _ in range(100):  # the pool reconnects on the next command
            try:
                seqs = await broker.publish("b", msgs(3))
                break
            except BrokerUnavailable:
                await asyncio.sleep(0.05)
        assert seqs == [6, 7, 8]
        await received.wait_for(8)
        assert received.seqs("b") == list(range(1, 9))
        assert broker.delivered("b") == Position(8, epoch)
        assert len(resets.of("b")) == 1  # the one at start
        await broker.close()

    run(scenario)


def test_events_trimmed_before_the_reader_got_them_are_announced_not_skipped(
    server: RedisServer,
) -> None:
    """Eight events in one publish to a stream that keeps five: the reader finds seq 4
    after seq 0, and says so with a reset at the stream's head instead of a silent gap."""

    async def scenario() -> None:
        broker, received, resets = await started(server)
        await broker.publish("a", msgs(8))
        await resets.wait_for("a", 2)
        assert resets.of("a")[-1].seq == 8
        assert received.seqs("a") == []  # nothing delivered across the gap
        assert await broker.publish("a", msgs(1)) == [9]
        await received.wait_for(1)
        assert received.seqs("a") == [9]
        await broker.close()

    run(scenario)


def test_the_snapshot_set_lives_in_redis_for_nodes_that_start_later(server: RedisServer) -> None:
    """A broker started after the peers connected and left gets the current set with its
    position, from Redis, at start."""

    async def scenario() -> None:
        first, _received, _resets = await started(server)
        await first.publish(
            "network",
            [
                {"peerId": "p1", "connected": True},
                {"peerId": "p2", "connected": True},
                {"peerId": "p1", "connected": False},
                {"peerId": "p3", "connected": True},
            ],
        )
        later, _got, resets = await started(server)
        ((_stream, position, items),) = [c for c in resets.calls if c[0] == "network"]
        assert position.seq == 4
        assert sorted((i["peerId"], i["seq"]) for i in items or ()) == [("p2", 2), ("p3", 4)]
        await first.close()
        await later.close()

    run(scenario)


def test_a_burst_of_reads_shares_a_bounded_pool_of_connections(server: RedisServer) -> None:
    """200 history reads at once (a crowd resuming after a restart) are all answered,
    over at most POOL_SIZE connections: the process does not open one per read and keep
    them all open afterwards."""

    async def scenario() -> None:
        broker, received, _ = await started(server)
        await broker.publish("b", msgs(10))
        await received.wait_for(10)
        reads = await asyncio.gather(*(broker.history("b", 5) for _ in range(200)))
        assert all(
            read.events is not None and [e.seq for e in read.events] == [6, 7, 8, 9, 10]
            for read in reads
        )
        with server.client() as admin:
            clients = admin.client_list()
        # The broker's command pool, its reader, and the admin connection asking.
        assert len(clients) <= POOL_SIZE + 2, len(clients)
        await broker.close()

    run(scenario)


def _roll_back(server: RedisServer, stream: str, to: int) -> None:
    """Redis as it would be had it lost every write of ``stream`` after seq ``to``, its
    epoch kept (an AOF fsynced every second, a replica promoted behind its master)."""
    meta, log, _ = stream_keys(stream)
    with server.client() as client:
        lost = [entry_id for entry_id, fields in client.xrange(log) if int(fields[b"s"]) > to]
        if lost:
            client.xdel(log, *lost)
        client.hset(meta, "seq", to)


def test_redis_numbering_again_below_what_was_delivered_starts_a_new_epoch(
    server: RedisServer,
) -> None:
    """Redis loses seqs 4 and 5 and numbers the next events 4 and 5 again: neither reader
    takes them for the 4 and 5 it delivered; the stream moves to one new epoch, announced
    by both, going on from the stored seq, and delivery continues in it."""

    async def scenario() -> None:
        (one, got_one, resets_one), (two, got_two, resets_two) = (
            await started(server),
            await started(server),
        )
        assert await one.publish("b", msgs(5)) == [1, 2, 3, 4, 5]
        await got_one.wait_for(5)
        await got_two.wait_for(5)
        old = one.delivered("b").epoch
        _roll_back(server, "b", 3)
        assert await one.publish("b", msgs(2, again=True)) == [4, 5]  # seqs given twice
        for _ in range(1000):  # until a reader noticed (bounded: 10 s)
            if len(resets_one.of("b")) > 1 or len(resets_two.of("b")) > 1:
                break
            await asyncio.sleep(0.01)
        # The other reader may have been too late to read the second 4 and 5 (the new
        # epoch dropped them): the next event tells it.
        assert await two.publish("b", msgs(1)) == [6]
        await got_one.wait_for(6)
        await got_two.wait_for(6)
        new = resets_one.of("b")[-1]
        assert new.epoch != old
        assert new == Position(5, new.epoch)
        for broker, got, resets in ((one, got_one, resets_one), (two, got_two, resets_two)):
            assert got.seqs("b") == [1, 2, 3, 4, 5, 6]
            assert not any(e.data.get("again") for e in got.events)  # the first 4 and 5 only
            assert resets.of("b")[1:] == [new]  # one new epoch, announced once
            assert broker.delivered("b") == Position(6, new.epoch)
        read = await one.history("b", None)
        assert read.position == Position(6, new.epoch)
        assert [e.seq for e in read.events or ()] == [6]  # the ambiguous log was dropped
        await one.close()
        await two.close()

    run(scenario)


def test_a_restart_that_lost_acknowledged_events_starts_a_new_epoch(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis comes back from its append-only file with fewer events than were delivered,
    under the same epoch: the reader, reconnecting, finds the stored seq below what it
    delivered and moves the stream to a new epoch before anything is published."""

    async def scenario() -> None:
        broker, received, resets = await started(server)
        await broker.publish("b", msgs(5))
        await received.wait_for(5)
        old = broker.delivered("b").epoch
        _roll_back(server, "b", 3)
        server.stop()
        for _ in range(500):  # until the reader found Redis gone (bounded: 5 s)
            if "broker unreachable" in caplog.text:
                break
            await asyncio.sleep(0.01)
        assert "broker unreachable" in caplog.text
        server.start()
        await resets.wait_for("b", 2)
        new = resets.of("b")[-1]
        assert new.epoch != old
        assert new == Position(3, new.epoch)
        assert await broker.publish("b", msgs(1)) == [4]
        await received.wait_for(6)
        assert received.seqs("b") == [1, 2, 3, 4, 5, 4]  # the second 4 in the new epoch
        assert broker.delivered("b") == Position(4, new.epoch)
        await broker.close()

    caplog.set_level(logging.WARNING, logger="aurigraph_stream.broker")
    run(scenario)


class Failing(Received):
    """A handler that raises once when armed, as a bug past the broker would."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def __call__(self, events: Sequence[Event]) -> None:
        if self.armed:
            self.armed = False
            raise RuntimeError("handler failed")
        super().__call__(events)


def test_a_reader_error_is_logged_announced_and_survived(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An error the reader does not expect is logged, every stream is resynced (announced:
    what was being delivered may be lost) and delivery goes on; readiness is UP while the
    reader runs and DOWN once it is gone."""

    async def scenario() -> None:
        broker = RedisBroker(server.url, POLICIES)
        received, resets = Failing(), Resets()
        await broker.start(received, resets)
        epoch = (await broker.history("b", None)).position.epoch
        received.armed = True
        assert await broker.publish("b", msgs(1)) == [1]
        for stream in POLICIES:
            await resets.wait_for(stream, 2)
        assert resets.of("b")[-1] == Position(1, epoch)
        assert "broker reader failed" in caplog.text
        assert await broker.publish("b", msgs(1)) == [2]
        await received.wait_for(1)
        assert received.seqs("b") == [2]
        assert await broker.ping() is True
        task = broker._task
        assert task is not None
        task.cancel()  # the reader gone, however it went
        await asyncio.wait({task}, timeout=5)
        assert await broker.ping() is False
        await broker.close()

    caplog.set_level(logging.WARNING, logger="aurigraph_stream.broker")
    run(scenario)
