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
