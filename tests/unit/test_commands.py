"""The /ws commands without a socket: the schema check, and a Mux on a real node's hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest

from aurigraph_stream.broker import HistoryRead
from aurigraph_stream.contract import COMMAND_SCHEMA
from aurigraph_stream.errors import BrokerUnavailable, SubscriptionError
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.hub import subscription_bytes
from aurigraph_stream.node import Node
from aurigraph_stream.ws import subscribe
from aurigraph_stream.ws.commands import (
    Mux,
    check_command,
    parse_stream_command,
    refreshed_frame,
)
from tests.support.nodes import Recorder
from tests.support.nodes import run_on_node as run
from tests.support.streamtools import address, example_event


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
    assert set(COMMAND_SCHEMA["$defs"]) == {"subscribe", "unsubscribe", "refresh"}


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ({"op": "refresh"}, "non-empty string"),
        ({"op": "refresh", "token": ""}, "non-empty string"),
        ({"op": "refresh", "token": 7}, "non-empty string"),
        ({"op": "refresh", "token": "t", "stream": "metrics"}, "only op, token and id"),
        ({"op": "refresh", "token": "t", "id": ""}, "id must be"),
    ],
)
def test_a_refresh_without_a_token_string_is_not_a_command(command: Any, says: str) -> None:
    """refresh needs a token string (and at most an id): anything else is invalid_command."""
    with pytest.raises(SubscriptionError) as refused:
        check_command(command)
    assert refused.value.error == "invalid_command"
    assert says in refused.value.detail


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"op": "refresh", "token": "a.b.c"}', ("a.b.c", None)),
        (b'{"op": "refresh", "token": "a.b.c", "id": "r1"}', ("a.b.c", "r1")),
        ("hello", None),
        (b"\xff\xfe", None),
        ("[1, 2]", None),
        ('{"op": "subscribe", "id": "x", "stream": "metrics"}', None),
    ],
)
def test_a_stream_endpoint_reads_only_refresh(data: str | bytes, expected: Any) -> None:
    """On /ws/{stream} a refresh command is read; any other message means nothing."""
    assert parse_stream_command(data) == expected


def test_a_malformed_refresh_on_a_stream_endpoint_is_refused() -> None:
    with pytest.raises(SubscriptionError):
        parse_stream_command('{"op": "refresh"}')


def test_the_refreshed_frame_says_whole_seconds_as_an_integer() -> None:
    assert refreshed_frame(1761385200.0, "r") == {
        "type": "refreshed",
        "id": "r",
        "expiresAt": 1761385200,
    }
    assert refreshed_frame(None) == {"type": "refreshed", "expiresAt": None}


def test_refresh_goes_to_the_connection_and_revoke_ends_what_is_no_longer_granted() -> None:
    """A refresh command reaches the callback; revoke ends the subscriptions the new grants
    leave out (unsubscribed, reason forbidden) and keeps the others delivering."""

    async def scenario(node: Node) -> None:
        sink = Recorder()
        calls: list[tuple[str, str | None]] = []
        mux = Mux(
            node, sink, lambda s: True, "json", 0, limit=10, budget=1 << 20, refresh=_record(calls)
        )
        for sub_id, stream in (("c", "consensus"), ("m", "metrics")):
            mux.handle(orjson.dumps({"op": "subscribe", "id": sub_id, "stream": stream}))
        mux.handle('{"op": "refresh", "token": "t0k", "id": "r1"}')
        mux.handle('{"op": "refresh"}')
        assert calls == [("t0k", "r1")]
        mux.revoke(lambda stream: stream == "metrics")
        mux.refreshed(1761385200.0, "r1")
        replies = await sink.flushed()
        assert [r["type"] for r in replies] == [
            "subscribed",
            "subscribed",
            "error",
            "unsubscribed",
            "refreshed",
        ]
        assert replies[2]["error"] == "invalid_command"
        assert replies[3] == {"type": "unsubscribed", "id": "c", "reason": "forbidden"}
        assert replies[4] == {"type": "refreshed", "id": "r1", "expiresAt": 1761385200}
        await node.publish("consensus", [example_event("consensus")])
        await node.publish("metrics", [example_event("metrics")])
        (message,) = await sink.flushed()
        assert message["id"] == "m"
        mux.handle(orjson.dumps({"op": "subscribe", "id": "c2", "stream": "consensus"}))
        (refused,) = await sink.flushed()
        assert (refused["type"], refused["error"]) == ("error", "forbidden")

    run(scenario)


def _record(calls: list[tuple[str, str | None]]) -> Callable[[str, str | None], None]:
    def refresh(token: str, ref: str | None) -> None:
        calls.append((token, ref))

    return refresh


def _no_refresh(token: str, ref: str | None) -> None:
    raise AssertionError("no refresh was sent")


def test_subscribe_reply_then_messages_then_unsubscribe() -> None:
    """subscribed (with the position) first, then the stream's messages in the envelope;
    after unsubscribed, none of that id."""

    async def scenario(node: Node) -> None:
        sink = Recorder()
        mux = Mux(
            node, sink, lambda s: True, "json", 0, limit=10, budget=1 << 20, refresh=_no_refresh
        )
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
            node,
            sink,
            lambda stream: stream != "validators",
            "json",
            0,
            2,
            budget=1 << 20,
            refresh=_no_refresh,
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
        mux = Mux(
            node, sink, lambda s: True, "json", 0, limit=100, budget=one + 4096, refresh=_no_refresh
        )
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


async def _replies(sink: Recorder, turns: int = 1000) -> list[Any]:
    """The replies written to ``sink`` once there are any (bounded turns of the loop)."""
    for _ in range(turns):
        await asyncio.sleep(0)
        if sink.frames:
            return await sink.flushed()
    raise AssertionError(f"no reply after {turns} turns")


def _networked(
    node: Node, history: Callable[[str, int | None], Coroutine[Any, Any, HistoryRead]]
) -> None:
    """Make the node's broker read its history only asynchronously, as Redis does, with
    ``history``: a subscription with a starting point then loads in the background."""
    node.broker.history_now = lambda stream, since: None  # type: ignore[method-assign]
    node.broker.history = history  # type: ignore[method-assign, assignment]


def _mux(node: Node, sink: Recorder, budget: int = 1 << 20) -> Mux:
    return Mux(node, sink, lambda s: True, "json", 0, limit=10, budget=budget, refresh=_no_refresh)


def test_a_history_that_fails_to_load_ends_the_subscription_with_an_error() -> None:
    """A read that fails otherwise than by the broker being away (an answer it cannot read,
    a bug) ends the loading subscription: an internal_error reply, its budget given back, out
    of the hub, so that no live event is kept for it. It used to stay loading for ever, with
    no reply, while the hub kept its live events."""

    async def broken(stream: str, since: int | None, newest: int | None = None) -> HistoryRead:
        raise RuntimeError("a reply this server cannot read")

    async def scenario(node: Node) -> None:
        _networked(node, broken)
        sink = Recorder()
        mux = _mux(node, sink)
        filtered = {"address": [address(n) for n in range(10)]}
        command = {"op": "subscribe", "stream": "transactions", "filter": filtered, "replay": 5}
        mux.handle(orjson.dumps({**command, "id": "tx"}))
        assert mux.held > 0
        (reply,) = await _replies(sink)
        assert (reply["type"], reply["id"], reply["op"], reply["error"]) == (
            "error",
            "tx",
            "subscribe",
            "internal_error",
        )
        assert (mux.held, mux.subs, node.hub.subscribers("transactions")) == (0, {}, 0)
        await node.publish("transactions", [example_event("transactions")])
        assert await sink.flushed() == []

    run(scenario)


def test_a_history_the_broker_never_answers_gives_the_budget_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """history_unavailable (the broker away for longer than HISTORY_WAIT) ends the
    subscription and gives its share of the memory budget back: the same subscribe fits
    again."""
    monkeypatch.setattr(subscribe, "HISTORY_WAIT", 0.0)

    async def away(stream: str, since: int | None, newest: int | None = None) -> HistoryRead:
        raise BrokerUnavailable("redis is not answering")

    async def scenario(node: Node) -> None:
        _networked(node, away)
        sink = Recorder()
        addresses = [address(n) for n in range(100)]
        one = subscription_bytes(parse_filter("transactions", {"address": addresses}))
        mux = _mux(node, sink, budget=one)
        command = {"op": "subscribe", "stream": "transactions", "filter": {"address": addresses}}
        mux.handle(orjson.dumps({**command, "id": "a", "since": "1"}))
        assert mux.held == one
        (reply,) = await _replies(sink)
        assert (reply["id"], reply["error"]) == ("a", "history_unavailable")
        assert mux.held == 0
        mux.handle(orjson.dumps({**command, "id": "b"}))  # no starting point: no read
        (again,) = await sink.flushed()
        assert (again["type"], again["id"]) == ("subscribed", "b")

    run(scenario)


def test_revoke_gives_the_budget_back() -> None:
    """A subscription a refresh ends gives its share of the memory budget back."""

    async def scenario(node: Node) -> None:
        sink = Recorder()
        addresses = [address(n) for n in range(100)]
        one = subscription_bytes(parse_filter("transactions", {"address": addresses}))
        mux = _mux(node, sink, budget=one)
        command = {"op": "subscribe", "stream": "transactions", "filter": {"address": addresses}}
        mux.handle(orjson.dumps({**command, "id": "a"}))
        mux.revoke(lambda stream: stream != "transactions")
        assert mux.held == 0
        mux.revoke(lambda stream: True)
        mux.handle(orjson.dumps({**command, "id": "b"}))
        replies = await sink.flushed()
        assert [(r["type"], r["id"], r.get("reason")) for r in replies] == [
            ("subscribed", "a", None),
            ("unsubscribed", "a", "forbidden"),
            ("subscribed", "b", None),
        ]

    run(scenario)
