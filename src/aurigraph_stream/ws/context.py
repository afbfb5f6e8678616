"""What every WebSocket connection of one server shares."""

from __future__ import annotations

from functools import partial

from aurigraph_stream.access.guard import Guard
from aurigraph_stream.gql.service import GraphqlService
from aurigraph_stream.node import Node
from aurigraph_stream.ws.keepalive import Pingable, keepalive
from aurigraph_stream.ws.session import SessionLimits
from aurigraph_stream.ws.upgrade import Admission

__all__ = ["WsContext"]


class WsContext:
    """The node the connections subscribe to, the access guard, the limits, the open set.

    Attributes:
        open: the connections past their 101 and not yet closed (keepalive,
            admission and readiness read it).
        graphql: GraphQL, for the /graphql sockets (and the HTTP app's /graphql).
    """

    __slots__ = ("admission", "graphql", "guard", "limits", "node", "open", "settings")

    def __init__(self, node: Node, guard: Guard) -> None:
        settings = node.settings
        self.node = node
        self.guard = guard
        self.graphql = GraphqlService(node, guard)
        self.settings = settings
        self.limits = SessionLimits.from_settings(settings)
        self.admission = Admission(settings.max_connections, settings.retry_after)
        self.open: set[Pingable] = set()

    def admit(self) -> None:
        """Raises HandshakeRejected (503) when full or draining."""
        self.admission.check(len(self.open), self.node.draining)

    def start(self) -> None:
        """Start the keepalive sweep (the node's tasks stop it)."""
        settings = self.settings
        run = partial(keepalive, self.open, settings.ping_interval, settings.ping_timeout)
        self.node.tasks.spawn("keepalive", run)
