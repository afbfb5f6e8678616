"""/graphql on a real server: npm's graphql-ws and Python's gql subscribing with filters,
queries over HTTP against the snapshots, shared bytes, refusals and close codes, resume."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from websockets.sync.client import connect

from aurigraph_stream.contract import GRAPHQL_PATH
from tests.support.graphqltools import (
    GraphqlWs,
    graphql_http,
    node_client,
    open_raw,
    position,
)
from tests.support.rawws import OP_CLOSE, OP_TEXT, RawWebSocket
from tests.support.redisserver import RedisServer
from tests.support.server import ServerProcess
from tests.support.streamtools import address, open_server, peer, publish, recv_json, tx, validator

TX_FIELDS = "txHash value seq"
SUBSCRIBE_1 = (
    b'{"id": "1", "type": "subscribe", "payload": {"query": "subscription { metrics { seq } }"}}'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No simulator: only what the tests publish flows."""
    with open_server(tmp_path_factory.mktemp("graphql"), "--graphql-max-operations", "5") as s:
        yield s


def _gql_subscribe(
    server: ServerProcess, query: str, variables: dict[str, Any], count: int, out: list[Any]
) -> None:
    """Python's gql client over its websockets transport: the subprotocol it got, then
    ``count`` results, into ``out`` (or the exception that stopped it)."""

    async def main() -> None:
        transport = WebsocketsTransport(url=server.ws(GRAPHQL_PATH))
        async with Client(transport=transport) as session:
            out.append(transport.subprotocol)
            request = gql(query)
            request.variable_values = variables
            async for result in session.subscribe(request, get_execution_result=True):
                out.append({"data": result.data, "extensions": result.extensions})
                if len(out) > count:
                    break

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except Exception as exc:  # reported by the test, not lost in the thread
        out.append(exc)


def test_node_graphql_ws_and_python_gql_subscribe_with_filters(server: ServerProcess) -> None:
    """npm's graphql-ws (in Node) on one address and gql (Python) on CONFIRMED transactions
    of at least 5 wei, at once: each gets exactly its matches, only the fields it selected,
    and the first says where it started (since the position read before subscribing)."""
    mine, other = address(101), address(102)
    since = position(server, "transactions")
    query = (
        "subscription($a: [String!], $s: String) "
        f"{{ transactions(address: $a, since: $s) {{ {TX_FIELDS} }} }}"
    )
    gql_query = (
        'subscription($s: String) { transactions(status: [CONFIRMED], minValue: "5", '
        "since: $s) { txHash status value } }"
    )
    python_results: list[Any] = []
    with node_client(server, query, {"a": [mine], "s": since}, 3) as node:
        assert node.line() == {"ready": True}
        python = threading.Thread(
            target=_gql_subscribe,
            args=(server, gql_query, {"s": since}, 2, python_results),
        )
        python.start()
        sent = publish(
            server,
            "transactions",
            [
                tx(1, mine, other, "1"),
                tx(2, other, other, "9", "CONFIRMED"),
                tx(3, other, mine, "2", "CONFIRMED"),
                tx(4, other, other, "30", "CONFIRMED"),
                tx(5, mine, mine, "4"),
            ],
        )
        node_results = [node.line()["next"] for _ in range(3)]
        python.join(60)
        assert not python.is_alive()
        assert not any(isinstance(r, Exception) for r in python_results), python_results
        assert node.proc.wait(30) == 0
    seq, epoch = since.split(":")
    marker = {"position": {"seq": int(seq), "epoch": epoch}, "recovered": True, "replayed": 0}
    mine_sent = [m for m in sent if mine in (m["from"], m["to"])]
    assert [r["data"]["transactions"] for r in node_results] == [
        {"txHash": m["txHash"], "value": m["value"], "seq": m["seq"]} for m in mine_sent
    ]
    assert node_results[0]["extensions"] == {"stream": marker}
    assert all("extensions" not in r for r in node_results[1:])
    assert python_results[0] == "graphql-transport-ws"
    confirmed = [m for m in sent if m["status"] == "CONFIRMED" and int(m["value"]) >= 5]
    assert [r["data"]["transactions"] for r in python_results[1:]] == [
        {"txHash": m["txHash"], "status": "CONFIRMED", "value": m["value"]} for m in confirmed
    ]
    assert python_results[1]["extensions"] == {"stream": marker}


def test_queries_return_the_snapshot_a_snapshot_subscriber_sees(server: ServerProcess) -> None:
    """validators and peers over HTTP are the very items /ws/validators?snapshot=true and
    /ws/network?snapshot=true send (order included), and position is theirs."""
    publish(
        server,
        "validators",
        [
            validator(address(1), power=10),
            validator(address(2), "JAILED"),
            validator(address(1), "INACTIVE", power=11),
        ],
    )
    publish(server, "network", [peer("p1"), peer("p2", latency=7.5), peer("p1", connected=False)])
    fields = {
        "validators": "timestamp validator status votingPower uptime lastBlockProposed seq",
        "peers": "timestamp peerId ip connected latency version seq",
    }
    answer = graphql_http(
        server,
        f"{{ validators {{ {fields['validators']} }} peers {{ {fields['peers']} }} "
        "v: position(stream: validators) { seq epoch } "
        "n: position(stream: network) { seq epoch } }",
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    for stream, field, where in (("validators", "validators", "v"), ("network", "peers", "n")):
        with connect(server.ws(f"/ws/{stream}?snapshot=true"), open_timeout=10) as ws:
            assert recv_json(ws)["type"] == "subscribed"
            snapshot = recv_json(ws)
        assert snapshot["type"] == "snapshot"
        assert data[field] == snapshot["items"]  # 25 == 25.0: Float serializes as a float
        assert data[where] == snapshot["position"]
    assert [v["validator"] for v in data["validators"]] == [address(2), address(1)]
    assert [p["peerId"] for p in data["peers"]] == ["p2"]


def test_http_queries_mutations_and_their_refusals(server: ServerProcess) -> None:
    """POST and GET run queries; a mutation over GET is 405, a subscription over HTTP 400;
    request errors are 400 with GraphQL errors; what is not GraphQL gets the usual error."""
    publish(
        server,
        "consensus",
        [
            {
                "timestamp": "2025-10-25T09:35:10Z",
                "leader": address(3),
                "epoch": 9,
                "round": 1,
                "term": 2,
                "state": "VOTING",
                "performanceScore": 0.5,
                "activeValidators": 4,
            }
        ],
    )
    query = "query Q($n: Int) { consensus { epoch state } transactions(last: $n) { seq } }"
    for method in ("POST", "GET"):
        answer = graphql_http(server, query, {"n": 0}, method=method)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "data": {"consensus": {"epoch": 9, "state": "VOTING"}, "transactions": []}
        }
    mutation = "mutation { publish(metrics: []) { seqs } }"
    refused = graphql_http(server, mutation, method="GET")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    cases = [
        ("subscription { metrics { seq } }", "subscription_over_http"),
        ("{ metrics { nope } }", "invalid_document"),
        ("{ metrics ", "syntax_error"),
        ("query($n: Int) { transactions(last: $n) { seq } }", "invalid_variables"),
        ('{ transactions(address: ["nope"]) { seq } }', None),
    ]
    for document, code in cases:
        answer = graphql_http(server, document, {"n": "x"} if "$n" in document else None)
        if code is None:  # a bad filter value: a field error, in a 200
            assert answer.status_code == 200
            assert answer.json()["errors"][0]["extensions"]["code"] == "invalid_filter"
            continue
        assert answer.status_code == 400, (document, answer.text)
        assert answer.json()["errors"][0]["extensions"]["code"] == code
        assert "data" not in answer.json()
    accept = {"Accept": "application/graphql-response+json"}
    typed = graphql_http(server, "{ metrics { seq } }", headers=accept)
    assert typed.headers["content-type"] == "application/graphql-response+json"
    url = f"{server.http}{GRAPHQL_PATH}"
    for response, status, error in (
        (
            httpx.post(url, content=b"{", headers={"Content-Type": "application/json"}),
            400,
            "invalid_json",
        ),
        (
            httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (httpx.post(url, json=[{"query": "{ metrics { seq } }"}]), 400, "invalid_body"),
        (httpx.post(url, json={"query": "x" * 2_000_000}), 413, "payload_too_large"),
        (httpx.get(url), 400, "missing_query"),
    ):
        assert (response.status_code, response.json()["error"]) == (status, error)
    schema = httpx.get(f"{server.http}/graphql/schema.graphql")
    assert schema.status_code == 200
    assert "type Subscription {" in schema.text


def _text(client: GraphqlWs) -> str:
    message = client.ws.recv(timeout=10)
    assert isinstance(message, str)
    return message


def test_subscribers_of_one_document_receive_the_same_bytes(server: ServerProcess) -> None:
    """Three clients, one document: the same id gets byte-identical frames, another id the
    same payload bytes in its own envelope; one client selecting fewer fields gets those."""
    document = f"subscription {{ transactions {{ {TX_FIELDS} }} }}"
    since = position(server, "transactions")
    clients = [GraphqlWs(server) for _ in range(3)]
    try:
        for client, op_id in zip(clients, ("1", "1", "other"), strict=True):
            client.subscribe(
                op_id, document.replace("transactions {", f'transactions(since: "{since}") {{')
            )
        narrow = GraphqlWs(server)
        narrow.subscribe("n", f'subscription {{ transactions(since: "{since}") {{ value }} }}')
        publish(server, "transactions", [tx(n, address(5), address(6), str(n)) for n in (1, 2)])
        texts = [[_text(c) for _ in range(2)] for c in clients]
        assert texts[0] == texts[1]
        for first, third in zip(texts[0], texts[2], strict=True):
            assert first.removeprefix('{"id":"1"') == third.removeprefix('{"id":"other"')
        assert orjson.loads(texts[0][1]) == {
            "id": "1",
            "type": "next",
            "payload": {
                "data": {
                    "transactions": orjson.loads(texts[2][1])["payload"]["data"]["transactions"]
                }
            },
        }
        assert [narrow.next("n")["data"] for _ in range(2)] == [
            {"transactions": {"value": "1"}},
            {"transactions": {"value": "2"}},
        ]
        narrow.close()
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def control(server: ServerProcess) -> Iterator[GraphqlWs]:
    """A subscriber of every transaction: it must miss nothing while others misbehave."""
    client = GraphqlWs(server)
    client.subscribe(
        "c",
        f'subscription {{ transactions(since: "{position(server, "transactions")}") {{ seq }} }}',
    )
    yield client
    client.close()


def _control_sees_everything(server: ServerProcess, control: GraphqlWs) -> None:
    sent = publish(server, "transactions", [tx(n, address(7), address(8), "1") for n in (1, 2)])
    got = [control.next("c")["data"]["transactions"]["seq"] for _ in range(2)]
    assert got == [m["seq"] for m in sent]


def test_bad_operations_get_error_messages_and_the_server_serves_everyone(
    server: ServerProcess, control: GraphqlWs
) -> None:
    """A bad document, an unknown field, a bad filter, an oversized or too-deep document, too
    many operations: each gets an error message with its code, the connection stays, and
    the control subscriber misses nothing."""
    cases = [
        ("{ metrics ", "syntax_error"),
        ("subscription { transactions { nope } }", "invalid_document"),
        ('subscription { transactions(address: ["0x1"]) { seq } }', "invalid_filter"),
        ('subscription { transactions(since: "x:y:z") { seq } }', "invalid_position"),
        ("{ metrics { seq " + " " * 9000 + "} }", "document_too_large"),
        (
            "{ __schema { types { fields { type " + "{ ofType " * 13 + "{ name }" + " }" * 17,
            "too_deep",
        ),
        (
            "{ " + " ".join(f"a{i}: metrics {{ seq }}" for i in range(60)) + " }",
            "too_many_selections",
        ),
    ]
    with GraphqlWs(server) as client:
        for n, (document, code) in enumerate(cases):
            client.subscribe(str(n), document)
            errors = client.error(str(n))
            assert errors[0]["extensions"]["code"] == code, (document, errors)
        for n in range(6):  # the server's limit is 5 running operations
            client.subscribe(f"s{n}", "subscription { metrics { seq } }")
        assert client.error("s5")[0]["extensions"]["code"] == "too_many_operations"
        client.send({"id": "s0", "type": "complete"})
        client.subscribe("s6", "subscription { metrics { seq } }")  # room again
        client.send({"type": "ping"})
        assert client.recv() == {"type": "pong"}
    _control_sees_everything(server, control)


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([b"not json"], 4400),
        ([b'{"type": "launch"}'], 4400),
        ([b'{"id": "1", "type": "subscribe", "payload": {"query": "{ metrics { seq } }"}}'], 4401),
        ([b'{"type": "connection_init"}', b'{"type": "connection_init"}'], 4429),
        (
            [
                b'{"type": "connection_init"}',
                SUBSCRIBE_1,
                SUBSCRIBE_1,
            ],
            4409,
        ),
    ],
    ids=["not-json", "unknown-type", "subscribe-before-ack", "init-twice", "id-in-use"],
)
def test_protocol_violations_close_with_the_protocols_codes(
    server: ServerProcess, control: GraphqlWs, messages: list[bytes], code: int
) -> None:
    """Each violation of graphql-transport-ws closes that socket with the protocol's code
    and a reason; the control subscriber misses nothing."""
    with open_raw(server) as raw:
        for message in messages:
            raw.send_frame(OP_TEXT, message)
        close = raw.recv_until(OP_CLOSE, timeout=10)
        assert close.close_code() == code
        assert close.payload[2:]
    _control_sees_everything(server, control)


def test_legacy_and_missing_subprotocols_are_refused_before_the_upgrade(
    server: ServerProcess,
) -> None:
    """subscriptions-transport-ws (graphql-ws) and no subprotocol: 400 naming the one to use."""
    for extra in ((("Sec-WebSocket-Protocol", "graphql-ws"),), ()):
        with RawWebSocket(server.port) as raw:
            response = raw.request(GRAPHQL_PATH, extra=extra)
        assert response.status == 400
        body = response.json()
        assert body["error"] == "unsupported_subprotocol"
        assert "graphql-transport-ws" in body["detail"]
        if extra:
            assert "legacy" in body["detail"]
    with RawWebSocket(server.port) as raw:
        response = raw.request(
            f"{GRAPHQL_PATH}?stream=x", extra=(("Sec-WebSocket-Protocol", "graphql-transport-ws"),)
        )
    assert (response.status, response.json()["error"]) == (400, "invalid_query")


def test_a_client_resumes_with_since_after_a_reconnect(server: ServerProcess) -> None:
    """Reconnect with since = the last seq and the first message's epoch: the missed
    messages first (recovered true, replayed N), then live ones, with no gap."""
    document = (
        "subscription($s: String, $a: [String!]) { transactions(address: $a, since: $s) { seq } }"
    )
    mine = address(201)
    with GraphqlWs(server) as client:
        client.subscribe("r", document, {"s": position(server, "transactions"), "a": [mine]})
        publish(server, "transactions", [tx(n, mine, mine, "1") for n in (1, 2)])
        first = client.next("r")
        epoch = first["extensions"]["stream"]["position"]["epoch"]
        last = client.next("r")["data"]["transactions"]["seq"]
    missed = publish(server, "transactions", [tx(n, mine, mine, "1") for n in (3, 4, 5)])
    with GraphqlWs(server) as client:
        client.subscribe("r", document, {"s": f"{last}:{epoch}", "a": [mine]})
        live = publish(server, "transactions", [tx(6, mine, mine, "1")])
        results = [client.next("r") for _ in range(4)]
    assert [r["data"]["transactions"]["seq"] for r in results] == [
        m["seq"] for m in [*missed, *live]
    ]
    assert results[0]["extensions"]["stream"]["recovered"] is True
    assert results[0]["extensions"]["stream"]["replayed"] == 3


def test_stats_and_prometheus_count_graphql(server: ServerProcess) -> None:
    """Open /graphql sockets and GraphQL operations show in the stats endpoint and in
    Prometheus under the graphql label."""
    with GraphqlWs(server) as client:
        client.subscribe("q", "{ position(stream: metrics) { seq } }")
        client.next("q")
        stats = httpx.get(f"{server.http}/api/v11/websocket/stats").json()
        endpoint = stats["endpoints"]["graphql"]
        assert endpoint["path"] == GRAPHQL_PATH
        assert endpoint["connections"] >= 1
        assert stats["graphql"]["executed"]["query"] >= 1
        metrics = httpx.get(f"{server.http}/q/metrics").text
    assert 'aurigraph_websocket_connections_opened_total{endpoint="graphql"}' in metrics
    assert 'aurigraph_graphql_operations_total{type="query"}' in metrics


def test_history_and_position_queries_read_through_redis(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer
) -> None:
    """On a Redis broker the history and position queries answer from Redis: the same
    transactions, positions and epoch a WebSocket resume would use."""
    redis.flushall()
    with open_server(tmp_path_factory.mktemp("gql-redis"), "--broker-url", redis.url) as on_redis:
        sent = publish(
            on_redis, "transactions", [tx(n, address(1), address(2), str(n)) for n in range(1, 6)]
        )
        answer = graphql_http(
            on_redis,
            "{ transactions(last: 2) { value seq } position(stream: transactions) { seq epoch } }",
        ).json()
        assert "errors" not in answer, answer
        data = answer["data"]
        assert data["transactions"] == [{"value": m["value"], "seq": m["seq"]} for m in sent[-2:]]
        assert data["position"]["seq"] == sent[-1]["seq"]
        with connect(on_redis.ws(f"/ws/transactions?since=0:{data['position']['epoch']}")) as ws:
            head = recv_json(ws)
            assert (head["recovered"], head["position"]) == (True, data["position"])
        resumed = graphql_http(
            on_redis,
            "query($s: String) { transactions(since: $s) { seq } }",
            {"s": f"3:{data['position']['epoch']}"},
        ).json()
        assert resumed["data"]["transactions"] == [{"seq": 4}, {"seq": 5}]
