"""What an upgrade request gets, decided without a socket: route, refusals, admission."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from aurigraph_stream.access.guard import Guard
from aurigraph_stream.config import Settings
from aurigraph_stream.errors import AuthError, HandshakeRejected
from aurigraph_stream.wire.handshake import Request, parse_request
from aurigraph_stream.ws.upgrade import Admission, route_upgrade
from tests.support.rawws import upgrade_head

SECRET = "unit-test-secret-of-at-least-32-bytes!"
PEER = "127.0.0.1:40000"


def request(path: str, extra: tuple[tuple[str, str], ...] = ()) -> Request:
    return parse_request(upgrade_head(path, extra=extra)[:-4])


def admit() -> None:
    return None


def route(path: str, *, guard: Guard | None = None, **kw: Any) -> Any:
    return route_upgrade(guard or Guard(Settings()), request(path, **kw), PEER, admit)


def test_a_stream_path_routes_to_its_stream_and_subscription() -> None:
    result = route("/ws/transactions?status=CONFIRMED&replay=5&format=msgpack")
    assert (result.endpoint, result.format, result.subprotocol) == ("transactions", "msgpack", None)
    assert result.subscription is not None
    assert (result.subscription.replay, result.client) == (5, "127.0.0.1")


def test_the_multiplexed_endpoint_takes_no_subscription() -> None:
    result = route("/ws", extra=(("Sec-WebSocket-Protocol", "aurigraph.v11.protobuf"),))
    assert (result.endpoint, result.subscription) == ("ws", None)
    assert (result.format, result.subprotocol) == ("protobuf", "aurigraph.v11.protobuf")


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/ws/blocks", 404, "unknown_stream"),
        ("/elsewhere", 404, "unknown_stream"),
        ("/ws?stream=metrics", 400, "invalid_query"),
        ("/ws/transactions?status=LOST", 400, "invalid_filter"),
        ("/ws/metrics?replay=x", 400, "invalid_replay"),
        ("/ws/metrics?format=xml", 400, "unsupported_format"),
    ],
)
def test_refusals_carry_their_status_and_slug(path: str, status: int, error: str) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        route(path)
    assert (refused.value.status, refused.value.error) == (status, error)


def test_a_token_limits_the_streams_and_none_is_401() -> None:
    guard = Guard(Settings(jwt_secret=SECRET, jwt_require_exp=False))
    token = jwt.encode({"sub": "portal", "streams": ["metrics"]}, SECRET, algorithm="HS256")
    bearer = (("Authorization", f"Bearer {token}"),)
    assert route("/ws/metrics", guard=guard, extra=bearer).principal.subject == "portal"
    with pytest.raises(AuthError) as forbidden:
        route("/ws/consensus", guard=guard, extra=bearer)
    assert forbidden.value.status == 403
    with pytest.raises(AuthError) as missing:
        route("/ws/metrics", guard=guard)
    assert missing.value.status == 401


def test_one_subprotocol_header_carries_the_token_and_the_format() -> None:
    """The offered subprotocols, read once, give the token (after the bearer marker), the
    format (the first of ours) and the answer (the marker, which browsers need echoed);
    /graphql finds its protocol among them."""
    guard = Guard(Settings(jwt_secret=SECRET, jwt_require_exp=False))
    token = jwt.encode({"sub": "portal", "streams": "*"}, SECRET, algorithm="HS256")
    offer = f"aurigraph.v11.bearer, {token}, aurigraph.v11.msgpack, aurigraph.v11.json"
    result = route("/ws/metrics", guard=guard, extra=(("Sec-WebSocket-Protocol", offer),))
    assert (result.principal.subject, result.format, result.subprotocol) == (
        "portal",
        "msgpack",
        "aurigraph.v11.bearer",
    )
    offer = f"aurigraph.v11.bearer, {token}, graphql-transport-ws"
    result = route("/graphql", guard=guard, extra=(("Sec-WebSocket-Protocol", offer),))
    assert (result.endpoint, result.principal.subject) == ("graphql", "portal")
    with pytest.raises(HandshakeRejected) as refused:
        route("/graphql", extra=(("Sec-WebSocket-Protocol", "graphql-ws"),))
    assert (refused.value.status, refused.value.error) == (400, "unsupported_subprotocol")


def test_admission_is_asked_last_and_its_refusal_stands() -> None:
    """A well-formed request is still refused when the server is full or draining."""
    admission = Admission(max_connections=2, retry_after=7)

    def full() -> None:
        admission.check(2, False)

    with pytest.raises(HandshakeRejected) as refused:
        route_upgrade(Guard(Settings()), request("/ws/metrics"), PEER, full)
    assert (refused.value.status, refused.value.error) == (503, "too_many_connections")
    assert refused.value.headers == (("Retry-After", "7"),)
    with pytest.raises(HandshakeRejected) as draining:
        admission.check(0, True)
    assert draining.value.error == "shutting_down"
    admission.check(1, False)  # room for one more
