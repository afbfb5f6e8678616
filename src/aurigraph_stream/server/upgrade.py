"""Deciding what an upgrade request gets, before the 101 is written.

The connection parses and checks the HTTP head (:mod:`aurigraph_stream.wire.handshake`);
this module decides whether the request may become a WebSocket and what it
subscribes to. Every refusal is a :class:`HandshakeRejected`, answered as
HTTP with a JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aurigraph_stream.errors import HandshakeRejected
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream.wire.handshake import Request

if TYPE_CHECKING:
    from aurigraph_stream.server.runtime import Runtime

__all__ = ["Route", "route_upgrade"]


@dataclass(frozen=True, slots=True)
class Route:
    """What an accepted upgrade becomes."""

    endpoint: str  # the stream name, which is also the stats/metrics label


def route_upgrade(runtime: Runtime, request: Request, peer: str) -> Route:
    """Accept or refuse an upgrade request.

    Raises:
        HandshakeRejected: 404 for a path with no stream, 503 when full or draining.
    """
    name = request.path.removeprefix("/ws/") if request.path.startswith("/ws/") else ""
    if name not in REGISTRY:
        raise HandshakeRejected(
            404,
            "unknown_stream",
            f"no WebSocket endpoint at {request.path}; "
            f"streams: {', '.join('/ws/' + n for n in REGISTRY)}",
        )
    runtime.admit()
    return Route(endpoint=name)
