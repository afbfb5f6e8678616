"""The graphql-transport-ws protocol (gql/transport.py) on a real node, without a socket:
every message type, every close code, subscriptions joined to the hub, since and recovered."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import jwt
import orjson
import pytest
from graphql import ExecutionResult

from aurigraph_stream.access.guard import Guard
from aurigraph_stream.access.tokens import ANONYMOUS, UNRESTRICTED, Principal
from aurigraph_stream.contract import CloseCode, Position
from aurigraph_stream.event import Event
from aurigraph_stream.gql.service import GraphqlService
from aurigraph_stream.gql.transport import GraphqlSocket
from aurigraph_stream.hub import Governor
from aurigraph_stream.node import Node
from aurigraph_stream.node.replay import STEP_RENDERS
from tests.support.nodes import Recorder, epoch
from tests.support.nodes import run_on_node as run
from tests.support.streamtools import address, example_event, tx

SECRET = "s" * 32
TX_SUB = "subscription($a: [String!]) { transactions(address: $a) { txHash value seq } }"


class Client:
    """A /graphql connection seen from the protocol: what it was sent, how it was closed."""

    def __init__(self, node: Node, principal: Principal = UNRESTRICTED) -> None:
        self.node = node
        self.sink = Recorder()
        self.closed: tuple[CloseCode, str | None] | None = None
        self.closing = asyncio.Event()
        self.authorized: list[Principal] = []
        self.socket = GraphqlSocket(
            GraphqlService(node, Guard(node.settings)),
            self.sink,
            0,
            principal,
            {},
            close=self._close,
            authorized=self.authorized.append,
        )

    def _close(self, code: CloseCode, reason: str | None) -> None:
        self.closed = (code, reason)
        self.closing.set()

    def send(self, message: Any) -> None:
        self.socket.handle(message if isinstance(message, str) else orjson.dumps(message).decode())

    async def received(self) -> list[dict[str, Any]]:
        """What the hub's flush has written to this client so far."""
        messages: list[dict[str, Any]] = await self.sink.flushed()
        return messages

    async def until(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """What is written up to the first write after which ``done`` holds (a running
        operation's result comes in a later write): at most ten writes of 10 s each."""
        got = await self.received()
        for _ in range(10):
            if done(got):
                return got
            got += await self.sink.written()
        raise AssertionError(f"not done after ten writes: {got}")

    async def init(self, payload: dict[str, Any] | None = None) -> None:
        self.send({"type": "connection_init", **({"payload": payload} if payload else {})})
        assert await self.received() == [{"type": "connection_ack"}]

    def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        self.send({"id": op_id, "type": "subscribe", "payload": payload})


def test_init_ack_ping_pong() -> None:
    """connection_init is acknowledged; ping is answered with pong and its payload; pong and
    a ping before init are fine."""

    async def scenario(node: Node) -> None:
        client = Client(node)
        client.send({"type": "ping"})
        assert await client.received() == [{"type": "pong"}]
        await client.init()
        client.send({"type": "ping", "payload": {"t": 1}})
        client.send({"type": "pong"})
        assert await client.received() == [{"type": "pong", "payload": {"t": 1}}]
        assert client.closed is None
        assert client.authorized == [UNRESTRICTED]

    run(scenario)


def test_protocol_violations_close_with_the_protocols_codes() -> None:
    """4400 for messages the protocol does not define, 4401 for subscribe before the ack,
    4429 for a second connection_init, each with a reason."""
    cases: list[tuple[list[Any], int, str]] = [
        (["not json"], 4400, "JSON"),
        ([[1, 2]], 4400, "type"),
        ([{"type": "nonsense"}], 4400, "unknown message type"),
        ([{"type": "connection_init", "payload": "x"}], 4400, "payload"),
        ([{"type": "subscribe", "payload": {"query": "{ metrics { seq } }"}}], 4400, "id"),
        ([{"type": "subscribe", "id": "x" * 65, "payload": {"query": "{ x }"}}], 4400, "64"),
        ([{"type": "subscribe", "id": "1"}], 4400, "payload"),
        ([{"type": "subscribe", "id": "1", "payload": {"query": 1}}], 4400, "query"),
        ([{"type": "complete"}], 4400, "id"),
        ([{"type": "subscribe", "id": "1", "payload": {"query": "{ metrics { seq } }"}}], 4401, ""),
        ([{"type": "connection_init"}, {"type": "connection_init"}], 4429, ""),
    ]

    async def scenario(node: Node) -> None:
        for messages, code, reason in cases:
            client = Client(node)
            for message in messages:
                client.send(message)
            assert client.closed is not None, messages
            assert int(client.closed[0]) == code, (messages, client.closed)
            assert reason in (client.closed[1] or ""), (messages, client.closed)
            client.send({"type": "ping"})  # nothing is answered after the close
            assert [m for m in await client.received() if m["type"] == "pong"] == []

    run(scenario)


def test_a_connection_without_init_is_closed_4408() -> None:
    async def scenario(node: Node) -> None:
        client = Client(node)
        await asyncio.wait_for(client.closing.wait(), 10)
        assert client.closed == (CloseCode.GRAPHQL_INIT_TIMEOUT, None)

    run(scenario, graphql_init_timeout=0.1)


def test_queries_answer_next_then_complete_and_errors_carry_codes() -> None:
    """A query: next with the result, then complete. A bad document: one error message with
    the slug in extensions.code, and the connection stays."""

    async def scenario(node: Node) -> None:
        await node.publish("consensus", [example_event("consensus")])
        client = Client(node)
        await client.init()
        client.subscribe("q", "{ consensus { round seq } position(stream: consensus) { seq } }")
        client.subscribe("bad", "{ consensus { nope } }")
        client.subscribe("syntax", "{ consensus {")
        client.subscribe("var", "query($n: Int) { transactions(last: $n) { seq } }", {"n": "x"})
        answered = await client.received()
        assert answered[:2] == [
            {
                "id": "q",
                "type": "next",
                "payload": {"data": {"consensus": {"round": 3, "seq": 1}, "position": {"seq": 1}}},
            },
            {"id": "q", "type": "complete"},
        ]
        codes = [(m["id"], m["type"], m["payload"][0]["extensions"]["code"]) for m in answered[2:]]
        assert codes == [
            ("bad", "error", "invalid_document"),
            ("syntax", "error", "syntax_error"),
            ("var", "error", "invalid_variables"),
        ]
        assert client.closed is None

    run(scenario)


def test_subscription_first_message_says_where_it_started() -> None:
    """A subscription gets each matching event as a next message with exactly the selected
    fields; the first carries extensions.stream (position, recovered); complete stops it."""

    async def scenario(node: Node) -> None:
        mine, other = address(1), address(2)
        await node.publish("transactions", [tx(1, mine, other, "5")])
        client = Client(node)
        await client.init()
        client.subscribe("s", TX_SUB, {"a": [mine.upper().replace("0X", "0x")]})
        await node.publish(
            "transactions",
            [tx(2, other, other, "6"), tx(3, other, mine, "7"), tx(4, mine, mine, "8")],
        )
        first, second = await client.received()
        assert first == {
            "id": "s",
            "type": "next",
            "payload": {
                "data": {"transactions": {"txHash": "0x" + f"{3:064x}", "value": "7", "seq": 3}},
                "extensions": {
                    "stream": {
                        "position": {"seq": 1, "epoch": epoch(node, "transactions")},
                        "recovered": True,
                        "replayed": 0,
                    }
                },
            },
        }
        assert second["payload"] == {
            "data": {"transactions": {"txHash": "0x" + f"{4:064x}", "value": "8", "seq": 4}}
        }
        client.send({"id": "s", "type": "complete"})
        await node.publish("transactions", [tx(5, mine, mine, "9")])
        assert await client.received() == []
        assert node.hub.subscribers("transactions") == 0

    run(scenario)


def test_since_replays_what_was_missed_and_says_recovered() -> None:
    """since SEQ:EPOCH: the messages after SEQ first (the first with extensions.stream,
    replayed N, recovered true), then live with no gap; a stale epoch: recovered false."""

    async def scenario(node: Node) -> None:
        mine = address(1)
        await node.publish("transactions", [tx(n, mine, mine, str(n)) for n in range(1, 6)])
        current = epoch(node, "transactions")
        query = "subscription($s: String) { transactions(since: $s) { seq } }"
        client = Client(node)
        await client.init()
        client.subscribe("r", query, {"s": f"2:{current}"})
        await node.publish("transactions", [tx(6, mine, mine, "6")])
        messages = await client.received()
        assert [m["payload"]["data"]["transactions"]["seq"] for m in messages] == [3, 4, 5, 6]
        assert messages[0]["payload"]["extensions"]["stream"] == {
            "position": {"seq": 5, "epoch": current},
            "recovered": True,
            "replayed": 3,
        }
        assert all("extensions" not in m["payload"] for m in messages[1:])

        stale = Client(node)
        await stale.init()
        stale.subscribe("r", query, {"s": "2:0000dead"})
        await node.publish("transactions", [tx(7, mine, mine, "7")])
        (only,) = await stale.received()
        assert only["payload"]["data"]["transactions"]["seq"] == 7
        assert only["payload"]["extensions"]["stream"]["recovered"] is False

    run(scenario)


def test_the_history_query_since_follows_the_subscriptions_rules() -> None:
    """transactions(since:) answers what a subscription with that since would replay, and
    not_recovered where it would say recovered false: another epoch, a seq ahead of the
    stream, or messages after it no longer kept."""

    async def scenario(node: Node) -> None:
        mine = address(1)
        await node.publish("transactions", [tx(n, mine, mine, str(n)) for n in range(1, 9)])
        current = epoch(node, "transactions")
        client = Client(node)
        await client.init()
        query = "query($s: String) { transactions(since: $s) { seq } }"
        for n, since in enumerate((f"5:{current}", "6", "5:0000dead", "9", "1")):
            client.subscribe(str(n), query, {"s": since})
        answers = [m for m in await client.received() if m["type"] == "next"]
        assert answers[0]["payload"]["data"]["transactions"] == [{"seq": 6}, {"seq": 7}, {"seq": 8}]
        assert answers[1]["payload"]["data"]["transactions"] == [{"seq": 7}, {"seq": 8}]
        for answer in answers[2:]:  # another epoch, ahead, no longer kept (history_size 5)
            assert answer["payload"]["errors"][0]["extensions"]["code"] == "not_recovered"

    run(scenario, history_size=5)


def test_an_id_in_use_closes_4409_and_a_finished_one_is_free() -> None:
    async def scenario(node: Node) -> None:
        client = Client(node)
        await client.init()
        client.subscribe("q", "{ position(stream: metrics) { seq } }")
        client.subscribe("q", "{ position(stream: metrics) { seq } }")  # q had finished
        assert client.closed is None
        client.subscribe("s", TX_SUB)
        client.subscribe("s", TX_SUB)
        assert client.closed == (
            CloseCode.GRAPHQL_SUBSCRIBER_EXISTS,
            "Subscriber for s already exists",
        )

    run(scenario)


def test_operations_per_connection_are_capped() -> None:
    async def scenario(node: Node) -> None:
        client = Client(node)
        await client.init()
        for n in range(3):
            client.subscribe(str(n), TX_SUB)
        errors = [m for m in await client.received() if m["type"] == "error"]
        assert [(m["id"], m["payload"][0]["extensions"]["code"]) for m in errors] == [
            ("2", "too_many_operations")
        ]
        assert client.closed is None

    run(scenario, graphql_max_operations=2)


def test_publish_mutation_over_the_socket() -> None:
    """The publish mutation runs (asynchronously), answers next and complete, and a
    subscriber receives what it published."""

    async def scenario(node: Node) -> None:
        watcher = Client(node)
        await watcher.init()
        watcher.subscribe("w", "subscription { validators { validator status seq } }")
        client = Client(node)
        await client.init()
        client.subscribe(
            "p",
            'mutation { publish(validators: [{timestamp: "2025-10-25T09:35:05Z", validator: '
            f'"{address(9)}", status: JAILED, votingPower: 5, uptime: 50.5, '
            "lastBlockProposed: 1}]) { stream accepted seqs } }",
        )
        answered = await client.until(lambda got: len(got) >= 2)
        assert answered == [
            {
                "id": "p",
                "type": "next",
                "payload": {
                    "data": {"publish": {"stream": "validators", "accepted": 1, "seqs": [1]}}
                },
            },
            {"id": "p", "type": "complete"},
        ]
        (event,) = await watcher.received()
        assert event["payload"]["data"] == {
            "validators": {"validator": address(9), "status": "JAILED", "seq": 1}
        }

    run(scenario)


def _token(**claims: Any) -> str:
    return jwt.encode({"sub": "t", "exp": int(time.time()) + 600, **claims}, SECRET)


def test_tokens_in_connection_init_decide_what_is_allowed() -> None:
    """Auth on: no token anywhere, or a bad one, closes 4403; a token's streams claim refuses
    the others per operation (error message, code forbidden), and publish needs its scope."""

    async def scenario(node: Node) -> None:
        nobody = Client(node, ANONYMOUS)
        nobody.send({"type": "connection_init"})
        assert nobody.closed is not None
        assert nobody.closed[0] == CloseCode.GRAPHQL_FORBIDDEN

        forged = Client(node, ANONYMOUS)
        forged.send({"type": "connection_init", "payload": {"Authorization": "Bearer x.y.z"}})
        assert forged.closed is not None
        assert forged.closed[0] == CloseCode.GRAPHQL_FORBIDDEN

        reader = Client(node, ANONYMOUS)
        await reader.init({"Authorization": f"Bearer {_token(streams=['metrics'])}"})
        assert reader.authorized[0].streams == frozenset({"metrics"})
        reader.subscribe("t", TX_SUB)
        reader.subscribe("m", "subscription { metrics { seq } }")
        reader.subscribe("q", "{ validators { seq } }")
        reader.subscribe("p", "mutation { publish(metrics: []) { seqs } }")
        got = await reader.until(lambda got: {"id": "p", "type": "complete"} in got)
        first = {m["id"]: m for m in reversed(got)}  # each id's first message
        assert first["t"]["type"] == "error"
        assert first["t"]["payload"][0]["extensions"]["code"] == "forbidden"
        assert "m" not in first  # subscribed: nothing until an event
        for op_id in ("q", "p"):  # field errors: a result, whose errors say forbidden
            assert first[op_id]["type"] == "next"
            assert first[op_id]["payload"]["errors"][0]["extensions"]["code"] == "forbidden"
        assert reader.closed is None

        token = Client(node, ANONYMOUS)
        await token.init({"token": _token(streams="*", scope="publish")})
        assert token.authorized[0].can_publish

    run(scenario, jwt_secret=SECRET, auth="jwt")


async def _turns(until: Callable[[], bool], limit: int = 10_000) -> None:
    """Let the event loop turn (bounded) until ``until()``."""
    for _ in range(limit):
        if until():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not done after {limit} turns")


def _queued(sink: Recorder) -> int:
    pending = sink.pending
    return 0 if pending is None else 1 if isinstance(pending, bytes) else len(pending)


def test_a_long_since_replay_is_rendered_paced_then_live_follows() -> None:
    """since 3000 messages back: the subscribe renders and queues one step (STEP_RENDERS
    results), the rest follows a step per turn of the loop, as on /ws; the first result
    says where it started, and live results follow the last replayed one with no gap."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 3001)])
        current = epoch(node, "transactions")
        client = Client(node)
        await client.init()
        client.subscribe(
            "r",
            "subscription($s: String) { transactions(since: $s) { seq } }",
            {"s": f"0:{current}"},
        )
        assert 0 < _queued(client.sink) <= STEP_RENDERS  # one step, not 3000 results at once
        await _turns(lambda: len(client.sink.frames) >= 3000 and client.sink.pending is None)
        await node.publish("transactions", [tx(3001, a, b, "1")])
        messages = await client.received()
        assert [m["payload"]["data"]["transactions"]["seq"] for m in messages] == list(
            range(1, 3002)
        )
        assert messages[0]["payload"]["extensions"]["stream"] == {
            "position": {"seq": 3000, "epoch": current},
            "recovered": True,
            "replayed": 3000,
        }
        assert all("extensions" not in m["payload"] for m in messages[1:])

    run(scenario, history_size=5000)


def test_a_since_replay_waits_while_the_transport_is_full() -> None:
    """While the connection's transport is over its high-water mark no step runs, so what a
    replay queues stays within the connection's buffer bound; resume goes on."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 2001)])
        client = Client(node)
        await client.init()
        client.subscribe("r", 'subscription { transactions(since: "0") { seq } }')
        client.sink.paused = True
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(client.sink.frames) <= STEP_RENDERS
        node.hub.resume(client.sink)
        await _turns(lambda: len(client.sink.frames) >= 2000 and client.sink.pending is None)
        seqs = [m["payload"]["data"]["transactions"]["seq"] for m in await client.received()]
        assert seqs == list(range(1, 2001))

    run(scenario, history_size=5000)


def test_replays_started_while_the_transport_is_full_queue_nothing_until_it_drains() -> None:
    """A client that reads nothing and starts replay after replay: once its transport is
    full, a new replay queues nothing, not even its first step, until the transport
    drains; then every replay goes out, each in order."""

    async def scenario(node: Node) -> None:
        a, b = address(1), address(2)
        await node.publish("transactions", [tx(i, a, b, "1") for i in range(1, 201)])
        client = Client(node)
        await client.init()
        client.sink.paused = True
        for n in range(5):
            client.subscribe(str(n), 'subscription { transactions(since: "0") { seq } }')
        for _ in range(20):
            await asyncio.sleep(0)
        assert (client.sink.pending, client.sink.frames) == (None, [])
        node.hub.resume(client.sink)
        await _turns(lambda: len(client.sink.frames) >= 1000 and client.sink.pending is None)
        messages = await client.received()
        for n in range(5):
            seqs = [
                m["payload"]["data"]["transactions"]["seq"] for m in messages if m["id"] == str(n)
            ]
            assert seqs == list(range(1, 201))

    run(scenario)


def test_a_completed_subscriptions_queued_results_are_not_sent() -> None:
    """complete: the results the hub queued for the subscription and not yet written are
    dropped, so a subscribe that reuses the id at once gets only its own; a query's result
    under that id, queued before, and other operations' results stay."""

    async def scenario(node: Node) -> None:
        mine = address(1)
        client = Client(node)
        await client.init()
        client.subscribe("s", "{ position(stream: transactions) { seq } }")  # done at once
        client.subscribe("s", "subscription { transactions { txHash } }")
        client.subscribe("t", "subscription { transactions { seq } }")
        await node.publish("transactions", [tx(1, mine, mine, "1"), tx(2, mine, mine, "2")])
        assert _queued(client.sink) > 2  # queued, not yet written
        client.send({"id": "s", "type": "complete"})
        client.subscribe("s", "subscription { transactions { value } }")
        await node.publish("transactions", [tx(3, mine, mine, "3")])
        got = [
            (m["id"], m["type"], m.get("payload", {}).get("data")) for m in await client.received()
        ]
        assert got == [
            ("s", "next", {"position": {"seq": 0}}),
            ("s", "complete", None),
            ("t", "next", {"transactions": {"seq": 1}}),
            ("t", "next", {"transactions": {"seq": 2}}),
            ("t", "next", {"transactions": {"seq": 3}}),
            ("s", "next", {"transactions": {"value": "3"}}),
        ]

    run(scenario, latency_governor=False)


def test_the_same_subscription_in_equivalent_variables_shares_one_group() -> None:
    """The view is keyed by the variables as coerced: a single value for a list, an omitted
    variable with a default, a variable the operation does not use make the same results,
    so their subscribers share one group (one execution per event)."""

    async def scenario(node: Node) -> None:
        mine = address(1)
        document = (
            'subscription($a: [String!], $v: String = "1") '
            "{ transactions(address: $a, minValue: $v) { seq } }"
        )
        for variables in ({"a": mine}, {"a": [mine], "v": "1"}, {"a": [mine], "other": 5}):
            client = Client(node)
            await client.init()
            client.subscribe("s", document, variables)
            assert await client.received() == []
        await node.publish("transactions", [tx(1, mine, mine, "1")])  # they join at the first
        members = node.hub._streams["transactions"]
        assert len(members.groups) == 1
        (group,) = members.groups.values()
        assert sum(len(m) for m in group.variants.values()) == 3

    run(scenario)


def test_on_a_networked_broker_the_first_result_says_the_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker that cannot read its history at once (Redis): the first result still says
    where the subscription started, the last event this node delivered, as on /ws."""

    async def scenario(node: Node) -> None:
        mine = address(1)
        await node.publish("transactions", [tx(1, mine, mine, "1"), tx(2, mine, mine, "2")])
        current = epoch(node, "transactions")
        monkeypatch.setattr(node.broker, "history_now", lambda stream, since: None)
        client = Client(node)
        await client.init()
        client.subscribe("s", TX_SUB)
        await node.publish("transactions", [tx(3, mine, mine, "3")])
        (first,) = await client.received()
        assert first["payload"]["extensions"]["stream"] == {
            "position": {"seq": 2, "epoch": current},
            "recovered": True,
            "replayed": 0,
        }
        client.subscribe("r", 'subscription { transactions(since: "1") { seq } }')
        (refused,) = await client.received()
        assert refused["payload"][0]["extensions"]["code"] == "history_unavailable"

    run(scenario)


def test_a_lost_history_is_announced_in_the_next_result() -> None:
    """The broker lost the stream's history (a reset): a GraphQL subscriber's next result
    carries extensions.stream again, recovered false with the new position, as /ws gets a
    subscribed frame; the results after it carry none."""

    async def scenario(node: Node) -> None:
        mine = address(1)
        client = Client(node)
        await client.init()
        client.subscribe("s", TX_SUB)
        await node.publish("transactions", [tx(1, mine, mine, "1")])
        (first,) = await client.received()
        assert first["payload"]["extensions"]["stream"]["recovered"] is True
        node.hub.reset("transactions", Position(0, "c0ffee01"))
        await node.publish("transactions", [tx(2, mine, mine, "2"), tx(3, mine, mine, "3")])
        announced, after = await client.received()
        assert announced["payload"]["extensions"]["stream"] == {
            "position": {"seq": 0, "epoch": "c0ffee01"},
            "recovered": False,
            "replayed": 0,
        }
        assert announced["payload"]["data"]["transactions"]["seq"] == 2
        assert "extensions" not in after["payload"]

    run(scenario)


def test_a_mutation_runs_to_its_end_after_a_complete_or_a_close() -> None:
    """A running publish is never half done: neither complete nor the connection closing
    cancels it, and no result is sent for it."""

    async def scenario(node: Node) -> None:
        mutation = (
            'mutation { publish(validators: [{timestamp: "2025-10-25T09:35:05Z", validator: '
            f'"{address(9)}", status: JAILED, votingPower: 5, uptime: 50.5, '
            "lastBlockProposed: 1}]) { seqs } }"
        )
        completed = Client(node)
        await completed.init()
        completed.subscribe("p", mutation)
        completed.send({"id": "p", "type": "complete"})
        closed = Client(node)
        await closed.init()
        closed.subscribe("p", mutation)
        closed.socket.stop()
        (task,) = closed.socket.mutations
        await asyncio.wait_for(task, 10)
        await _turns(lambda: not completed.socket.mutations)
        assert [v["seq"] for v in node.snapshots.items("validators")] == [2]
        assert await completed.received() == []
        assert await closed.received() == []

    run(scenario)


def test_a_completed_operation_that_fails_leaves_no_unretrieved_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A mutation the client completed that then fails is logged, and its exception does
    not surface as 'Task exception was never retrieved'; a completed query is cancelled."""
    unretrieved: list[dict[str, Any]] = []

    async def scenario(node: Node) -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unretrieved.append(ctx))
        gate = asyncio.Event()
        client = Client(node)
        await client.init()
        service = client.socket.service

        async def failing() -> ExecutionResult:
            await gate.wait()
            raise RuntimeError("the broker broke")

        monkeypatch.setattr(service, "execute", lambda *args: failing())
        client.subscribe("m", "mutation { publish(metrics: []) { seqs } }")
        client.subscribe("q", "{ position(stream: metrics) { seq } }")
        (mutation,) = client.socket.mutations
        query = client.socket.operations["q"]
        assert isinstance(query, asyncio.Future)
        client.send({"id": "m", "type": "complete"})
        client.send({"id": "q", "type": "complete"})
        gate.set()
        await _turns(mutation.done)
        await _turns(query.done)
        assert query.cancelled()
        del mutation, query
        gc.collect()
        assert await client.received() == []

    with caplog.at_level(logging.ERROR, logger="aurigraph_stream.graphql"):
        run(scenario)
    assert unretrieved == []
    assert "a GraphQL operation failed" in caplog.text


class Holding(Governor):
    """A governor that holds every flush for 20 ms, as one does under load."""

    def delay(self) -> float:
        return 0.02


def test_received_waits_for_a_flush_the_governor_holds() -> None:
    """Under a governor hold the flush comes a timer later, not at the end of the tick: what
    a client is sent is still what received() returns."""

    async def scenario(node: Node) -> None:
        node.hub.governor = Holding(100)
        client = Client(node)
        client.send({"type": "connection_init"})
        assert await client.received() == [{"type": "connection_ack"}]
        client.subscribe("s", "subscription { consensus { seq } }")
        await node.publish("consensus", [example_event("consensus")])
        (result,) = await client.received()
        assert result["payload"]["data"] == {"consensus": {"seq": 1}}

    run(scenario)


def test_a_view_keeps_nothing_of_the_events_it_rendered() -> None:
    """A subscription's view renders every event with one executor: what it holds does not
    grow with the events rendered (graphql-core's per-event copies kept each event's
    fields in a memo they share: about 2 KB an event, for as long as the view lived)."""

    async def scenario(node: Node) -> None:
        service = GraphqlService(node, Guard(node.settings))
        operation = service.prepare("subscription { transactions { txHash value seq } }", None)
        _, view = service.plan(operation, None, service.context(UNRESTRICTED, {}, {}))
        data = tx(1, address(1), address(2), "5")
        for seq in range(1, 101):  # warm up
            view.render(Event("transactions", seq, {**data, "seq": seq}, 0.0))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for seq in range(101, 2101):
                view.render(Event("transactions", seq, {**data, "seq": seq}, 0.0))
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 100_000, f"{grown} bytes held after 2,000 renders"

    run(scenario)
