"""deploy/nginx/aurigraph.conf, for real: Debian's nginx in front of two nodes sharing a
real Redis. Every endpoint through it (the bare /ws, GraphQL over HTTP and WebSocket, and
the dashboard too), its handshake rate limit, the client's address reaching the nodes'
limits and logs, and a node killed behind it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from aurigraph_stream.contract import GRAPHQL_PROTOCOL
from aurigraph_stream.streams import NAMES
from tests.support.faults import Follower, Publisher, check_exactly_once
from tests.support.nginx import NginxProcess, run_nginx
from tests.support.opstools import poll
from tests.support.rawws import RawWebSocket
from tests.support.redisserver import RedisServer
from tests.support.server import ServerProcess
from tests.support.streamtools import example_event, open_server, recv_json


@dataclass
class Deployment:
    nginx: NginxProcess
    nodes: list[ServerProcess]


@contextmanager
def deployment(tmp_path: Path, redis: RedisServer, *node_args: str) -> Iterator[Deployment]:
    """nginx (the shipped file) in front of two nodes on ``redis``, which trust it."""
    redis.flushall()
    args = ("--broker-url", redis.url, "--trusted-proxies", "127.0.0.1", *node_args)
    with (
        open_server(tmp_path / "a", *args) as a,
        open_server(tmp_path / "b", *args) as b,
        run_nginx(tmp_path / "nginx", [a.port, b.port]) as nginx,
    ):
        yield Deployment(nginx, [a, b])


def _dirs(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()


def test_every_endpoint_works_through_nginx(tmp_path: Path, redis: RedisServer) -> None:
    """HTTP (streams, health, stats, metrics, docs, ingest, GraphQL, the dashboard) and
    WebSockets on the five stream paths, on the bare /ws, which `location /ws/` alone would
    not match, and on /graphql (graphql-transport-ws)."""
    _dirs(tmp_path)
    with deployment(tmp_path, redis) as d:
        http = d.nginx.http
        for path in ("/api/v11/streams", "/q/health", "/api/v11/websocket/stats", "/q/asyncapi"):
            assert httpx.get(http + path, timeout=10).status_code == 200, path
        assert "aurigraph_websocket_connections_total" in httpx.get(http + "/q/metrics").text
        # The dashboard, its assets, and GraphQL's schema.
        page = httpx.get(http + "/", timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for asset in ("/dashboard/assets/dashboard.js", "/dashboard/assets/dashboard.css"):
            assert asset in page.text
            assert httpx.get(http + asset, timeout=10).status_code == 200, asset
        assert "type Query" in httpx.get(http + "/graphql/schema.graphql", timeout=10).text
        # GraphQL over HTTP, more queries than the handshake limit's burst: only upgrades
        # count against it.
        with httpx.Client(base_url=http, timeout=10) as client:
            for _ in range(30):
                answer = client.post(
                    "/graphql", json={"query": "{ position(stream: transactions) { seq epoch } }"}
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["data"]["position"]["seq"] >= 0
        with ExitStack() as stack:
            streams = {
                name: stack.enter_context(
                    connect(f"{d.nginx.ws}/ws/{name}?replay=0", open_timeout=5)
                )
                for name in NAMES
            }
            mux = stack.enter_context(connect(f"{d.nginx.ws}/ws", open_timeout=5))
            mux.send(orjson.dumps({"op": "subscribe", "id": "t", "stream": "transactions"}))
            assert recv_json(mux)["type"] == "subscribed"
            for ws in streams.values():
                assert recv_json(ws)["type"] == "subscribed"
            for name in NAMES:
                response = httpx.post(
                    f"{http}/api/v11/streams/{name}/events", json=example_event(name), timeout=10
                )
                assert response.status_code == 200, response.text
                seq = response.json()["seqs"][0]
                assert recv_json(streams[name])["seq"] == seq
            wrapped = recv_json(mux)
            assert (wrapped["id"], wrapped["stream"]) == ("t", "transactions")
        # A GraphQL subscription through nginx: graphql-transport-ws's handshake, then the
        # transactions published after it (until one arrives: nothing acknowledges a
        # subscribe, so the first may be published before it is in place).
        with connect(
            f"{d.nginx.ws}/graphql", subprotocols=[Subprotocol(GRAPHQL_PROTOCOL)], open_timeout=5
        ) as gql:
            assert gql.subprotocol == GRAPHQL_PROTOCOL
            gql.send(orjson.dumps({"type": "connection_init"}).decode())
            assert recv_json(gql) == {"type": "connection_ack"}
            query = "subscription { transactions { seq } }"
            gql.send(orjson.dumps({"id": "g", "type": "subscribe", "payload": {"query": query}}))
            published: list[int] = []
            result = None
            for _ in range(20):
                response = httpx.post(
                    f"{http}/api/v11/streams/transactions/events",
                    json=example_event("transactions"),
                    timeout=10,
                )
                assert response.status_code == 200, response.text
                published += response.json()["seqs"]
                try:
                    result = recv_json(gql, timeout=0.5)
                    break
                except TimeoutError:
                    continue
            assert result is not None, "no GraphQL result through nginx"
            assert (result["id"], result["type"]) == ("g", "next")
            assert result["payload"]["data"]["transactions"]["seq"] in published
        # A WebSocket path that is not an endpoint is not proxied as one.
        with RawWebSocket(d.nginx.port) as raw:
            assert raw.request("/ws/unknown").status == 404


def test_a_burst_of_handshakes_from_one_address_is_limited_by_nginx(
    tmp_path: Path, redis: RedisServer
) -> None:
    """limit_req 10 r/s, burst 20: a quick run of handshakes from one address gets 429
    from nginx beyond the burst, while another address is still let through."""
    _dirs(tmp_path)
    with deployment(tmp_path, redis) as d:
        statuses = []
        for _ in range(60):
            with RawWebSocket(d.nginx.port, source="127.0.0.6") as ws:
                response = ws.request("/ws/metrics")
                statuses.append(response.status)
                if response.status != 101:
                    assert response.headers.get("server", "").startswith("nginx")
        assert statuses.count(429) > 0, statuses
        assert set(statuses) <= {101, 429}
        assert statuses[:21] == [101] * 21  # the burst (20) and the first one
        with RawWebSocket(d.nginx.port, source="127.0.0.7") as other:
            assert other.request("/ws/metrics").status == 101


def test_the_nodes_see_the_client_address_through_nginx(tmp_path: Path, redis: RedisServer) -> None:
    """With trusted_proxies set to nginx's address, a node's per-address connection limit
    counts the client's address (X-Forwarded-For), and its log names that address."""
    _dirs(tmp_path)
    with deployment(tmp_path, redis, "--max-connections-per-ip", "1") as d, ExitStack() as stack:
        statuses = []
        for _ in range(3):  # least_conn: A, B, then A again for the third
            ws = stack.enter_context(RawWebSocket(d.nginx.port, source="127.0.0.5"))
            response = ws.request("/ws/network")
            statuses.append(response.status)
            if response.status == 429:
                assert response.json()["error"] == "too_many_client_connections"
        assert statuses.count(101) == 2, statuses
        assert statuses.count(429) == 1, statuses
        # Another client address is not affected by that one's count.
        other = stack.enter_context(RawWebSocket(d.nginx.port, source="127.0.0.9"))
        assert other.request("/ws/network").status == 101
        logs = d.nodes[0].log() + d.nodes[1].log()
        assert "client=127.0.0.5" in logs
        assert "client=127.0.0.9" in logs


def test_a_node_killed_behind_nginx_its_clients_resume_on_the_survivor(
    tmp_path: Path, redis: RedisServer
) -> None:
    """kill -9 of one node: its clients reconnect through nginx, which sends them to the
    survivor, and resume with since; every seq exactly once; publishing through nginx
    goes on."""
    _dirs(tmp_path)
    with deployment(tmp_path, redis) as d:
        followers = [Follower([d.nginx.ws]) for _ in range(4)]
        for follower in followers:
            follower.start()
        poll(lambda: all(f.heads() for f in followers) or None, what="followers subscribed")
        publisher = Publisher([d.nginx.http], rate=40)
        publisher.start()
        try:
            publisher.wait_acked(20)
            d.nodes[0].stop(signal.SIGKILL)
            publisher.wait_acked(30)
        finally:
            publisher.stop()
        for follower in followers:
            follower.wait_for_seq(max(publisher.acked))
            follower.stop()
    for follower in followers:
        assert check_exactly_once(follower) == []
        assert set(publisher.acked) <= set(follower.seqs())
    assert any(f.record.connects > 1 for f in followers), "no client was on the killed node"
