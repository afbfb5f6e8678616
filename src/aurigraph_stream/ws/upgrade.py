"""Deciding what an upgrade request gets, before the 101 is written.

The session parses and checks the HTTP head (:mod:`.session`); this module
decides whether the request may become a WebSocket and what it subscribes
to: the access checks (:mod:`aurigraph_stream.access.guard`), the path, the
format, the subscription, then admission (room for one more connection).
Every refusal is a :class:`HandshakeRejected`, answered as HTTP with a JSON
body.

``/graphql`` takes the ``graphql-transport-ws`` subprotocol and nothing else:
an upgrade that does not offer it (the legacy ``graphql-ws`` of
subscriptions-transport-ws, or none) is refused with 400
``unsupported_subprotocol`` naming the one to use, before the upgrade, like
every other refusal. Its token may also come later, in ``connection_init``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aurigraph_stream.access.guard import Guard, authorize_stream, check_upgrade_access
from aurigraph_stream.access.tokens import UNRESTRICTED, Principal
from aurigraph_stream.codecs import select_codec
from aurigraph_stream.contract import (
    GRAPHQL_ENDPOINT,
    GRAPHQL_LEGACY_PROTOCOL,
    GRAPHQL_PATH,
    GRAPHQL_PROTOCOL,
    MUX_ENDPOINT,
    MUX_PATH,
    STREAM_PATH_PREFIX,
    stream_path,
)
from aurigraph_stream.errors import HandshakeRejected, SubscriptionError, shown
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream.subscription import SubscribeRequest, from_query
from aurigraph_stream.wire.handshake import Request

__all__ = ["Admission", "Route", "route_upgrade"]


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


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether one more connection may open: the server's connection cap, and draining."""

    max_connections: int
    retry_after: int  # seconds, for the 503's Retry-After

    def check(self, open_connections: int, draining: bool) -> None:
        """Raises HandshakeRejected (503) unless one more connection may open."""
        if draining:
            raise HandshakeRejected(
                503, "shutting_down", "the server is shutting down", self._retry()
            )
        if open_connections >= self.max_connections:
            raise HandshakeRejected(
                503,
                "too_many_connections",
                f"the server holds its maximum of {self.max_connections} connections",
                self._retry(),
            )

    def _retry(self) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", str(self.retry_after)),)


def route_upgrade(guard: Guard, request: Request, peer: str, admit: Callable[[], None]) -> Route:
    """Accept or refuse an upgrade request.

    Args:
        admit: raises HandshakeRejected when no connection may open now
            (:meth:`Admission.check` with the server's current state).

    Raises:
        HandshakeRejected: 404 for a path with no stream, 503 when full or draining,
            and the refusals of :func:`check_upgrade_access` (429, 403, 401).
    """
    if request.path == GRAPHQL_PATH:
        return _graphql_route(guard, request, peer, admit)
    access = check_upgrade_access(guard, request, peer)
    if request.path == MUX_PATH:
        name = MUX_ENDPOINT  # streams are authorized per subscribe command
    else:
        path = request.path
        name = path.removeprefix(STREAM_PATH_PREFIX) if path.startswith(STREAM_PATH_PREFIX) else ""
        if name not in REGISTRY:
            raise HandshakeRejected(
                404,
                "unknown_stream",
                f"no WebSocket endpoint at {request.path}; "
                f"streams: {', '.join(stream_path(n) for n in REGISTRY)}, {MUX_PATH} "
                f"and {GRAPHQL_PATH}",
            )
        authorize_stream(access.principal, name)
    try:
        codec, answer = select_codec(access.offered, request.query.get("format"))
        subscription = _subscription(name, request)
    except SubscriptionError as exc:
        raise HandshakeRejected(400, exc.error, exc.detail) from None
    admit()
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
            f"{MUX_PATH} takes no {shown(extra[0])} parameter: streams, filters and positions "
            'go in subscribe commands ({"op": "subscribe", ...})',
        )
    return None


def _graphql_route(guard: Guard, request: Request, peer: str, admit: Callable[[], None]) -> Route:
    """An upgrade of ``/graphql``: the graphql-transport-ws subprotocol, a token now or later.

    Raises:
        HandshakeRejected: 400 ``unsupported_subprotocol`` without graphql-transport-ws,
            400 ``invalid_query`` for a query parameter other than ``token``, and the
            refusals of :func:`check_upgrade_access` and admission.
    """
    access = check_upgrade_access(guard, request, peer, token_optional=True)
    offered = access.offered
    if GRAPHQL_PROTOCOL not in offered:
        legacy = (
            f"the legacy subscriptions-transport-ws protocol ({GRAPHQL_LEGACY_PROTOCOL}) is "
            "not served; "
            if GRAPHQL_LEGACY_PROTOCOL in offered
            else ""
        )
        raise HandshakeRejected(
            400,
            "unsupported_subprotocol",
            f"{GRAPHQL_PATH} speaks GraphQL over WebSocket with the {GRAPHQL_PROTOCOL} "
            f"subprotocol (the graphql-ws library's protocol): {legacy}offer "
            f"Sec-WebSocket-Protocol: {GRAPHQL_PROTOCOL}",
        )
    extra = sorted(set(request.query) - {"token"})
    if extra:
        raise HandshakeRejected(
            400,
            "invalid_query",
            f"{GRAPHQL_PATH} takes no {shown(extra[0])} parameter: "
            "operations go in subscribe messages",
        )
    admit()
    return Route(GRAPHQL_ENDPOINT, access.principal, access.client, GRAPHQL_PROTOCOL)
