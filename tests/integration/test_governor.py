"""The flush governor on a real server: a pipelined publisher of single events, hundreds of
subscribers, with the governor on and off. Only behaviour is checked (how many fan-outs the
events took, what each subscriber received), never a speed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from aurigraph_stream_client import Gap, SyncClient
from tests.support.opstools import events, get_json, publish, sample, scrape
from tests.support.rawws import OP_TEXT, RawWebSocket, read_http_response
from tests.support.server import ServerProcess, run_server

STATS = "/api/v11/websocket/stats"
SUBSCRIBERS = 600  # a flush to them takes a few ms: events queue behind it
EVENTS = 240


@contextmanager
def crowd(server: ServerProcess, path: str, n: int) -> Iterator[list[RawWebSocket]]:
    """``n`` open WebSockets on ``path`` that read nothing until the test asks."""
    with ExitStack() as stack:
        clients = [stack.enter_context(RawWebSocket(server.port)) for _ in range(n)]
        for client in clients:
            client.open(path)
        yield clients


def pipelined(server: ServerProcess, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """POST one event per request, every request written before any answer is read."""
    heads = []
    for stream, event in requests:
        body = orjson.dumps(event)
        heads.append(
            f"POST /api/v11/streams/{stream}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"".join(heads))
        buf = bytearray()
        answers = []
        for _ in requests:
            response = read_http_response(sock, buf, timeout=60)
            assert response.status == 200, response
            answers.append(response.json()["seqs"][0])
    return answers


def received(client: RawWebSocket, last: int) -> list[int]:
    """The seqs a client reads until it has ``last`` (bounded by the frames it could get)."""
    seqs: list[int] = []
    for _ in range(EVENTS + 1):
        frame = client.recv_frame(timeout=30)
        assert frame.opcode == OP_TEXT
        seqs.append(orjson.loads(frame.payload)["seq"])
        if seqs[-1] >= last:
            return seqs
    raise AssertionError(f"never got seq {last}: {seqs[-5:]}")


def requests_with_consensus_bursts() -> list[tuple[str, dict[str, Any]]]:
    """Transactions, with a burst of ten consensus states after every twenty."""
    txs = events("transactions", EVENTS)
    states = iter(events("consensus", EVENTS))
    out: list[tuple[str, dict[str, Any]]] = []
    for i, tx in enumerate(txs, start=1):
        out.append(("transactions", tx))
        if i % 20 == 0:
            out += [("consensus", next(states)) for _ in range(10)]
    return out


def run(server: ServerProcess) -> tuple[dict[str, Any], dict[str, Any], list[list[int]], list[int]]:
    """Publish the pipelined requests to 600 transaction and 3 consensus subscribers, and
    to the Python SDK subscribed to consensus on /ws.

    Returns the governor figures before and after, the consensus seqs each consensus
    subscriber received (the SDK's last), and the consensus seqs published; every
    transaction subscriber is checked here, and the SDK must see no gap.
    """
    requests = requests_with_consensus_bursts()
    with (
        crowd(server, "/ws/transactions", SUBSCRIBERS) as txs,
        crowd(server, "/ws/consensus", 3) as states,
        SyncClient(f"ws://127.0.0.1:{server.port}") as sdk,
    ):
        sdk_sub = sdk.subscribe("consensus")
        # Subscribed once a first state arrives: every client starts from it.
        (first,) = publish(server, "consensus", events("consensus", 1, start=EVENTS))
        assert sdk_sub.get(timeout=30)["seq"] == first  # type: ignore[index]
        assert all(received(client, first) == [first] for client in states)
        before = get_json(server, STATS)["governor"]
        seqs = pipelined(server, requests)
        tx_seqs = [s for s, (stream, _) in zip(seqs, requests, strict=True) if stream[0] == "t"]
        state_seqs = [s for s, (stream, _) in zip(seqs, requests, strict=True) if stream[0] == "c"]
        assert tx_seqs == list(range(1, EVENTS + 1))
        for client in txs:  # every transaction, in order, to everyone
            assert received(client, tx_seqs[-1]) == tx_seqs
        got = [received(client, state_seqs[-1]) for client in states]
        from_sdk: list[int] = []
        for _ in state_seqs:
            item = sdk_sub.get(timeout=30)
            assert not isinstance(item, Gap), item  # a conflated jump is not a loss
            assert isinstance(item, dict)
            from_sdk.append(item["seq"])
            if from_sdk[-1] == state_seqs[-1]:
                break
        got.append(from_sdk)
        after = get_json(server, STATS)["governor"]
    return before, after, got, state_seqs


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with run_server("--no-simulate", *request.param, tmp_path=tmp_path) as server:
        yield server


@pytest.mark.parametrize("server", [()], indirect=True)
def test_queued_single_events_share_fan_outs_and_latest_wins_states_conflate(
    server: ServerProcess,
) -> None:
    """Governor on: events that queue behind a fan-out wait for a held flush and share it,
    every transaction still reaches everyone in order, and consensus subscribers (the
    Python SDK among them, which reports no gap) get the newest state, in order, with the
    replaced ones counted as conflated."""
    before, after, got, state_seqs = run(server)
    flushes = after["flushes"] - before["flushes"]
    assert after["enabled"] is True
    assert after["heldFlushes"] > before["heldFlushes"]
    assert flushes < len(state_seqs) + EVENTS // 2  # several events per fan-out
    for seqs in got:
        assert seqs == sorted(set(seqs))
        assert seqs[-1] == state_seqs[-1]
        assert set(seqs) <= set(state_seqs)
    report = get_json(server, STATS)
    conflated = report["endpoints"]["consensus"]["conflated"]
    assert conflated == sum(len(state_seqs) - len(seqs) for seqs in got)
    assert conflated > 0
    # The first state went to all four subscribers before the pipelined ones.
    assert report["endpoints"]["consensus"]["messagesSent"] == 4 + sum(len(s) for s in got)
    assert report["endpoints"]["transactions"]["conflated"] == 0
    samples = scrape(server)
    assert sample(samples, "aurigraph_websocket_conflated_total", endpoint="consensus") == conflated
    assert sample(samples, "aurigraph_hub_held_flushes_total") == report["governor"]["heldFlushes"]


@pytest.mark.parametrize("server", [("--no-latency-governor",)], indirect=True)
def test_without_the_governor_each_queued_event_is_its_own_fan_out(
    server: ServerProcess,
) -> None:
    """Governor off: one fan-out (one write to each subscriber) per single-event request,
    which is what makes such a publisher fall behind; nothing is conflated."""
    before, after, got, state_seqs = run(server)
    assert after["enabled"] is False
    assert after["heldFlushes"] == before["heldFlushes"] == 0
    assert after["flushes"] - before["flushes"] >= EVENTS + len(state_seqs)
    assert all(seqs == state_seqs for seqs in got)
    assert get_json(server, STATS)["endpoints"]["consensus"]["conflated"] == 0


def test_the_slo_burn_is_the_share_of_events_over_the_target(tmp_path: Path) -> None:
    """With a target no broadcast can meet, every event counts against it, in the stats and
    in Prometheus; with the default target, events handed over at once do not."""
    for target, burned in (("0", True), ("100", False)):
        with (
            run_server("--no-simulate", "--latency-target-ms", target, tmp_path=tmp_path) as srv,
            RawWebSocket(srv.port) as client,
        ):
            client.open("/ws/transactions")
            seqs = pipelined(srv, [("transactions", e) for e in events("transactions", 5)])
            assert received(client, seqs[-1]) == seqs
            latency = get_json(srv, STATS)["endpoints"]["transactions"]["broadcastLatencyMs"]
            assert latency["count"] == 5
            assert latency["overTarget"] == (5 if burned else 0)
            assert latency["sloBurn"] == (1.0 if burned else 0.0)
            samples = scrape(srv)
            over = sample(
                samples, "aurigraph_websocket_broadcast_over_target_total", endpoint="transactions"
            )
            ratio = sample(samples, "aurigraph_websocket_slo_burn_ratio", endpoint="transactions")
            assert (over, ratio) == ((5, 1.0) if burned else (0, 0.0))
