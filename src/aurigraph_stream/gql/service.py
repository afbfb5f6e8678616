"""GraphQL for one server: the schema, its limits, who may do what, and the counters.

One :class:`GraphqlService` serves both transports: HTTP (``http/graphql.py``)
and the graphql-transport-ws protocol (:mod:`.transport`). Both check a request
the same way (:meth:`prepare`), run queries and mutations with graphql-core
(:meth:`execute`) and count what they did in the node's stats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import ExecutionResult, create_source_event_stream, execute
from graphql.pyutils import AwaitableOrValue

from aurigraph_stream.access.guard import Guard, authorize_publish
from aurigraph_stream.access.tokens import Principal
from aurigraph_stream.errors import AuthError
from aurigraph_stream.gql.operations import Limits, Operation, RequestError, prepare
from aurigraph_stream.gql.resolvers import Context, StreamPlan
from aurigraph_stream.gql.schema import SCHEMA
from aurigraph_stream.gql.subscriptions import EventExecutor, ResultView, result_view
from aurigraph_stream.node import Node

__all__ = ["GraphqlService"]


class GraphqlService:
    """The GraphQL side of a server, shared by its HTTP routes and its /graphql sockets."""

    def __init__(self, node: Node, guard: Guard) -> None:
        settings = node.settings
        self.node = node
        self.guard = guard
        self.schema = SCHEMA
        self.limits = Limits(
            settings.graphql_max_document_size,
            settings.graphql_max_depth,
            settings.graphql_max_selections,
        )
        self.max_operations = settings.graphql_max_operations
        # What one connection's subscriptions may hold in the hub, as on /ws.
        self.memory_budget = settings.max_connection_memory
        self.init_timeout = settings.graphql_init_timeout

    @property
    def auth(self) -> bool:
        """Whether requests must carry a token (JWT is configured)."""
        return self.guard.authenticator is not None

    # -- who ---------------------------------------------------------------------------
    def context(
        self, principal: Principal, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Context:
        """The context of a request by ``principal``; ``headers`` may hold the publisher key."""
        return Context(self.node, principal, self._may_publish(principal, headers, query))

    def _may_publish(
        self, principal: Principal, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> bool:
        if self.auth:
            return principal.can_publish
        try:  # JWT off: the publisher key, when one is set
            authorize_publish(self.guard, headers, query)
        except AuthError:
            return False
        return True

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal:
        """The principal of an HTTP request or a ``connection_init`` payload.

        Raises:
            AuthError: 401 without a valid token when auth is on.
        """
        return self.guard.authenticate(headers, query, subprotocol=False)

    # -- what ----------------------------------------------------------------------------
    def prepare(self, query: Any, operation_name: Any) -> Operation:
        """Check a document and pick its operation (:func:`.operations.prepare`).

        Raises:
            RequestError: with the first check it failed.
        """
        return prepare(self.schema, self.limits, query, operation_name)

    @staticmethod
    def variables(raw: Any) -> dict[str, Any] | None:
        """A request's ``variables``: an object or null.

        Raises:
            RequestError: ``invalid_request`` for anything else.
        """
        if raw is None or isinstance(raw, dict):
            return raw
        raise RequestError.single("variables must be an object or null", "invalid_request")

    def execute(
        self, operation: Operation, variables: dict[str, Any] | None, context: Context
    ) -> AwaitableOrValue[ExecutionResult]:
        """Run a query or mutation (awaitable when a resolver is: ``publish``).

        Raises:
            RequestError: ``invalid_variables`` when the variables do not fit their
                definitions (nothing ran: a request error, not a field error).
        """
        result = execute(
            self.schema,
            operation.document,
            context_value=context,
            variable_values=variables,
            operation_name=operation.name,
        )
        if (
            isinstance(result, ExecutionResult)
            and result.data is None
            and result.errors
            and all(error.path is None for error in result.errors)
        ):
            raise RequestError(_coded(result.errors, "invalid_variables"))
        self.count("executed", operation.kind)
        return result

    def plan(
        self, operation: Operation, variables: dict[str, Any] | None, context: Context
    ) -> tuple[StreamPlan, ResultView]:
        """Check a subscription: what to join the hub with, and the view to render with.

        Raises:
            RequestError: a bad variable, a refused stream, filter or position.
        """
        executor = EventExecutor.build(
            self.schema,
            operation.document,
            context_value=context,
            raw_variable_values=variables,
            operation_name=operation.name,
        )
        if isinstance(executor, list):
            raise RequestError(_coded(executor, "invalid_variables"))
        source = create_source_event_stream(executor)
        if isinstance(source, ExecutionResult):
            raise RequestError(_coded(source.errors or [], "invalid_subscription"))
        if not isinstance(source, StreamPlan):  # pragma: no cover - our resolvers return plans
            raise TypeError(f"unexpected subscription source {type(source).__name__}")
        self.count("executed", "subscription")
        return source, result_view(operation, executor)

    # -- counting ---------------------------------------------------------------------------
    def count(self, outcome: str, what: str) -> None:
        """Count an operation ``executed`` (by type) or ``refused`` (by error code)."""
        self.node.stats.graphql[(outcome, what)] += 1


def _coded(errors: Any, code: str) -> list[Any]:
    """``errors`` with ``extensions.code`` set where a resolver did not set one."""
    out = []
    for error in errors:
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code}
        out.append(error)
    return out
