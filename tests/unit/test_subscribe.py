"""Starting a subscription (attach) on a real node, without a socket: replay, resume,
snapshot, and the seam between the starting frames and live events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from aurigraph_stream.filters import parse_filter
from aurigraph_stream.node import Node
from aurigraph_stream.subscription import SubscribeRequest, from_query
from aurigraph_stream.ws.subscribe import attach
from tests.support.nodes import Recorder, running_node
from tests.support.streamtools import address, example_event, tx, validator


def run(scenario: Callable[[Node], Coroutine[Any, Any, None]], **settings: Any) -> None:
    async def main() -> None:
        async with running_node(**settings) as node:
            await scenario(node)

    asyncio.run(main())


def epoch(node: Node, stream: str) -> str:
    read = node.broker.history_now(stream, None)
    assert read is not None
    return read.position.epoch


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
