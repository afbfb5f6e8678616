"""Numbers as long as a client cares to send: refused with 400 or an error reply, never a 500.

Python refuses to read integers of more than 4,300 digits (``int()`` raises), so every
number a client sends is bounded by its length before it is read. On ``/ws/{stream}`` the
query gets HTTP 400 with the slug of the parameter; on ``/ws`` the command gets an error
reply and the socket stays open (protocol.md: a command error never closes it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.server import ServerProcess
from tests.support.streamtools import open_server, recv_json

DIGITS = "1" * 5000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with open_server(tmp_path_factory.mktemp("numbers")) as s:
        yield s


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (f"/ws/transactions?replay={DIGITS}", "invalid_replay"),
        (f"/ws/transactions?replay=0{DIGITS}", "invalid_replay"),
        (f"/ws/transactions?since={DIGITS}", "invalid_position"),
        (f"/ws/transactions?since={DIGITS}:abc", "invalid_position"),
        (f"/ws/transactions?since=1&epoch={DIGITS}", "invalid_position"),
        (f"/ws/metrics?every={DIGITS}", "invalid_filter"),
        (f"/ws/metrics?every=0{DIGITS}", "invalid_filter"),
        (f"/ws/transactions?minValue={DIGITS}", "invalid_filter"),
        (f"/ws/network?connected={DIGITS}", "invalid_filter"),
        (f"/ws/validators?snapshot={DIGITS}", "invalid_snapshot"),
    ],
    ids=[
        "replay",
        "replay-leading-zero",
        "since",
        "since-with-epoch",
        "epoch",
        "every",
        "every-leading-zero",
        "minValue",
        "connected",
        "snapshot",
    ],
)
def test_huge_numbers_in_a_query_get_400(server: ServerProcess, query: str, error: str) -> None:
    """5,000 digits where a number goes: 400 with the parameter's slug, and a short detail."""
    with pytest.raises(InvalidStatus) as refused, connect(server.ws(query), open_timeout=5):
        pass
    response = refused.value.response
    assert response.status_code == 400
    body = orjson.loads(response.body or b"{}")
    assert body["error"] == error
    assert len(body["detail"]) < 400


def _subscribe(**fields: Any) -> dict[str, Any]:
    return {"op": "subscribe", "id": "n", **fields}


COMMANDS: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("replay-string", _subscribe(stream="transactions", replay=DIGITS), "invalid_replay"),
    ("since-string", _subscribe(stream="transactions", since=DIGITS), "invalid_position"),
    (
        "since-object",
        _subscribe(stream="transactions", since={"seq": 1, "epoch": DIGITS}),
        "invalid_position",
    ),
    ("every-string", _subscribe(stream="metrics", filter={"every": DIGITS}), "invalid_filter"),
    (
        "minValue-string",
        _subscribe(stream="transactions", filter={"minValue": DIGITS}),
        "invalid_filter",
    ),
    (
        "replay-number",
        b'{"op":"subscribe","id":"n","stream":"transactions","replay":' + DIGITS.encode() + b"}",
        "invalid_json",
    ),
    (
        "every-number",
        b'{"op":"subscribe","id":"n","stream":"metrics","filter":{"every":'
        + DIGITS.encode()
        + b"}}",
        "invalid_json",
    ),
    (
        "replay-20-digits",
        b'{"op":"subscribe","id":"n","stream":"transactions","replay":18446744073709551616}',
        "invalid_replay",
    ),
    (
        "since-20-digits",
        b'{"op":"subscribe","id":"n","stream":"transactions","since":18446744073709551616}',
        "invalid_position",
    ),
    (
        "minValue-20-digits",
        b'{"op":"subscribe","id":"n","stream":"transactions","filter":'
        b'{"minValue":18446744073709551616}}',
        "invalid_filter",
    ),
    (
        "every-float",
        b'{"op":"subscribe","id":"n","stream":"metrics","filter":{"every":1e300}}',
        "invalid_filter",
    ),
]


@pytest.mark.parametrize(
    ("command", "error"), [(c, e) for _, c, e in COMMANDS], ids=[n for n, _, _ in COMMANDS]
)
def test_huge_numbers_in_a_command_get_an_error_reply(
    server: ServerProcess, command: bytes | dict[str, Any], error: str
) -> None:
    """The same on /ws: an error reply with the key's slug, and the socket stays usable."""
    with connect(server.ws("/ws"), open_timeout=5) as ws:
        ws.send(command if isinstance(command, bytes) else orjson.dumps(command))
        reply = recv_json(ws)
        assert (reply["type"], reply["error"]) == ("error", error), reply
        assert len(reply["detail"]) < 400
        ws.send(orjson.dumps(_subscribe(stream="metrics")))
        assert recv_json(ws)["type"] == "subscribed"
