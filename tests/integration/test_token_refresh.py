"""The refresh command with real JWTs: on /ws and /ws/{stream}, in the three formats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import msgpack
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from aurigraph_stream.proto import aurigraph_v11_pb2 as pb
from tests.support.server import ServerProcess, run_server

SECRET = "a-refresh-test-secret-long-enough-for-hs256"
FORMATS = ("json", "msgpack", "protobuf")


def token(sub: str = "wallet", ttl: float = 300, streams: Any = "*", key: str = SECRET) -> str:
    now = time.time()
    claims = {"sub": sub, "iat": int(now), "exp": int(now + ttl), "streams": streams}
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """HS256 tokens, no expiry grace, metrics every 0.2 s so a live connection keeps moving."""
    with run_server(
        "--no-simulate",
        "--metrics-interval",
        "0.2",
        "--auth-expiry-grace",
        "0",
        "--log-level",
        "INFO",
        tmp_path=tmp_path_factory.mktemp("refresh"),
        env={"AURIGRAPH_JWT_SECRET": SECRET},
    ) as server:
        yield server


def decode(fmt: str, raw: str | bytes) -> dict[str, Any]:
    """One server frame as the JSON format would say it."""
    if fmt == "json":
        data: dict[str, Any] = orjson.loads(raw)
        return data
    assert isinstance(raw, bytes)
    if fmt == "msgpack":
        unpacked: dict[str, Any] = msgpack.unpackb(raw)
        return unpacked
    message = pb.ServerMessage.FromString(raw)
    body = message.WhichOneof("body")
    head: dict[str, Any] = {"id": message.id} if message.id else {}
    if body == "refreshed":
        has = message.refreshed.HasField("expiresAt")
        return head | {
            "type": "refreshed",
            "expiresAt": message.refreshed.expiresAt if has else None,
        }
    if body == "subscribed":
        return head | {"type": "subscribed", "stream": message.stream}
    if body == "unsubscribed":
        return head | {"type": "unsubscribed", "reason": message.unsubscribed.reason}
    if body == "error":
        error = message.error
        return head | {"type": "error", "op": error.op, "error": error.error}
    assert body is not None
    data = {f.name: v for f, v in getattr(message, body).ListFields()}
    if message.id:
        return head | {"type": "message", "stream": message.stream, "data": data}
    return data


def open_ws(server: ServerProcess, path: str, fmt: str, bearer: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    sep = "&" if "?" in path else "?"
    return connect(
        server.ws(f"{path}{sep}format={fmt}"), additional_headers=headers, open_timeout=5
    )


def until(ws: ClientConnection, fmt: str, kind: str, limit: int = 200) -> dict[str, Any]:
    """Read frames (bounded) until one of type ``kind``; stream messages are skipped."""
    for _ in range(limit):
        frame = decode(fmt, ws.recv(timeout=5))
        if frame.get("type") == kind:
            return frame
    raise AssertionError(f"no {kind} frame in {limit}")


def read_until_closed(ws: ClientConnection, seconds: float) -> ConnectionClosed | None:
    """Keep reading for ``seconds``; the close the server sent, or None if it stayed open."""
    deadline = time.monotonic() + seconds
    for _ in range(10_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            ws.recv(timeout=remaining)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            return exc
    raise AssertionError("the stream never paused")


def subscribe_metrics(ws: ClientConnection, fmt: str) -> None:
    ws.send(orjson.dumps({"op": "subscribe", "id": "m", "stream": "metrics"}).decode())
    assert until(ws, fmt, "subscribed")["id"] == "m"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", ["/ws", "/ws/metrics"])
def test_a_refresh_moves_the_expiry_past_the_old_exp(
    jwt_server: ServerProcess, path: str, fmt: str
) -> None:
    """The refreshed reply carries the new exp, and the connection outlives the old one, while
    a twin connection with the same short token that does not refresh is closed with 4001."""
    short = token(ttl=2)
    old_exp = jwt.decode(short, options={"verify_signature": False})["exp"]
    fresh = token(ttl=120)
    new_exp = jwt.decode(fresh, options={"verify_signature": False})["exp"]
    with open_ws(jwt_server, path, fmt, short) as ws, open_ws(jwt_server, path, fmt, short) as twin:
        if path == "/ws":
            subscribe_metrics(ws, fmt)
            subscribe_metrics(twin, fmt)
        ws.send(orjson.dumps({"op": "refresh", "token": fresh, "id": "r1"}).decode())
        reply = until(ws, fmt, "refreshed")
        assert reply == {"type": "refreshed", "id": "r1", "expiresAt": new_exp}
        wait = old_exp + 1.5 - time.time()
        assert read_until_closed(ws, wait) is None  # still open, and still receiving:
        if path == "/ws":
            assert until(ws, fmt, "message")["stream"] == "metrics"
        else:
            assert "seq" in decode(fmt, ws.recv(timeout=5))
        closed = read_until_closed(twin, 1.0)
        assert closed is not None
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "token expired")


@pytest.mark.parametrize(
    "bad",
    [
        token(sub="someone-else"),
        token(key="another-secret-that-is-also-long-enough!"),
        token(ttl=-30),
        "not.a.jwt",
    ],
    ids=["other-subject", "bad-signature", "expired", "malformed"],
)
@pytest.mark.parametrize("path", ["/ws", "/ws/metrics"])
def test_an_invalid_refresh_token_closes_with_4001(
    jwt_server: ServerProcess, path: str, bad: str
) -> None:
    """Another subject, a bad signature, an expired or a malformed token: close 4001."""
    with open_ws(jwt_server, path, "json", token()) as ws:
        ws.send(orjson.dumps({"op": "refresh", "token": bad}).decode())
        closed = read_until_closed(ws, 5)
    assert closed is not None
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "invalid token on refresh")
    jwt_server.wait_for_log("refresh refused")
    assert bad not in jwt_server.log() or bad == "not.a.jwt"


def test_a_refresh_without_a_token_is_an_error_on_ws_and_a_close_on_a_stream(
    jwt_server: ServerProcess,
) -> None:
    """No token string: on /ws the usual error reply (the connection stays); on /ws/{stream}
    close 4001. Other messages on /ws/{stream} are ignored."""
    with open_ws(jwt_server, "/ws", "json", token()) as ws:
        ws.send('{"op": "refresh", "id": "r"}')
        error = until(ws, "json", "error")
        assert (error["id"], error["op"], error["error"]) == ("r", "refresh", "invalid_command")
        subscribe_metrics(ws, "json")
    with open_ws(jwt_server, "/ws/metrics", "json", token()) as ws:
        ws.send("hello")
        ws.send('{"op": "subscribe", "id": "x", "stream": "consensus"}')
        assert "seq" in decode("json", ws.recv(timeout=5))  # ignored: still streaming
        ws.send('{"op": "refresh"}')
        closed = read_until_closed(ws, 5)
    assert closed is not None
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "invalid token on refresh")


@pytest.mark.parametrize("fmt", FORMATS)
def test_shrinking_streams_ends_those_subscriptions_on_ws(
    jwt_server: ServerProcess, fmt: str
) -> None:
    """A refresh granting only metrics ends the consensus subscription (unsubscribed, reason
    forbidden), keeps metrics, and a new consensus subscription is refused."""
    with open_ws(jwt_server, "/ws", fmt, token(streams=["metrics", "consensus"])) as ws:
        subscribe_metrics(ws, fmt)
        ws.send('{"op": "subscribe", "id": "c", "stream": "consensus"}')
        assert until(ws, fmt, "subscribed")["id"] == "c"
        ws.send(orjson.dumps({"op": "refresh", "token": token(streams=["metrics"])}).decode())
        ended = until(ws, fmt, "unsubscribed")
        assert (ended["id"], ended["reason"]) == ("c", "forbidden")
        assert until(ws, fmt, "refreshed")["type"] == "refreshed"
        assert until(ws, fmt, "message")["id"] == "m"
        ws.send('{"op": "subscribe", "id": "c2", "stream": "consensus"}')
        refused = until(ws, fmt, "error")
        assert (refused["id"], refused["error"]) == ("c2", "forbidden")


def test_shrinking_streams_closes_a_stream_endpoint_with_4003(jwt_server: ServerProcess) -> None:
    """On /ws/consensus, a refresh that no longer grants consensus closes with 4003."""
    with open_ws(jwt_server, "/ws/consensus", "json", token(streams=["consensus"])) as ws:
        ws.send(orjson.dumps({"op": "refresh", "token": token(streams=["metrics"])}).decode())
        closed = read_until_closed(ws, 5)
    assert closed is not None
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (
        4003,
        "the token no longer grants this stream",
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", ["/ws", "/ws/metrics"])
def test_with_auth_off_refresh_is_answered_with_a_null_expiry(
    live_server: ServerProcess, path: str, fmt: str
) -> None:
    """auth = none: any refresh gets refreshed with expiresAt null, and changes nothing."""
    with open_ws(live_server, path, fmt, None) as ws:
        ws.send(orjson.dumps({"op": "refresh", "token": "anything"}).decode())
        assert until(ws, fmt, "refreshed") == {"type": "refreshed", "expiresAt": None}
        if path == "/ws":
            subscribe_metrics(ws, fmt)
            assert until(ws, fmt, "message")["stream"] == "metrics"
        else:
            assert "seq" in decode(fmt, ws.recv(timeout=5))
