"""The graphql-transport-ws protocol on one ``/graphql`` WebSocket.

The protocol of the graphql-ws library (its PROTOCOL.md), as the server plays it::

    client                          server
    connection_init {payload?}  ->  connection_ack             (a second one: close 4429)
                                    (none within graphql_init_timeout: close 4408)
    ping {payload?}             ->  pong {payload?}            (any time)
    pong                            ignored
    subscribe {id, payload}     ->  query, mutation: next, complete
                                    subscription: next per event, until complete
                                    refused: error [GraphQL errors]
                                    (before connection_ack: close 4401;
                                     an id still running: close 4409)
    complete {id}               ->  (the operation stops; no reply)
    anything else               ->  close 4400 with the reason

``connection_init``'s payload is read like HTTP headers: ``Authorization:
Bearer <token>`` (or ``token``) authenticates the connection when the upgrade
did not, and ``X-Publisher-Key`` is the publisher key when JWT is off. A token
that is not valid closes 4403. The token's ``streams`` claim decides which
subscriptions and queries are allowed, per operation.

The handler runs on the connection's messages (as ``/ws`` commands do) and
queues its replies through the hub, so they keep their order with the
subscriptions' messages. Subscriptions are hub subscriptions
(:mod:`.subscriptions`); they leave with the connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError

from aurigraph_stream.access.tokens import ANONYMOUS, Principal
from aurigraph_stream.contract import MAX_ID_LENGTH, CloseCode
from aurigraph_stream.errors import AuthError
from aurigraph_stream.gql.operations import RequestError
from aurigraph_stream.gql.resolvers import Context
from aurigraph_stream.gql.service import GraphqlService
from aurigraph_stream.gql.subscriptions import attach
from aurigraph_stream.hub import Subscriber, Subscription, build_frame, subscription_bytes
from aurigraph_stream.wire.frames import Opcode

__all__ = ["GraphqlSocket"]

logger = logging.getLogger("aurigraph_stream.graphql")

Close = Callable[[CloseCode, str | None], None]

_ACK = b'{"type":"connection_ack"}'
_PONG = b'{"type":"pong"}'


class _Invalid(Exception):
    """A message the protocol does not define: the socket closes with 4400 and this reason."""


def _operation_id(message: dict[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise _Invalid(f"{message['type']} needs an id: a non-empty string")
    if len(op_id) > MAX_ID_LENGTH:
        raise _Invalid(f"an id has at most {MAX_ID_LENGTH} characters")
    return op_id


def _payload(message: dict[str, Any]) -> dict[str, Any] | None:
    payload = message.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise _Invalid(f"the payload of {message['type']} must be an object")
    return payload


class GraphqlSocket:
    """The protocol state of one ``/graphql`` connection and its running operations.

    Args:
        principal: what the upgrade's token granted; :data:`ANONYMOUS` when it
            carried none (then ``connection_init`` must, when auth is on).
        headers: the upgrade's headers, for the publisher key.
        close: closes the connection with a code and a reason.
        authorized: called with the principal once the connection is acknowledged
            (the connection closes when its token expires).
    """

    __slots__ = (
        "authorized",
        "bits",
        "close",
        "context",
        "done",
        "headers",
        "held",
        "mutations",
        "operations",
        "principal",
        "service",
        "sink",
        "timer",
    )

    def __init__(
        self,
        service: GraphqlService,
        sink: Subscriber,
        bits: int,
        principal: Principal,
        headers: dict[str, str],
        *,
        close: Close,
        authorized: Callable[[Principal], None],
    ) -> None:
        self.service = service
        self.sink = sink
        self.bits = bits
        self.principal = principal
        self.headers = headers
        self.close = close
        self.authorized = authorized
        self.done = False
        self.context: Context | None = None  # set by connection_init: the connection is acked
        # id -> the hub subscription, or the task of a query or mutation still running.
        self.operations: dict[str, Subscription | asyncio.Future[ExecutionResult]] = {}
        # Mutations still running, completed or not: they run to their end (a publish is
        # never half done), and this holds them until they do.
        self.mutations: set[asyncio.Future[ExecutionResult]] = set()
        self.held = 0  # bytes the subscriptions hold in the hub (max_connection_memory)
        loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = loop.call_later(
            service.init_timeout, self._init_timeout
        )

    # -- in ---------------------------------------------------------------------------
    def handle(self, data: str | bytes) -> None:
        """Act on one message from the client."""
        if self.done:
            return
        try:
            message = self._parse(data)
            kind = message["type"]
            if kind == "subscribe":
                self._subscribe(message)
            elif kind == "complete":
                self._complete(_operation_id(message))
            elif kind == "ping":
                payload = _payload(message)
                self._send(_PONG if payload is None else _message("pong", payload=payload))
            elif kind == "pong":
                _payload(message)
            elif kind == "connection_init":
                self._init(_payload(message))
            else:
                raise _Invalid(f"unknown message type {kind!r}"[:100])
        except _Invalid as exc:
            self._close(CloseCode.GRAPHQL_BAD_REQUEST, f"invalid message: {exc}")

    @staticmethod
    def _parse(data: str | bytes) -> dict[str, Any]:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _Invalid("messages are JSON objects") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _Invalid('messages are JSON objects with a "type"')
        return message

    def stop(self) -> None:
        """The connection is closing: stop the timer and the running queries (a running
        mutation runs to its end; nothing is sent for it)."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for operation in self.operations.values():
            if isinstance(operation, asyncio.Future):
                self._abandon(operation)
        self.operations.clear()
        self.held = 0

    # -- the connection -----------------------------------------------------------------
    def _close(self, code: CloseCode, reason: str | None = None) -> None:
        self.stop()
        self.close(code, reason)

    def _init_timeout(self) -> None:
        self.timer = None
        if self.context is None:
            self._close(CloseCode.GRAPHQL_INIT_TIMEOUT)

    def _init(self, payload: dict[str, Any] | None) -> None:
        if self.context is not None:
            self._close(CloseCode.GRAPHQL_TOO_MANY_INITS)
            return
        # The payload, read as headers: {"Authorization": "Bearer ..."}, {"token": ...}.
        headers = {
            k.lower(): v
            for k, v in (payload or {}).items()
            if isinstance(k, str) and isinstance(v, str)
        }
        query = {"token": headers["token"]} if "token" in headers else {}
        principal = self.principal
        if self.service.auth and ("authorization" in headers or query):
            try:
                principal = self.service.authenticate(headers, query)
            except AuthError as exc:
                self._close(CloseCode.GRAPHQL_FORBIDDEN, exc.detail)
                return
        elif principal is ANONYMOUS:
            self._close(
                CloseCode.GRAPHQL_FORBIDDEN,
                "an access token is required: Authorization: Bearer <token> in the "
                "connection_init payload, or on the upgrade",
            )
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.principal = principal
        self.context = self.service.context(principal, {**self.headers, **headers}, {})
        self.authorized(principal)
        self._send(_ACK)

    # -- operations -------------------------------------------------------------------------
    def _subscribe(self, message: dict[str, Any]) -> None:
        op_id = _operation_id(message)
        payload = _payload(message)
        if payload is None:
            raise _Invalid("subscribe needs a payload: {query, variables?, operationName?}")
        if not isinstance(payload.get("query"), str):
            raise _Invalid("the payload of subscribe needs a query string")
        for key in ("variables", "extensions"):
            if payload.get(key) is not None and not isinstance(payload[key], dict):
                raise _Invalid(f"{key} must be an object or null")
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            raise _Invalid("operationName must be a string or null")
        if self.context is None:  # not acknowledged
            self._close(CloseCode.GRAPHQL_UNAUTHORIZED)
            return
        if op_id in self.operations:
            self._close(
                CloseCode.GRAPHQL_SUBSCRIBER_EXISTS, f"Subscriber for {op_id} already exists"
            )
            return
        service = self.service
        try:
            if len(self.operations) >= service.max_operations:
                raise RequestError.single(
                    f"a connection runs at most {service.max_operations} operations at once",
                    "too_many_operations",
                )
            operation = service.prepare(payload["query"], name)
            variables = payload.get("variables")
            if operation.kind == "subscription":
                plan, view = service.plan(operation, variables, self.context)
                cost = subscription_bytes(plan.request.filter)
                if self.held + cost > service.memory_budget:
                    raise RequestError.single(
                        f"this subscription would hold about {cost} bytes; the connection's "
                        f"subscriptions may hold {service.memory_budget}, and hold {self.held}",
                        "memory_budget_exceeded",
                    )
                self.operations[op_id] = attach(
                    service.node, self.sink, self.bits, plan.request, view, op_id
                )
                self.held += cost
                return
            result = service.execute(operation, variables, self.context)
        except RequestError as exc:
            service.count("refused", exc.code)
            self._send(_message("error", op_id, [e.formatted for e in exc.errors]))
            return
        if isawaitable(result):
            task = self.operations[op_id] = asyncio.ensure_future(result)
            if operation.kind == "mutation":
                self.mutations.add(task)
            task.add_done_callback(functools.partial(self._finished, op_id))
            return
        self._result(op_id, result)

    def _finished(self, op_id: str, task: asyncio.Future[ExecutionResult]) -> None:
        self.mutations.discard(task)
        if task.cancelled():
            return  # a query the client completed, or whose connection closed
        error = task.exception()  # retrieved whether or not anyone waits for the result
        if error is not None:
            logger.error("a GraphQL operation failed", exc_info=error)
        if self.operations.get(op_id) is not task:
            return  # the client completed the operation, or the connection closed
        del self.operations[op_id]
        if error is not None:
            failure = GraphQLError("internal error", extensions={"code": "internal_error"})
            self._send(_message("error", op_id, [failure.formatted]))
            return
        self._result(op_id, task.result())

    def _result(self, op_id: str, result: ExecutionResult) -> None:
        self._send(_message("next", op_id, result.formatted))
        self._send(_message("complete", op_id))

    def _complete(self, op_id: str) -> None:
        if op_id not in self.operations:
            return  # already finished: completes cross on the wire
        operation = self.operations.pop(op_id)
        if isinstance(operation, Subscription):
            self.held -= subscription_bytes(operation.filter)
            # Its results still queued go too: nothing is sent for it after the complete,
            # and a subscribe reusing the id at once must not get them.
            self.service.node.hub.remove(operation, drop_queued=True)
        else:
            self._abandon(operation)

    def _abandon(self, task: asyncio.Future[ExecutionResult]) -> None:
        """A running operation nobody waits for: a query is cancelled (it changes nothing);
        a mutation runs to its end (a publish is never half done). No result is sent."""
        if task not in self.mutations:
            task.cancel()

    # -- out ---------------------------------------------------------------------------------
    def _send(self, body: bytes) -> None:
        node = self.service.node
        frame = build_frame(Opcode.TEXT, body, node.settings.compression_level, self.bits)
        node.hub.enqueue(self.sink, [frame])


def _message(kind: str, op_id: str | None = None, payload: Any = None) -> bytes:
    # "type" first: a subscription's results begin {"id":...,"type":"next" (its envelope,
    # subscriptions.next_prefix), and completing it drops its queued results by that prefix;
    # a query's result under the same id, finished just before, is not one of them.
    message: dict[str, Any] = {"type": kind}
    if op_id is not None:
        message["id"] = op_id
    if payload is not None:
        message["payload"] = payload
    return orjson.dumps(message)
