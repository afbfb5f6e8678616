"""GraphQL subscriptions as hub subscriptions: one execution per group per event.

A GraphQL subscriber is a hub subscription with a view (:class:`ResultView`):
the hub groups subscribers by filter and view, and renders each event once per
group, by executing the document on it (graphql-core's
``execute_subscription_event``), then frames it once per envelope. So a
thousand subscribers of one document cost one execution per event, and a
thousand each filtering on their own address cost one execution per match.

The view's key is the canonical document, the operation's name and the
variables: what the result depends on. Views with equal keys are one object
(:func:`result_view`), holding one graphql-core ``Executor`` built once.

On the wire each result is a ``next`` message. The hub builds it by
concatenation, never by a second encoding::

    prefix   {"id":"<operation id>","type":"next","payload":
    payload  {"data":{...}[,"errors":[...]]          <- rendered once per group; left open
    suffix   }}                                      <- closes the payload and the message

The payload is left open so that the first message of a subscription can
carry where it started, ``"extensions":{"stream":{...}}``, in its own suffix
(its *opening*, :meth:`ResultView.opening`): on a replayed message, or on the
first live one. When the broker loses the stream's history (a reset), the hub
gives every subscription a new opening, ``recovered: false`` with the new
position, so the next result says so, as ``/ws`` sends a ``subscribed`` frame.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Hashable, Mapping
from inspect import isawaitable
from typing import Any

import orjson
from graphql import ExecutionResult, Executor, execute_subscription_event

from aurigraph_stream.event import Event
from aurigraph_stream.gql.operations import Operation, RequestError
from aurigraph_stream.hub import Subscriber, Subscription
from aurigraph_stream.node import Node
from aurigraph_stream.node.replay import replay
from aurigraph_stream.subscription import Start, SubscribeRequest, history_since, starting_point

__all__ = ["EventExecutor", "ResultView", "attach", "next_prefix", "open_result", "result_view"]

logger = logging.getLogger("aurigraph_stream.graphql")

SUFFIX = b"}}"
_NEXT = b',"type":"next","payload":'


def next_prefix(op_id: str) -> bytes:
    """The bytes before a result in a ``next`` message of operation ``op_id``."""
    return b'{"id":' + orjson.dumps(op_id) + _NEXT


def open_result(result: ExecutionResult) -> bytes:
    """``result`` as JSON without its closing brace (see the module docstring)."""
    body = b'{"data":' + orjson.dumps(result.data)
    if result.errors:
        body += b',"errors":' + orjson.dumps([error.formatted for error in result.errors])
    return body


class EventExecutor(Executor[Any]):
    """graphql-core's executor, whose copy for each event memoizes sub-fields for itself.

    graphql-core 3.3's per-event copies share one memo of collected sub-fields, keyed by
    the identity of each execution's field lists, which it keeps alive: an executor that
    renders every event of a subscription, as a view's does, grew by about 2 KB an event
    for as long as the view lived. Each event's fields are collected anew anyway.
    """

    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}  # this event's own (see the class docstring)
        return executor


class ResultView:
    """The result of one subscription document, executed once per event: a hub ``View``."""

    __slots__ = ("__weakref__", "_executor", "key")

    def __init__(self, key: Hashable, executor: Executor[Any]) -> None:
        self.key = key
        self._executor = executor

    def render(self, event: Event) -> bytes | None:
        try:
            result = execute_subscription_event(self._executor.build_per_event_executor(event.data))
            if isawaitable(result):  # no resolver of ours is async; refuse to block on one
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                return None
            return open_result(result)
        except Exception:  # one bad event must not stop the fan-out
            logger.exception("cannot execute a subscription on %s seq=%d", event.stream, event.seq)
            return None

    def opening(self, start: Mapping[str, Any]) -> bytes:
        """The suffix of a first result: ``extensions.stream`` is ``start``, then the braces."""
        return b',"extensions":{"stream":' + orjson.dumps(start) + b"}" + SUFFIX


_VIEWS: weakref.WeakValueDictionary[Hashable, ResultView] = weakref.WeakValueDictionary()


def result_view(operation: Operation, executor: Executor[Any]) -> ResultView:
    """The view of ``operation`` as ``executor`` runs it, shared with every equal one in use.

    Keyed by the variables as the executor coerced them, not as sent: ``"0x1…"`` and
    ``["0x1…"]`` for a list, an omitted variable and its default, or a variable the
    operation does not define, make the same results, so their subscribers share a group.
    """
    key = (
        operation.canonical,
        operation.name,
        orjson.dumps(executor.variable_values.coerced, option=orjson.OPT_SORT_KEYS),
    )
    view = _VIEWS.get(key)
    if view is None:
        view = _VIEWS[key] = ResultView(key, executor)
    return view


def attach(
    node: Node,
    sink: Subscriber,
    bits: int,
    request: SubscribeRequest,
    view: ResultView,
    op_id: str,
) -> Subscription:
    """Join ``sink`` to the hub for ``request``, rendering with ``view``, as operation ``op_id``.

    Like the WebSocket endpoints' ``attach``: the history is read (for
    ``since``) and the subscription starts where it says. Replayed results are
    rendered and sent paced (:mod:`aurigraph_stream.node.replay`: a bounded step
    per turn of the loop, while the connection has room), then the subscription
    joins live delivery with no gap. The first result carries ``extensions.stream``.

    Raises:
        RequestError: ``history_unavailable`` for ``since`` on a broker that
            cannot read its history synchronously.
    """
    hub = node.hub
    stream = request.stream
    envelope = (next_prefix(op_id), SUFFIX)
    variant = ("json", bits)
    read = node.broker.history_now(stream, history_since(request))
    if read is None:
        if request.since is not None:
            raise RequestError.single(
                "this broker cannot resume subscriptions (since)", "history_unavailable"
            )
        # A networked broker: live from the last event this node delivered, as on /ws.
        start = Start(node.broker.delivered(stream), True, [], False)
    else:
        start = starting_point(request, read)
    position = start.position
    opening = view.opening(
        {
            "position": {"seq": position.seq, "epoch": position.epoch},
            "recovered": start.recovered,
            "replayed": len(start.replayed),
        }
    )
    if not start.replayed:
        return hub.subscribe(
            sink,
            stream,
            variant,
            request.filter,
            after=position.seq,
            view=view,
            envelope=envelope,
            opening=opening,
        )
    # Held while its replay goes out, paced; the first replayed result takes the opening.
    sub = hub.subscribe(
        sink,
        stream,
        variant,
        request.filter,
        live=False,
        view=view,
        envelope=envelope,
        opening=opening,
    )
    replay(node, sub, start.replayed[0].seq - 1)
    return sub
