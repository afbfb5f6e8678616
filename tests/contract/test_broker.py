"""The broker contract, run against every broker: order, seq, epoch, history bounds, replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from aurigraph_stream.broker import Broker, BrokerUnavailable
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.event import Event
from tests.contract.conftest import BrokerHarness

POLICIES = {"a": HistoryPolicy(5), "b": HistoryPolicy(100)}


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


class Received:
    """The handler a broker is started with: keeps every event, in delivery order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def seqs(self, stream: str) -> list[int]:
        return [e.seq for e in self.events if e.stream == stream]

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        """Until ``count`` events arrived (a networked broker delivers asynchronously)."""
        deadline = time.monotonic() + within
        for _ in range(int(within / 0.005) + 1):
            if len(self.events) >= count or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        assert len(self.events) >= count, f"{len(self.events)} of {count} events delivered"


def msgs(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"n": i, **extra} for i in range(n)]


async def started(
    harness: BrokerHarness, policies: Mapping[str, HistoryPolicy] = POLICIES
) -> tuple[Broker, Received]:
    broker = harness.new(policies)
    received = Received()
    await broker.start(received)
    return broker, received


def test_seq_is_contiguous_per_stream_and_returned(harness: BrokerHarness) -> None:
    """Each publish gets the next seqs of its stream, in order; streams count separately."""

    async def scenario() -> None:
        broker, received = await started(harness)
        assert await broker.publish("a", msgs(3)) == [1, 2, 3]
        assert await broker.publish("b", msgs(2)) == [1, 2]
        assert await broker.publish("a", msgs(1)) == [4]
        await received.wait_for(6)
        assert received.seqs("a") == [1, 2, 3, 4]
        assert received.seqs("b") == [1, 2]
        await broker.close()

    run(scenario)


def test_delivered_events_carry_their_seq_and_message(harness: BrokerHarness) -> None:
    """What the handler gets is the message with its seq added, and the call's order kept."""

    async def scenario() -> None:
        broker, received = await started(harness)
        await broker.publish("b", [{"k": "x"}, {"k": "y", "nested": {"z": [1, 2]}}])
        await received.wait_for(2)
        assert [e.data for e in received.events] == [
            {"k": "x", "seq": 1},
            {"k": "y", "nested": {"z": [1, 2]}, "seq": 2},
        ]
        assert all(e.stream == "b" for e in received.events)
        await broker.close()

    run(scenario)


def test_concurrent_publishes_never_interleave_a_batch(harness: BrokerHarness) -> None:
    """Messages of one call stay together and in order, whatever runs beside them."""

    async def scenario() -> None:
        broker, received = await started(harness)
        batches = [msgs(10, batch=b) for b in range(8)]
        results = await asyncio.gather(*(broker.publish("b", batch) for batch in batches))
        await received.wait_for(80)
        for seqs in results:
            assert seqs == list(range(seqs[0], seqs[0] + 10))
        assert sorted(s for seqs in results for s in seqs) == list(range(1, 81))
        assert received.seqs("b") == list(range(1, 81))
        await broker.close()

    run(scenario)


def test_history_keeps_the_last_size_events(harness: BrokerHarness) -> None:
    """A stream keeps its newest ``size`` events; the position is the newest seq."""

    async def scenario() -> None:
        broker, _received = await started(harness)
        await broker.publish("a", msgs(8))
        read = await broker.history("a", None)
        assert [e.seq for e in read.events or ()] == [4, 5, 6, 7, 8]
        assert read.position.seq == 8
        assert read.first_seq == 4
        await broker.close()

    run(scenario)


def test_history_drops_events_older_than_max_age(harness: BrokerHarness) -> None:
    """With max_age, events older than it leave the history; the position stays."""

    async def scenario() -> None:
        broker, _received = await started(harness, {"a": HistoryPolicy(100, 0.2)})
        await broker.publish("a", msgs(2))
        read = await broker.history("a", None)
        assert [e.seq for e in read.events or ()] == [1, 2]
        # Bounded wait for the age to pass (the broker's clock, not ours, decides).
        for _ in range(200):
            read = await broker.history("a", None)
            if not read.events:
                break
            await asyncio.sleep(0.01)
        assert read.events == []
        assert read.position.seq == 2
        assert read.first_seq == 3
        await broker.publish("a", msgs(1))
        assert [e.seq for e in (await broker.history("a", None)).events or ()] == [3]
        await broker.close()

    run(scenario)


async def _aged_out(broker: Broker, stream: str) -> None:
    """Until the age bound has emptied ``stream``'s history (bounded; the broker's clock)."""
    for _ in range(200):
        if not (await broker.history(stream, None)).events:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the history of {stream} still holds events")


def test_a_resume_into_a_history_the_age_emptied_is_not_recovered(
    harness: BrokerHarness,
) -> None:
    """An idle stream whose events all aged out: since=1 cannot be served (None, not an
    empty list that would pass for caught up); since at the head is caught up."""

    async def scenario() -> None:
        broker, _received = await started(harness, {"a": HistoryPolicy(100, 0.2)})
        await broker.publish("a", msgs(2))
        assert [e.seq for e in (await broker.history("a", 1)).events or ()] == [2]
        await _aged_out(broker, "a")
        read = await broker.history("a", 1)
        assert read.events is None
        assert read.position.seq == 2
        assert (await broker.history("a", 2)).events == []
        await broker.close()

    run(scenario)


def test_the_newest_events_without_reading_the_rest(harness: BrokerHarness) -> None:
    """newest=N (replay=N with no filter): the last N kept, oldest first; first_seq is still
    the oldest kept, so a replay can tell whether the history reached back far enough."""

    async def scenario() -> None:
        broker, _received = await started(harness)
        await broker.publish("a", msgs(8))  # keeps 4..8
        for newest, seqs in ((3, [6, 7, 8]), (5, [4, 5, 6, 7, 8]), (50, [4, 5, 6, 7, 8]), (0, [])):
            read = await broker.history("a", None, newest)
            assert [e.seq for e in read.events or ()] == seqs, newest
            assert (read.position.seq, read.first_seq) == (8, 4)
        await broker.close()

    run(scenario)


def test_replay_from_a_position(harness: BrokerHarness) -> None:
    """since=N reads exactly the events after N; caught up is empty; lost is None."""

    async def scenario() -> None:
        broker, _received = await started(harness)
        await broker.publish("a", msgs(8))  # keeps 4..8
        assert [e.seq for e in (await broker.history("a", 5)).events or ()] == [6, 7, 8]
        assert [e.seq for e in (await broker.history("a", 3)).events or ()] == [4, 5, 6, 7, 8]
        assert (await broker.history("a", 8)).events == []
        assert (await broker.history("a", 2)).events is None  # 3 is no longer kept
        await broker.close()

    run(scenario)


def test_the_epoch_is_stable_while_history_lives(harness: BrokerHarness) -> None:
    """Publishing does not change the epoch; another broker on the same store sees it."""

    async def scenario() -> None:
        broker, _received = await started(harness)
        before = (await broker.history("a", None)).position.epoch
        await broker.publish("a", msgs(3))
        after = (await broker.history("a", None)).position
        assert after.epoch == before
        assert after.seq == 3
        await broker.close()

    run(scenario)


def test_the_epoch_changes_when_history_is_lost(harness: BrokerHarness) -> None:
    """After the store lost its streams, seq starts again under a new epoch: a client
    resuming from the old epoch can tell it cannot recover."""

    async def scenario() -> None:
        broker, _received = await started(harness)
        await broker.publish("a", msgs(3))
        old = (await broker.history("a", None)).position
        await broker.close()
        await harness.lose_history()
        broker, _received = await started(harness)
        assert await broker.publish("a", msgs(1)) == [1]
        new = (await broker.history("a", None)).position
        assert new.epoch != old.epoch
        kept = [e.seq for e in (await broker.history("a", None)).events or ()]
        assert (new.seq, kept) == (1, [1])
        await broker.close()

    run(scenario)


def test_a_synchronous_read_is_offered_only_where_delivery_is_in_step(
    harness: BrokerHarness,
) -> None:
    """The in-memory broker reads its history synchronously, in step with delivery (the
    handler had every event up to the position when publish returned); a networked broker
    offers no synchronous read. Either way history() and delivered() agree once the
    events were delivered."""

    async def scenario() -> None:
        broker, received = await started(harness)
        await broker.publish("b", msgs(6))
        now = broker.history_now("b", 2)
        if harness.name == "memory":
            assert now is not None
            assert received.seqs("b") == [1, 2, 3, 4, 5, 6]  # already delivered
            assert (now.position.seq, now.first_seq) == (6, 1)
            assert [e.seq for e in now.events or ()] == [3, 4, 5, 6]
        else:
            assert now is None
        await received.wait_for(6)
        read = await broker.history("b", 2)
        assert read.position == broker.delivered("b")
        assert (read.position.seq, read.first_seq) == (6, 1)
        assert [e.seq for e in read.events or ()] == [3, 4, 5, 6]
        await broker.close()

    run(scenario)


def test_ping_answers_and_close_stops_delivery(harness: BrokerHarness) -> None:
    """A started broker answers ping; after close, what is published reaches no handler:
    the closed broker refuses it, or stores it without calling the handler."""

    async def scenario() -> None:
        broker, received = await started(harness)
        assert await broker.ping() is True
        await broker.publish("b", msgs(1))
        await received.wait_for(1)
        await broker.close()
        try:
            seqs: list[int] | None = await broker.publish("b", msgs(1))
        except BrokerUnavailable:  # a networked broker refuses once closed
            seqs = None
        if seqs is None:
            # Published through a broker still open on the same store: once that one
            # delivered it, the closed one would have had it too, if it still read.
            other, got = await started(harness)
            assert await other.publish("b", msgs(1)) == [2]
            await got.wait_for(1)
            assert got.seqs("b") == [2]
            await other.close()
        else:
            assert seqs == [2]  # stored, and delivery (in the same call) went nowhere
        assert received.seqs("b") == [1]

    run(scenario)
