"""Filters end to end: query parameters on /ws/{stream}, filters in /ws subscribe
commands, and the refusals of bad ones. Real server, real clients."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support.server import ServerProcess, run_server
from tests.support.streamtools import (
    OPEN_ARGS,
    address,
    consensus,
    metrics,
    open_server,
    peer,
    publish,
    recv_json,
    tx,
    validator,
)

A, B, C, D = (address(n) for n in (0xA1, 0xB2, 0xC3, 0xD4))
BIG = "1" + "0" * 30  # 10**30 wei: past 64 bits
VALUES = ["9", "10", "100", "0", BIG, "999999999999999999999999"]
STATUSES = ["PENDING", "CONFIRMED", "FAILED"]

Pred = Callable[[dict[str, Any]], bool]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A quiet server (no simulator, no sampler) shared by this module's tests."""
    with open_server(tmp_path_factory.mktemp("filters")) as s:
        yield s


def _transactions(start: int) -> list[dict[str, Any]]:
    accounts = [A, B, C, D]
    out = []
    for i in range(48):
        sender, receiver = accounts[i % 4], accounts[(i // 4 + i + 1) % 4]
        if sender == receiver:
            receiver = accounts[(i + 2) % 4]
        out.append(tx(start + i, sender, receiver, VALUES[i % 6], STATUSES[i % 3]))
    return out


def _read_until(ws: ClientConnection, tx_hash: str) -> list[Any]:
    """Messages up to and including the transaction ``tx_hash`` (bounded)."""
    got = []
    for _ in range(1000):
        message = recv_json(ws)
        got.append(message)
        if message["txHash"] == tx_hash:
            return got
    raise AssertionError("no end marker within 1000 messages")


def test_transaction_filters_deliver_exactly_the_matching_messages(server: ServerProcess) -> None:
    """address (from or to), from/to lists, status, minValue (as integers), detail=summary and
    a combination each get exactly the published transactions they match, in order."""
    cases: dict[str, tuple[str, Pred]] = {
        "address": (
            f"address={A.upper().replace('0X', '0x')}",
            lambda t: A in (t["from"], t["to"]),
        ),
        "from": (f"from={A},{B}", lambda t: t["from"] in (A, B)),
        "to": (f"to={C}", lambda t: t["to"] == C),
        "status": ("status=FAILED,CONFIRMED", lambda t: t["status"] in ("FAILED", "CONFIRMED")),
        "minValue": ("minValue=10", lambda t: int(t["value"]) >= 10),
        "bigValue": (f"minValue={BIG}", lambda t: int(t["value"]) >= 10**30),
        "summary": (f"detail=summary&to={D}", lambda t: t["to"] == D),
        "combo": (
            f"from={A}&status=PENDING&minValue=100",
            lambda t: t["from"] == A and t["status"] == "PENDING" and int(t["value"]) >= 100,
        ),
    }
    with contextlib.ExitStack() as stack:
        clients = {
            name: stack.enter_context(
                connect(server.ws(f"/ws/transactions?{query}"), open_timeout=5)
            )
            for name, (query, _) in cases.items()
        }
        published = publish(server, "transactions", _transactions(1000))
        # One end marker per client, built to match its filter.
        sentinels = {
            "address": tx(9001, D, A, BIG, "PENDING"),
            "from": tx(9002, B, C, BIG, "FAILED"),
            "to": tx(9003, D, C, BIG, "CONFIRMED"),
            "status": tx(9004, C, D, BIG, "FAILED"),
            "minValue": tx(9005, C, B, BIG, "PENDING"),
            "bigValue": tx(9006, B, D, BIG, "PENDING"),
            "summary": tx(9007, C, D, BIG, "PENDING"),
            "combo": tx(9008, A, B, BIG, "PENDING"),
        }
        published += publish(server, "transactions", list(sentinels.values()))
        for name, (_, pred) in cases.items():
            marker = sentinels[name]["txHash"]
            got = _read_until(clients[name], marker)
            end = next(m["seq"] for m in published if m["txHash"] == marker)
            expected = [m for m in published if pred(m) and m["seq"] <= end]
            if name == "summary":
                expected = [
                    {"txHash": m["txHash"], "status": m["status"], "seq": m["seq"]}
                    for m in expected
                ]
            assert got == expected, name
            assert len(got) < len(published), f"{name} filtered nothing"


def _subscribe(ws: ClientConnection, sub_id: str, stream: str, flt: dict[str, Any]) -> None:
    ws.send(orjson.dumps({"op": "subscribe", "id": sub_id, "stream": stream, "filter": flt}))


def test_one_socket_carries_filtered_subscriptions_of_every_stream(server: ServerProcess) -> None:
    """On /ws, subscriptions to five streams with validator, status, peerId, connected,
    state and metrics fields/every filters each get exactly their messages, wrapped
    with their id and stream."""
    v1, v2, v3 = address(0x1001), address(0x1002), address(0x1003)
    subs: dict[str, tuple[str, dict[str, Any], Pred]] = {
        "val": ("validators", {"validator": [v1, v2]}, lambda m: m["validator"] in (v1, v2)),
        "jailed": ("validators", {"status": ["JAILED"]}, lambda m: m["status"] == "JAILED"),
        "peers": ("network", {"peerId": ["p-1", "p-2"]}, lambda m: m["peerId"] in ("p-1", "p-2")),
        "gone": ("network", {"connected": False}, lambda m: m["connected"] is False),
        "commit": (
            "consensus",
            {"state": ["COMMITTED", "VIEW_CHANGE"]},
            lambda m: m["state"] in ("COMMITTED", "VIEW_CHANGE"),
        ),
        "tps": ("metrics", {"fields": ["tps", "cpu"], "every": 3}, lambda m: m["seq"] % 3 == 0),
        "txa": ("transactions", {"address": C}, lambda m: C in (m["from"], m["to"])),
    }
    with connect(server.ws("/ws"), open_timeout=5) as ws:
        for sub_id, (stream, flt, _) in subs.items():
            _subscribe(ws, sub_id, stream, flt)
            ack = recv_json(ws)
            assert ack["type"] == "subscribed", ack
            assert (ack["id"], ack["stream"], ack["recovered"]) == (sub_id, stream, True)
        published: dict[str, list[dict[str, Any]]] = {
            "validators": publish(
                server,
                "validators",
                [validator(v, s) for v in (v1, v2, v3) for s in ("ACTIVE", "JAILED", "INACTIVE")],
            ),
            "network": publish(
                server,
                "network",
                [peer(p, c) for p in ("p-1", "p-2", "p-3") for c in (True, False)],
            ),
            "consensus": publish(
                server,
                "consensus",
                [consensus(r, s) for r in range(3) for s in ("PROPOSING", "VOTING", "COMMITTED")]
                + [consensus(3, "VIEW_CHANGE")],
            ),
            "metrics": publish(server, "metrics", [metrics(float(i)) for i in range(10)]),
            "transactions": publish(server, "transactions", _transactions(2000)[:12]),
        }
        # End markers: one more message matching each subscription.
        three = publish(server, "metrics", [metrics(0.5)] * 3)  # one has a seq divisible by 3
        ends = {
            "val": publish(server, "validators", [validator(v2, "JAILED")])[0],
            "peers": publish(server, "network", [peer("p-1", False)])[0],
            "commit": publish(server, "consensus", [consensus(9, "COMMITTED")])[0],
            "tps": next(m for m in three if m["seq"] % 3 == 0),
            "txa": publish(server, "transactions", [tx(2999, C, D, "5")])[0],
        }
        ends["jailed"], ends["gone"] = ends["val"], ends["peers"]
        for end in {e["seq"]: (k, e) for k, e in ends.items()}.values():
            published[subs[end[0]][0]].append(end[1])
        got: dict[str, list[dict[str, Any]]] = {k: [] for k in subs}
        done: set[str] = set()
        for _ in range(500):
            frame = recv_json(ws)
            assert frame["type"] == "message", frame
            assert frame["stream"] == subs[frame["id"]][0]
            got[frame["id"]].append(frame["data"])
            if frame["data"]["seq"] == ends[frame["id"]]["seq"]:
                done.add(frame["id"])
            if done == set(subs):
                break
        for sub_id, (stream, _, pred) in subs.items():
            end = ends[sub_id]["seq"]
            expected = [m for m in published[stream] if pred(m) and m["seq"] <= end]
            if sub_id == "tps":
                expected = [{"tps": m["tps"], "cpu": m["cpu"], "seq": m["seq"]} for m in expected]
            assert got[sub_id] == expected, sub_id
            assert len(got[sub_id]) < len(published[stream]), f"{sub_id} filtered nothing"


@pytest.mark.parametrize(
    ("path", "error", "words"),
    [
        ("/ws/transactions?colour=red", "invalid_filter", "unknown filter 'colour'"),
        ("/ws/transactions?minValue=abc", "invalid_filter", "minValue"),
        ("/ws/transactions?minValue=-5", "invalid_filter", "minValue"),
        ("/ws/transactions?address=0x1234", "invalid_filter", "address"),
        ("/ws/transactions?status=LOST", "invalid_filter", "LOST"),
        ("/ws/transactions?detail=everything", "invalid_filter", "detail"),
        ("/ws/metrics?every=0", "invalid_filter", "between 1 and 3600"),
        ("/ws/metrics?every=soon", "invalid_filter", "integer"),
        ("/ws/metrics?fields=tps,fps", "invalid_filter", "'fps'"),
        ("/ws/network?connected=maybe", "invalid_filter", "true or false"),
        ("/ws/consensus?state=SLEEPING", "invalid_filter", "SLEEPING"),
        ("/ws/validators?address=" + A, "invalid_filter", "unknown filter 'address'"),
        ("/ws/transactions?replay=-1", "invalid_replay", "replay"),
        ("/ws/transactions?since=abc", "invalid_position", "since"),
        ("/ws/transactions?replay=5&since=3", "invalid_position", "not both"),
        ("/ws/transactions?snapshot=true", "invalid_snapshot", "validators, network"),
        ("/ws/metrics?format=xml", "unsupported_format", "xml"),
        ("/ws?stream=metrics", "invalid_query", "subscribe commands"),
    ],
)
def test_a_bad_filter_is_refused_with_400_and_a_reason(
    server: ServerProcess, path: str, error: str, words: str
) -> None:
    """A bad filter or parameter on the handshake gets HTTP 400 and a JSON body naming it."""
    with pytest.raises(InvalidStatus) as refused, connect(server.ws(path), open_timeout=5):
        pass
    response = refused.value.response
    assert response.status_code == 400
    body = orjson.loads(response.body or b"{}")
    assert body["error"] == error
    assert words in body["detail"]


def test_bad_commands_get_error_replies_and_the_socket_stays_usable(
    server: ServerProcess,
) -> None:
    """Malformed JSON, unknown op, bad id, unknown stream, bad filters, duplicate and unknown
    ids each get an error reply naming the problem; a valid subscribe then still works."""
    with connect(server.ws("/ws"), open_timeout=5) as ws:
        ws.send(orjson.dumps({"op": "subscribe", "id": "ok", "stream": "network"}))
        assert recv_json(ws)["type"] == "subscribed"
        cases: list[tuple[Any, str, str]] = [
            ("{not json", "invalid_json", "not JSON"),
            ([1, 2], "invalid_command", "JSON object"),
            ({"op": "dance", "id": "x"}, "unknown_op", "dance"),
            ({"op": "subscribe", "id": 7, "stream": "metrics"}, "invalid_command", "id"),
            ({"op": "subscribe", "id": "x", "stream": "blocks"}, "unknown_stream", "blocks"),
            (
                {"op": "subscribe", "id": "x", "stream": "transactions", "filter": {"colour": 1}},
                "invalid_filter",
                "colour",
            ),
            (
                {"op": "subscribe", "id": "x", "stream": "transactions", "filter": {"from": 5}},
                "invalid_filter",
                "from",
            ),
            (
                {"op": "subscribe", "id": "x", "stream": "metrics", "filter": {"every": 10**6}},
                "invalid_filter",
                "between 1 and 3600",
            ),
            (
                {"op": "subscribe", "id": "x", "stream": "consensus", "snapshot": True},
                "invalid_snapshot",
                "validators",
            ),
            ({"op": "subscribe", "id": "ok", "stream": "metrics"}, "duplicate_id", "'ok'"),
            ({"op": "unsubscribe", "id": "nope"}, "unknown_id", "'nope'"),
            ({"op": "subscribe", "id": "x", "stream": "metrics", "fast": 1}, "invalid_command", ""),
        ]
        for command, error, words in cases:
            ws.send(command if isinstance(command, str) else orjson.dumps(command))
            reply = recv_json(ws)
            assert reply["type"] == "error", (command, reply)
            assert reply["error"] == error, (command, reply)
            assert words in reply["detail"], (command, reply)
        ws.send(b"\xff\xfe not UTF-8")
        assert recv_json(ws)["error"] == "invalid_command"
        ws.send(orjson.dumps({"op": "subscribe", "id": "m", "stream": "metrics"}))
        assert recv_json(ws)["id"] == "m"
        ws.send(orjson.dumps({"op": "unsubscribe", "id": "ok"}))
        assert recv_json(ws) == {"type": "unsubscribed", "id": "ok"}
        sent = publish(server, "metrics", [metrics(1.0)])[0]
        publish(server, "network", [peer("p-9")])  # unsubscribed: must not arrive
        frame = recv_json(ws)
        assert (frame["id"], frame["data"]) == ("m", sent)
        sent = publish(server, "metrics", [metrics(2.0)])[0]
        assert recv_json(ws)["data"] == sent  # nothing from the network stream came between


def test_a_subscribe_command_is_refused_for_a_stream_the_token_does_not_grant(
    tmp_path: Path,
) -> None:
    """On /ws with a token granting only metrics, subscribing to transactions gets a
    forbidden error reply, and metrics is served on the same socket."""
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    token = jwt.encode(
        {"sub": "dash", "streams": ["metrics"], "exp": int(time.time()) + 600},
        secret,
        algorithm="HS256",
    )
    with (
        run_server(*OPEN_ARGS, tmp_path=tmp_path, env={"AURIGRAPH_JWT_SECRET": secret}) as s,
        connect(s.ws(f"/ws?token={token}"), open_timeout=5) as ws,
    ):
        ws.send(orjson.dumps({"op": "subscribe", "id": "t", "stream": "transactions"}))
        refused = recv_json(ws)
        assert (refused["type"], refused["id"], refused["error"]) == ("error", "t", "forbidden")
        ws.send(orjson.dumps({"op": "subscribe", "id": "m", "stream": "metrics"}))
        assert recv_json(ws)["type"] == "subscribed"
