"""Starting a subscription (attach) on a real node, without a socket: replay, resume,
snapshot, and the seam between the starting frames and live events, with a history read
synchronously (the in-memory broker) and one a round trip away (as Redis')."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aurigraph_stream.broker import EventHandler, HistoryRead, MemoryBroker, ResetHandler
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.config import load_settings
from aurigraph_stream.contract import Position
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.node import Node
from aurigraph_stream.subscription import SubscribeRequest, from_query
from aurigraph_stream.ws.subscribe import attach
from tests.support.nodes import Recorder, epoch
from tests.support.nodes import run_on_node as run
from tests.support.streamtools import address, example_event, tx, validator


def seqs(messages: list[Any]) -> list[int]:
    return [m["seq"] for m in messages if "seq" in m]


def test_without_a_starting_point_only_live_events_and_no_control_frame() -> None:
    async def scenario(node: Node) -> None:
        await node.publish("consensus", [example_event("consensus")])
        sink = Recorder()
        attach(node, sink, from_query("consensus", {}), "json", 0)
        await node.publish("consensus", [example_event("consensus")])
        assert seqs(await sink.flushed()) == [2]

    run(scenario)


def test_replay_sends_the_last_n_matching_then_live_with_no_gap() -> None:
    """replay=N: subscribed (recovered), the last N that pass the filter, then live."""

    async def scenario(node: Node) -> None:
        mine, other = address(1), address(2)
        await node.publish(
            "transactions", [tx(i, mine if i % 2 else other, other, "1") for i in range(1, 11)]
        )
        sink = Recorder()
        attach(node, sink, from_query("transactions", {"address": mine, "replay": "3"}), "json", 0)
        await node.publish("transactions", [tx(11, mine, other, "1"), tx(12, other, other, "1")])
        head, *messages = await sink.flushed()
        assert head == {
            "type": "subscribed",
            "stream": "transactions",
            "position": {"seq": 10, "epoch": epoch(node, "transactions")},
            "recovered": True,
            "replayed": 3,
        }
        assert seqs(messages) == [5, 7, 9, 11]

    run(scenario)


def test_since_resumes_after_the_position_exactly() -> None:
    async def scenario(node: Node) -> None:
        await node.publish("consensus", [example_event("consensus")] * 5)
        sink = Recorder()
        since = f"2:{epoch(node, 'consensus')}"
        attach(node, sink, from_query("consensus", {"since": since}), "json", 0)
        await node.publish("consensus", [example_event("consensus")])
        head, *messages = await sink.flushed()
        assert (head["recovered"], head["replayed"]) == (True, 3)
        assert seqs(messages) == [3, 4, 5, 6]

    run(scenario)


def test_since_from_another_epoch_or_a_lost_position_is_not_recovered() -> None:
    """A foreign epoch, or a seq older than the history, says recovered false and replays
    nothing; live events follow from the current position."""

    async def scenario(node: Node) -> None:
        await node.publish("consensus", [example_event("consensus")] * 8)  # history_size 5
        for query in ({"since": "6:elsewhere"}, {"since": "1"}):
            sink = Recorder()
            attach(node, sink, from_query("consensus", query), "json", 0)
            (head,) = await sink.flushed()
            assert (head["recovered"], head["replayed"], head["position"]["seq"]) == (False, 0, 8)

    run(scenario, history_size=5)


def test_snapshot_is_the_current_set_then_changes() -> None:
    """snapshot=true: the validators as of the position, then each change after it."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("validators", [validator(a), validator(b), validator(a, "JAILED")])
        sink = Recorder()
        attach(node, sink, from_query("validators", {"snapshot": "true"}), "json", 0)
        await node.publish("validators", [validator(b, "INACTIVE")])
        head, snapshot, change = await sink.flushed()
        assert (head["type"], head["position"]["seq"]) == ("subscribed", 3)
        assert snapshot["type"] == "snapshot"
        assert [(v["validator"], v["status"], v["seq"]) for v in snapshot["items"]] == [
            (b, "ACTIVE", 2),
            (a, "JAILED", 3),
        ]
        assert (change["validator"], change["status"], change["seq"]) == (b, "INACTIVE", 4)

    run(scenario)


def test_on_the_multiplexed_endpoint_replays_are_wrapped_too() -> None:
    async def scenario(node: Node) -> None:
        await node.publish("consensus", [example_event("consensus")] * 2)
        sink = Recorder()
        request = SubscribeRequest("consensus", parse_filter("consensus", {}), replay=1)
        attach(node, sink, request, "json", 0, sub_id="c1")
        head, replayed = await sink.flushed()
        assert (head["id"], head["replayed"]) == ("c1", 1)
        assert (replayed["type"], replayed["id"], replayed["data"]["seq"]) == ("message", "c1", 2)

    run(scenario)


class Slow(Recorder):
    """A recorder whose transport can be full (``paused``) and that records being dropped."""

    __slots__ = ("dropped",)

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    def overflow(self) -> None:
        self.dropped = True


def _frames_bytes(sink: Recorder) -> int:
    return sum(len(frame) for frame in sink.frames)


async def _turns(until: Callable[[], bool], limit: int = 10_000) -> None:
    """Let the event loop turn (bounded) until ``until()``."""
    for _ in range(limit):
        if until():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not done after {limit} turns")


def test_a_long_replay_is_paced_then_live_follows_with_no_gap() -> None:
    """replay=3000: the subscribe queues one step (about 64 KiB), the rest follows a step
    per turn of the loop, and live events come after the last replayed one."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 3001)])
        sink = Recorder()
        attach(node, sink, from_query("transactions", {"replay": "3000"}), "json", 0)
        queued = sink.pending
        assert isinstance(queued, list)
        assert sum(len(f) for f in queued) < 70_000  # one step, not 3000 messages at once
        await _turns(lambda: len(sink.frames) >= 3001 and sink.pending is None)
        await node.publish("transactions", [tx(3001, a, b, "1")])
        head, *messages = await sink.flushed()
        assert (head["replayed"], head["position"]["seq"]) == (3000, 3000)
        assert seqs(messages) == list(range(1, 3002))

    run(scenario, history_size=5000)


def test_events_published_during_a_paced_replay_come_in_order() -> None:
    """Events published while a replay is still being paced come after it, none twice."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 2001)])
        sink = Recorder()
        attach(node, sink, from_query("transactions", {"replay": "2000"}), "json", 0)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(2001, 2011)])
        await _turns(lambda: len(sink.frames) >= 2011 and sink.pending is None)
        _, *messages = await sink.flushed()
        assert seqs(messages) == list(range(1, 2011))

    run(scenario, history_size=5000)


def test_a_replay_waits_while_the_transport_is_full() -> None:
    """While the subscriber's transport is over its high-water mark, no step runs; resume
    (the transport drained) goes on."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 2001)])
        sink = Slow()
        attach(node, sink, from_query("transactions", {"replay": "2000"}), "json", 0)
        sink.paused = True
        for _ in range(50):
            await asyncio.sleep(0)
        waited = _frames_bytes(sink)
        assert waited < 70_000
        node.hub.resume(sink)
        await _turns(lambda: len(sink.frames) >= 2001 and sink.pending is None)
        assert not sink.dropped

    run(scenario, history_size=5000)


def test_a_replay_the_history_overtakes_closes_as_a_slow_consumer() -> None:
    """A client that takes its replay so slowly that the history drops what it has yet to
    get is dropped (4008), as a client that falls behind live traffic is."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 1001)])
        sink = Slow()
        attach(node, sink, from_query("transactions", {"replay": "1000"}), "json", 0)
        sink.paused = True
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1001, 2001)])
        node.hub.resume(sink)
        await _turns(lambda: sink.dropped)
        assert sink.subscriptions == []

    run(scenario, history_size=1000)


def test_an_unsubscribe_ends_a_paced_replay() -> None:
    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 2001)])
        sink = Recorder()
        sub = attach(node, sink, from_query("transactions", {"replay": "2000"}), "json", 0)
        node.hub.remove(sub)
        for _ in range(100):
            await asyncio.sleep(0)
        assert len(await sink.flushed()) < 300  # the first step's, and nothing after

    run(scenario, history_size=5000)


class RoundTrip:
    """The in-memory broker read as a networked one is: no synchronous read, and history()
    answers after the loop turned, or once ``gate`` opens when a test closed it."""

    def __init__(self, policies: Mapping[str, HistoryPolicy]) -> None:
        self.inner = MemoryBroker(policies)
        self.gate = asyncio.Event()
        self.gate.set()
        self.reads: list[tuple[str, int | None, int | None]] = []

    async def start(self, handler: EventHandler, on_reset: ResetHandler | None = None) -> None:
        await self.inner.start(handler, on_reset)

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, stream: str, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return await self.inner.publish(stream, messages)

    async def history(
        self, stream: str, since: int | None, newest: int | None = None
    ) -> HistoryRead:
        self.reads.append((stream, since, newest))
        await asyncio.sleep(0)
        await self.gate.wait()
        return await self.inner.history(stream, since, newest)

    def history_now(self, stream: str, since: int | None) -> HistoryRead | None:
        return None

    def delivered(self, stream: str) -> Position:
        return self.inner.delivered(stream)

    async def lease(self, name: str, holder: str, ttl: float) -> bool:
        return True

    async def ping(self) -> bool:
        return True


@asynccontextmanager
async def networked_node(**overrides: Any) -> AsyncIterator[tuple[Node, RoundTrip]]:
    settings = load_settings(environ={}, overrides={"simulate": False, **overrides})
    node = Node(settings)
    broker = node.broker = RoundTrip(settings.history_policies())
    await node.start()
    try:
        yield node, broker
    finally:
        await node.stop()


def run_networked(
    scenario: Callable[[Node, RoundTrip], Coroutine[Any, Any, None]], **settings: Any
) -> None:
    async def main() -> None:
        async with networked_node(**settings) as (node, broker):
            await scenario(node, broker)

    asyncio.run(main())


def test_a_networked_replay_is_paced_then_live_follows_with_no_gap() -> None:
    """replay=3000 read through a round trip: the starting frames and one step (about
    64 KiB) are queued when the history arrives, the rest a step per turn of the loop, and
    live events, kept meanwhile, follow the last replayed one."""

    async def scenario(node: Node, broker: RoundTrip) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 3001)])
        sink = Recorder()
        attach(node, sink, from_query("transactions", {"replay": "3000"}), "json", 0)
        await _turns(lambda: sink.pending is not None)
        assert broker.reads == [("transactions", None, 3000)]  # no filter: the newest only
        queued = sink.pending
        assert isinstance(queued, list)
        assert sum(len(f) for f in queued) < 70_000  # one step, not 3000 messages at once
        await node.publish("transactions", [tx(3001, a, b, "1")])
        await _turns(lambda: len(sink.frames) >= 3002 and sink.pending is None)
        await node.publish("transactions", [tx(3002, a, b, "1")])
        head, *messages = await sink.flushed()
        assert (head["recovered"], head["replayed"], head["position"]["seq"]) == (True, 3000, 3000)
        assert seqs(messages) == list(range(1, 3003))

    run_networked(scenario, history_size=5000)


def test_events_published_while_a_networked_history_loads_come_once_in_order() -> None:
    """Events published before the history arrives, and while the replay is paced, are
    kept (those that pass the filter), and each comes once, after the replay."""

    async def scenario(node: Node, broker: RoundTrip) -> None:
        mine, other = address(1), address(2)
        await node.publish(
            "transactions", [tx(i, mine if i % 2 else other, other, "1") for i in range(1, 2001)]
        )
        sink = Recorder()
        since = f"0:{node.broker.delivered('transactions').epoch}"
        request = from_query("transactions", {"address": mine, "since": since})
        broker.gate.clear()
        attach(node, sink, request, "json", 0)
        await node.publish("transactions", [tx(i, mine, other, "1") for i in range(2001, 2011)])
        broker.gate.set()
        await _turns(lambda: sink.pending is not None)
        await node.publish("transactions", [tx(i, other, mine, "1") for i in range(2011, 2021)])
        await _turns(lambda: len(sink.frames) >= 1 + 1000 + 20 and sink.pending is None)
        head, *messages = await sink.flushed()
        assert (head["recovered"], head["position"]["seq"]) == (True, 2010)
        expected = [i for i in range(1, 2001) if i % 2] + list(range(2001, 2021))
        assert seqs(messages) == expected

    run_networked(scenario, history_size=5000)


def test_a_networked_load_past_the_loading_limit_is_not_recovered() -> None:
    """More live events than a subscription keeps arrive while its history loads: it is
    told recovered false at the last event the node delivered, and live events follow."""

    async def scenario(node: Node, broker: RoundTrip) -> None:
        node.hub.loading_limit = 5
        await node.publish("consensus", [example_event("consensus")] * 3)
        sink = Recorder()
        since = f"1:{node.broker.delivered('consensus').epoch}"
        broker.gate.clear()
        attach(node, sink, from_query("consensus", {"since": since}), "json", 0)
        await node.publish("consensus", [example_event("consensus")] * 6)  # 4..9
        broker.gate.set()
        await _turns(lambda: sink.pending is not None)
        await node.publish("consensus", [example_event("consensus")])
        head, *messages = await sink.flushed()
        assert (head["recovered"], head["replayed"], head["position"]["seq"]) == (False, 0, 9)
        assert seqs(messages) == [10]

    run_networked(scenario)


def test_a_networked_replay_past_the_loading_limit_goes_on_unrecovered() -> None:
    """The client takes its replay so slowly that more live events arrive than it keeps:
    after the replay it is told recovered false at the last event delivered, then live."""

    async def scenario(node: Node, broker: RoundTrip) -> None:
        node.hub.loading_limit = 5
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 2001)])
        sink = Slow()
        attach(node, sink, from_query("transactions", {"replay": "2000"}), "json", 0)
        await _turns(lambda: sink.pending is not None)
        sink.paused = True  # its transport is full: the replay waits
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(2001, 2011)])
        node.hub.resume(sink)
        await _turns(lambda: len(sink.frames) >= 2002 and sink.pending is None)
        await node.publish("transactions", [tx(2011, a, b, "1")])
        head, *rest = await sink.flushed()
        assert (head["recovered"], head["replayed"]) == (True, 2000)
        replayed, announced, live = rest[:2000], rest[2000], rest[2001:]
        assert seqs(replayed) == list(range(1, 2001))
        assert (announced["type"], announced["recovered"]) == ("subscribed", False)
        assert announced["position"]["seq"] == 2010
        assert seqs(live) == [2011]
        assert not sink.dropped

    run_networked(scenario, history_size=5000)


def test_replay_0_through_a_networked_broker_needs_no_read() -> None:
    """replay=0: the position is the last event delivered, recovered, with no round trip."""

    async def scenario(node: Node, broker: RoundTrip) -> None:
        await node.publish("consensus", [example_event("consensus")] * 3)
        sink = Recorder()
        attach(node, sink, from_query("consensus", {"replay": "0"}), "json", 0)
        await node.publish("consensus", [example_event("consensus")])
        head, *messages = await sink.flushed()
        assert (head["recovered"], head["replayed"], head["position"]["seq"]) == (True, 0, 3)
        assert seqs(messages) == [4]
        assert broker.reads == []

    run_networked(scenario)
