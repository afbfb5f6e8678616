"""The /ws commands without a socket: the schema check, and a Mux on a real node's hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest

from aurigraph_stream.contract import COMMAND_SCHEMA
from aurigraph_stream.errors import SubscriptionError
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.hub import subscription_bytes
from aurigraph_stream.node import Node
from aurigraph_stream.ws.commands import Mux, check_command
from tests.support.nodes import Recorder, running_node
from tests.support.streamtools import address, example_event


def run(scenario: Callable[[Node], Coroutine[Any, Any, None]], **settings: Any) -> None:
    async def main() -> None:
        async with running_node(**settings) as node:
            await scenario(node)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("command", "error", "says"),
    [
        ([1, 2], "invalid_command", "JSON object"),
        ({"id": "x"}, "unknown_op", "None"),
        ({"op": "dance", "id": "x"}, "unknown_op", "'dance'"),
        ({"op": "subscribe", "id": 7, "stream": "metrics"}, "invalid_command", "id must be"),
        ({"op": "subscribe", "id": "", "stream": "metrics"}, "invalid_command", "id must be"),
        ({"op": "subscribe", "id": "x" * 65, "stream": "metrics"}, "invalid_command", "1 to 64"),
        ({"op": "subscribe", "stream": "metrics"}, "invalid_command", "id must be"),
        ({"op": "subscribe", "id": "x"}, "unknown_stream", "None"),
        ({"op": "subscribe", "id": "x", "stream": 5}, "unknown_stream", "5"),
        ({"op": "subscribe", "id": "x", "stream": "m", "fast": 1}, "invalid_command", "'fast'"),
        ({"op": "unsubscribe", "id": "x", "stream": "m"}, "invalid_command", "only op and id"),
        ({"op": "subscribe", "id": "x", "stream": "m", "filter": []}, "invalid_filter", "object"),
        ({"op": "subscribe", "id": "x", "stream": "m", "replay": -1}, "invalid_replay", "0 to"),
        ({"op": "subscribe", "id": "x", "stream": "m", "replay": "9" * 7}, "invalid_replay", "0"),
        (
            {"op": "subscribe", "id": "x", "stream": "m", "since": "1" * 5000},
            "invalid_position",
            "...",
        ),
        (
            {"op": "subscribe", "id": "x", "stream": "m", "since": "3:a:b"},
            "invalid_position",
            "SEQ",
        ),
        (
            {"op": "subscribe", "id": "x", "stream": "m", "since": {"seq": -1}},
            "invalid_position",
            "",
        ),
        (
            {"op": "subscribe", "id": "x", "stream": "m", "snapshot": "maybe"},
            "invalid_snapshot",
            "",
        ),
    ],
)
def test_the_schema_names_the_key_at_fault(command: Any, error: str, says: str) -> None:
    """A command that fails the one schema gets the slug of the key at fault, in a short
    sentence (a huge value is cut, never echoed whole)."""
    with pytest.raises(SubscriptionError) as refused:
        check_command(command)
    assert refused.value.error == error
    assert says in refused.value.detail
    assert len(refused.value.detail) < 200


@pytest.mark.parametrize(
    "command",
    [
        {"op": "subscribe", "id": "a", "stream": "transactions"},
        {"op": "subscribe", "id": "a", "stream": "x", "filter": {"address": "0x1"}, "replay": 10},
        {"op": "subscribe", "id": "a", "stream": "x", "replay": "10"},
        {"op": "subscribe", "id": "a", "stream": "x", "since": 41},
        {"op": "subscribe", "id": "a", "stream": "x", "since": "41:9f3a6c21"},
        {"op": "subscribe", "id": "a", "stream": "x", "since": {"seq": 41, "epoch": "9f"}},
        {"op": "subscribe", "id": "a", "stream": "x", "snapshot": True},
        {"op": "subscribe", "id": "a", "stream": "x", "snapshot": "true"},
        {"op": "unsubscribe", "id": "a"},
    ],
)
def test_the_schema_passes_what_the_protocol_documents(command: dict[str, Any]) -> None:
    """Every documented command shape passes the schema (streams are checked afterwards)."""
    check_command(command)


def test_the_schema_has_one_definition_per_op() -> None:
    assert set(COMMAND_SCHEMA["$defs"]) == {"subscribe", "unsubscribe"}


def test_subscribe_reply_then_messages_then_unsubscribe() -> None:
    """subscribed (with the position) first, then the stream's messages in the envelope;
    after unsubscribed, none of that id."""

    async def scenario(node: Node) -> None:
        sink = Recorder()
        mux = Mux(node, sink, lambda stream: True, "json", 0, limit=10, budget=1 << 20)
        mux.handle(orjson.dumps({"op": "subscribe", "id": "c", "stream": "consensus"}))
        await node.publish("consensus", [example_event("consensus")])
        reply, message = await sink.flushed()
        assert reply["type"] == "subscribed"
        assert (reply["id"], reply["stream"], reply["recovered"]) == ("c", "consensus", True)
        assert reply["position"]["seq"] == 0
        assert message == {
            "type": "message",
            "id": "c",
            "stream": "consensus",
            "data": {**example_event("consensus"), "seq": 1},
        }
        mux.handle('{"op": "unsubscribe", "id": "c"}')
        await node.publish("consensus", [example_event("consensus")])
        assert await sink.flushed() == [{"type": "unsubscribed", "id": "c"}]

    run(scenario)


def test_command_errors_leave_the_other_subscriptions_alone() -> None:
    """Each failing command gets one error reply naming it; the good subscription still
    delivers."""

    async def scenario(node: Node) -> None:
        sink = Recorder()
        mux = Mux(
            node, sink, lambda stream: stream != "validators", "json", 0, limit=2, budget=1 << 20
        )
        for command in (
            {"op": "subscribe", "id": "m", "stream": "metrics"},
            {"op": "subscribe", "id": "m", "stream": "metrics"},
            {"op": "subscribe", "id": "v", "stream": "validators"},
            {"op": "unsubscribe", "id": "nope"},
            {"op": "subscribe", "id": "n", "stream": "network"},
            {"op": "subscribe", "id": "x", "stream": "consensus"},
        ):
            mux.handle(orjson.dumps(command))
        mux.handle(b"\xff not utf-8")
        mux.handle("{not json")
        replies = await sink.flushed()
        assert [(r["type"], r.get("id"), r.get("error")) for r in replies] == [
            ("subscribed", "m", None),
            ("error", "m", "duplicate_id"),
            ("error", "v", "forbidden"),
            ("error", "nope", "unknown_id"),
            ("subscribed", "n", None),
            ("error", "x", "too_many_subscriptions"),
            ("error", None, "invalid_command"),
            ("error", None, "invalid_json"),
        ]
        await node.publish("metrics", [example_event("metrics")])
        (message,) = await sink.flushed()
        assert (message["id"], message["data"]["seq"]) == ("m", 1)

    run(scenario)


def test_subscriptions_share_the_connections_memory_budget() -> None:
    """A subscribe that would take the connection's subscriptions over its budget gets
    memory_budget_exceeded; an unsubscribe gives its share back."""

    async def scenario(node: Node) -> None:
        sink = Recorder()
        addresses = [address(n) for n in range(1000)]
        one = subscription_bytes(parse_filter("transactions", {"address": addresses}))
        mux = Mux(node, sink, lambda stream: True, "json", 0, limit=100, budget=one + 4096)
        big = {"op": "subscribe", "stream": "transactions", "filter": {"address": addresses}}
        mux.handle(orjson.dumps({**big, "id": "a"}))
        mux.handle(orjson.dumps({**big, "id": "b"}))
        mux.handle(orjson.dumps({"op": "subscribe", "id": "m", "stream": "metrics"}))
        mux.handle(orjson.dumps({"op": "subscribe", "id": "n", "stream": "network"}))
        replies = await sink.flushed()
        assert [(r["type"], r["id"], r.get("error")) for r in replies] == [
            ("subscribed", "a", None),
            ("error", "b", "memory_budget_exceeded"),
            ("subscribed", "m", None),
            ("error", "n", "memory_budget_exceeded"),
        ]
        assert str(one + 4096) in replies[1]["detail"]
        mux.handle('{"op": "unsubscribe", "id": "a"}')
        mux.handle(orjson.dumps({**big, "id": "b"}))
        replies = await sink.flushed()
        assert [(r["type"], r["id"]) for r in replies] == [
            ("unsubscribed", "a"),
            ("subscribed", "b"),
        ]

    run(scenario)
