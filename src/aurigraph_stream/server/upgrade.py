"""Deciding what an upgrade request gets, before the 101 is written.

The connection parses and checks the HTTP head (:mod:`aurigraph_stream.wire.handshake`);
this module decides whether the request may become a WebSocket and what it
subscribes to. Every refusal is a :class:`HandshakeRejected`, answered as
HTTP with a JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aurigraph_stream.codecs import select_codec
from aurigraph_stream.errors import HandshakeRejected, SubscriptionError
from aurigraph_stream.server.auth import UNRESTRICTED, Principal
from aurigraph_stream.server.security import authorize_stream, check_upgrade_access
from aurigraph_stream.server.subscribe import MUX_ENDPOINT, MUX_PATH
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream.subscription import SubscribeRequest, from_query
from aurigraph_stream.wire.handshake import Request

if TYPE_CHECKING:
    from aurigraph_stream.server.runtime import Runtime

__all__ = ["Route", "route_upgrade"]


@dataclass(frozen=True, slots=True)
class Route:
    """What an accepted upgrade becomes."""

    endpoint: str  # the stream name, which is also the stats/metrics label
    # Who the client is (server/security.py): the streams it may read, until when.
    principal: Principal = UNRESTRICTED
    client: str = ""  # client address key, for the per-address connection count
    subprotocol: str | None = None  # Sec-WebSocket-Protocol to answer with
    format: str = "json"  # the codec (codecs.CODECS) every frame is sent in
    # What a /ws/{stream} client subscribes to (filter, replay...); None on /ws.
    subscription: SubscribeRequest | None = None


def route_upgrade(runtime: Runtime, request: Request, peer: str) -> Route:
    """Accept or refuse an upgrade request.

    Raises:
        HandshakeRejected: 404 for a path with no stream, 503 when full or draining,
            and the refusals of :func:`check_upgrade_access` (429, 403, 401).
    """
    access = check_upgrade_access(runtime, request, peer)
    if request.path == MUX_PATH:
        name = MUX_ENDPOINT  # streams are authorized per subscribe command
    else:
        name = request.path.removeprefix("/ws/") if request.path.startswith("/ws/") else ""
        if name not in REGISTRY:
            raise HandshakeRejected(
                404,
                "unknown_stream",
                f"no WebSocket endpoint at {request.path}; "
                f"streams: {', '.join('/ws/' + n for n in REGISTRY)}, and {MUX_PATH}",
            )
        authorize_stream(access.principal, name)
    try:
        codec, answer = select_codec(
            request.header("sec-websocket-protocol"), request.query.get("format")
        )
        subscription = _subscription(name, request)
    except SubscriptionError as exc:
        raise HandshakeRejected(400, exc.error, exc.detail) from None
    runtime.admit()
    return Route(
        name,
        access.principal,
        access.client,
        # The bearer subprotocol, when the token came that way, is the answer
        # browsers need; the format then comes from an offered format or ?format=.
        access.subprotocol or answer,
        codec.name,
        subscription,
    )


def _subscription(name: str, request: Request) -> SubscribeRequest | None:
    """The subscription in a /ws/{stream} query string; None on /ws, which takes no filter.

    Raises:
        SubscriptionError: a bad filter or starting point; on /ws any parameter
            but format and token.
    """
    if name != MUX_ENDPOINT:
        return from_query(name, request.query)
    extra = sorted(set(request.query) - {"format", "token"})
    if extra:
        raise SubscriptionError(
            "invalid_query",
            f"{MUX_PATH} takes no {extra[0]!r} parameter: streams, filters and positions "
            'go in subscribe commands ({"op": "subscribe", ...})',
        )
    return None
