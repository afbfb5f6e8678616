"""/graphql under the rules every endpoint keeps: tokens (on the upgrade or in
connection_init) and their streams claim and publish scope, the slow-consumer cap (4008),
keepalive (4009), token expiry (4001), the connection-initialisation timeout (4408), and
close 1001 when the server drains."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from aurigraph_stream.contract import GRAPHQL_PATH
from tests.support.graphqltools import GraphqlWs, graphql_http, open_raw, position, raw_send
from tests.support.rawws import OP_CLOSE, OP_PING, OP_TEXT, RawWebSocket
from tests.support.server import run_server
from tests.support.streamtools import OPEN_ARGS, address, publish, tx

SECRET = "a-graphql-test-secret-long-enough-for-hs256"


def token(ttl: float = 300, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "gql", "iat": now, "exp": now + ttl, **claims}, SECRET)


def test_tokens_streams_claim_and_publish_scope(tmp_path: Path) -> None:
    """With JWT on: a token on the upgrade or in connection_init; none, or a bad one, closes
    4403 (HTTP: 401); the streams claim refuses other streams per operation; publish needs
    its scope."""
    with run_server(
        *OPEN_ARGS,
        "--auth-expiry-grace",
        "0",
        tmp_path=tmp_path,
        env={"AURIGRAPH_JWT_SECRET": SECRET},
    ) as server:
        reader = token(streams=["transactions"])
        # HTTP: no token is 401; a token lets the fields of its streams through.
        assert graphql_http(server, "{ metrics { seq } }").status_code == 401
        answer = graphql_http(
            server,
            "{ transactions(last: 1) { seq } metrics { seq } }",
            headers={"Authorization": f"Bearer {reader}"},
        ).json()
        assert answer["data"] == {"transactions": [], "metrics": None}
        assert answer["errors"][0]["extensions"]["code"] == "forbidden"
        assert answer["errors"][0]["path"] == ["metrics"]

        # The upgrade without a token is accepted; connection_init must then carry one.
        for payload, reason in ((None, "token is required"), ({"token": "x.y.z"}, "invalid")):
            client = GraphqlWs(server, init=False)
            client.send({"type": "connection_init", **({"payload": payload} if payload else {})})
            code, text = client.closed()
            assert code == 4403
            assert reason in text
            client.close()

        # A token in connection_init, or on the upgrade: its streams claim decides.
        in_init = GraphqlWs(server, init={"Authorization": f"Bearer {reader}"})
        on_upgrade = GraphqlWs(server, headers={"Authorization": f"Bearer {reader}"})
        try:
            for client in (in_init, on_upgrade):
                client.subscribe("v", "subscription { validators { seq } }")
                assert client.error("v")[0]["extensions"]["code"] == "forbidden"
                client.subscribe("t", "subscription { transactions { seq } }")
            ingest = httpx.post(
                f"{server.http}/api/v11/streams/transactions/events",
                json=tx(1, address(1), address(2), "1"),
                headers={"Authorization": f"Bearer {token(streams='*', scope='publish')}"},
            )
            (seq,) = ingest.json()["seqs"]
            for client in (in_init, on_upgrade):
                assert client.next("t")["data"] == {"transactions": {"seq": seq}}
            mutation = (
                'mutation { publish(consensus: [{timestamp: "2025-10-25T09:35:10Z", leader: '
                f'"{address(3)}", epoch: 1, round: 1, term: 1, state: VOTING, '
                "performanceScore: 0.5, activeValidators: 3}]) { seqs } }"
            )
            in_init.subscribe("p", mutation)
            refused = in_init.next("p")
            assert refused["errors"][0]["extensions"]["code"] == "forbidden"
            publisher = token(streams="*", scope="publish")
            done = graphql_http(server, mutation, headers={"Authorization": f"Bearer {publisher}"})
            assert done.json() == {"data": {"publish": {"seqs": [1]}}}
        finally:
            in_init.close()
            on_upgrade.close()

        # A bad token on the upgrade is refused before it, as on every endpoint.
        with RawWebSocket(server.port) as raw:
            response = raw.request(
                GRAPHQL_PATH,
                extra=(
                    ("Sec-WebSocket-Protocol", "graphql-transport-ws"),
                    ("Authorization", "Bearer nope"),
                ),
            )
        assert (response.status, response.json()["error"]) == (401, "invalid_token")

        # Access ends with the token: 4001 at its exp.
        short = GraphqlWs(server, init={"Authorization": f"Bearer {token(ttl=2, streams='*')}"})
        assert short.closed(timeout=10)[0] == 4001
        short.close()


def test_slow_graphql_subscriber_is_closed_4008_and_a_fast_one_misses_nothing(
    tmp_path: Path,
) -> None:
    """A /graphql subscriber that stops reading goes past --max-buffered-bytes: 4008; a
    reading one gets every message."""
    with run_server(
        *OPEN_ARGS, "--max-buffered-bytes", "65536", "--close-timeout", "60", tmp_path=tmp_path
    ) as server:
        since = position(server, "transactions")
        document = f'subscription {{ transactions(since: "{since}") {{ txHash from to value }} }}'
        slow = RawWebSocket(server.port, rcvbuf=4096)
        response = slow.request(
            GRAPHQL_PATH, extra=(("Sec-WebSocket-Protocol", "graphql-transport-ws"),)
        )
        assert response.status == 101
        raw_send(slow, {"type": "connection_init"})
        raw_send(slow, {"id": "s", "type": "subscribe", "payload": {"query": document}})
        with GraphqlWs(server) as fast:
            fast.subscribe("f", document)
            sent = 0
            closed_slow = False
            for batch in range(200):  # bounded: the cap is 64 KiB, each batch is about 60 KiB
                events = [tx(batch * 200 + i, address(1), address(2), "1" * 70) for i in range(200)]
                publish(server, "transactions", events)
                sent += len(events)
                got = [fast.next("f") for _ in range(len(events))]
                assert len(got) == len(events)
                stats = httpx.get(f"{server.http}/api/v11/websocket/stats").json()
                if stats["endpoints"]["graphql"]["slowConsumerDisconnects"]:
                    closed_slow = True
                    break
            assert closed_slow, "the slow subscriber was never cut off"
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        close = slow.recv_until(OP_CLOSE, timeout=30, limit=1_000_000)
        assert close.close_code() == 4008
        slow.sock.close()


def test_keepalive_and_init_timeout_close_graphql_sockets(tmp_path: Path) -> None:
    """A /graphql socket that never answers pings gets 4009; one that never sends
    connection_init gets 4408."""
    with (
        run_server(
            *OPEN_ARGS,
            "--ping-interval",
            "0.3",
            "--ping-timeout",
            "0.3",
            "--graphql-init-timeout",
            "30",
            tmp_path=tmp_path,
        ) as server,
        open_raw(server) as raw,
    ):
        raw_send(raw, {"type": "connection_init"})
        assert orjson.loads(raw.recv_frame().payload) == {"type": "connection_ack"}
        assert raw.recv_until(OP_PING, timeout=5).opcode == OP_PING
        assert raw.recv_until(OP_CLOSE, timeout=5).close_code() == 4009
    with run_server(*OPEN_ARGS, "--graphql-init-timeout", "0.5", tmp_path=tmp_path) as server:
        started = time.monotonic()
        with open_raw(server) as raw:
            close = raw.recv_until(OP_CLOSE, timeout=10)
        assert close.close_code() == 4408
        assert close.payload[2:] == b"connection initialisation timeout"
        assert time.monotonic() - started < 5


def test_sigterm_closes_graphql_sockets_with_1001(tmp_path: Path) -> None:
    """Draining: a /graphql subscriber gets close 1001 and the server exits 0."""
    with run_server(*OPEN_ARGS, "--close-timeout", "1", tmp_path=tmp_path) as server:
        client = GraphqlWs(server)
        client.subscribe("s", "subscription { consensus(latest: true) { round } }")
        raw = open_raw(server)
        raw.send_frame(OP_TEXT, b'{"type": "connection_init"}')
        raw.recv_frame()
        server.proc.send_signal(signal.SIGTERM)
        assert client.closed()[0] == 1001
        assert raw.recv_until(OP_CLOSE, timeout=10).close_code() == 1001
        assert server.proc.wait(20) == 0
        server.stopped = True
        client.close()
        raw.sock.close()


def test_subscriptions_share_the_connection_memory_budget(tmp_path: Path) -> None:
    """As on /ws, a /graphql connection's subscriptions are charged what their filters hold:
    those past max_connection_memory get the error memory_budget_exceeded, the connection
    and its other operations stay, and completing one frees its share."""
    with run_server(*OPEN_ARGS, "--max-connection-memory", "131072", tmp_path=tmp_path) as server:
        client = GraphqlWs(server)
        try:
            document = "subscription ($a: [String!]) { transactions(address: $a) { seq } }"
            for n in range(20):  # each holds tens of KB of addresses: 128 KiB cannot take all
                client.subscribe(
                    f"s{n}", document, {"a": [address(n * 500 + k) for k in range(500)]}
                )
            mine = address(20 * 500)
            refused: list[str] = []
            for _ in range(20):  # the refusals come first: accepted operations say nothing
                message = client.recv()
                assert message["type"] == "error", message
                assert message["payload"][0]["extensions"]["code"] == "memory_budget_exceeded"
                refused.append(message["id"])
                if message["id"] == "s19":
                    break
            assert refused, "the budget never refused a subscription"
            assert "s0" not in refused
            client.send({"id": "s0", "type": "complete"})
            # As large as s0: it fits only in the share s0 gave back.
            again = [mine] + [address(21 * 500 + k) for k in range(499)]
            client.subscribe("again", document, {"a": again})
            (seq,) = publish(server, "transactions", [tx(1, mine, address(99_999), "1")])
            assert client.next("again")["data"] == {"transactions": {"seq": seq["seq"]}}
        finally:
            client.close()
