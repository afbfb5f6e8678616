"""What the GraphQL fields read and do: the node's state, its history, its publish.

Every field checks the caller's rights first (the ``streams`` claim for reads,
the ``publish`` scope for the mutation) and turns the server's own errors into
GraphQL errors whose ``extensions.code`` is the slug the WebSocket endpoints
use (``forbidden``, ``invalid_filter``, ``invalid_position``, ...).

Subscriptions are not run by a resolver per subscriber. The root field's
``subscribe`` resolver only checks the request and returns a
:class:`StreamPlan` (the stream, the compiled filter, where to start); the
transport (:mod:`.transport`) turns the plan into a hub subscription, and the
hub executes the document once per group of subscribers per event
(:mod:`.subscriptions`). The root field's ``resolve`` hands the event on to its
selection set.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from graphql import GraphQLError, GraphQLResolveInfo

from aurigraph_stream.access.tokens import Principal
from aurigraph_stream.broker import HistoryRead
from aurigraph_stream.contract import MAX_REPLAY
from aurigraph_stream.errors import BrokerUnavailable, SubscriptionError, ValidationError
from aurigraph_stream.filters import OPTIONS, Filter, everything, parse_filter
from aurigraph_stream.node import Node
from aurigraph_stream.subscription import SubscribeRequest, parse_since, starting_point

T = TypeVar("T")

__all__ = [
    "QUERY_FILTERS",
    "SUBSCRIPTION_FILTERS",
    "Context",
    "StreamPlan",
    "fail",
    "filter_options",
]

# Filter options that select messages; the others (detail, fields) are projections,
# which a GraphQL selection set already is.
_SELECTING = ("list", "wei", "bool", "int")
# Delivery modes, not conditions: a query has nothing to deliver over time.
_LIVE_ONLY = ("latest", "every")


def filter_options(stream: str, *, live: bool) -> list[str]:
    """The filter options of ``stream`` that become GraphQL arguments, in declared order."""
    return [
        name
        for name, option in OPTIONS[stream].items()
        if option.kind in _SELECTING and (live or name not in _LIVE_ONLY)
    ]


SUBSCRIPTION_FILTERS = {stream: filter_options(stream, live=True) for stream in OPTIONS}
QUERY_FILTERS = {stream: filter_options(stream, live=False) for stream in OPTIONS}


@dataclass(frozen=True, slots=True)
class Context:
    """What one request (or one /graphql connection) acts as, and on what."""

    node: Node
    principal: Principal
    can_publish: bool


Info = GraphQLResolveInfo[Context]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A checked subscription, for the transport to join to the hub.

    It is what the root field's ``subscribe`` resolver returns, in place of
    the async iterator graphql-core expects there: events come from the hub,
    not from an iterator per subscriber.
    """

    request: SubscribeRequest

    def __aiter__(self) -> AsyncIterator[Any]:
        raise TypeError("a StreamPlan is joined to the hub, never iterated")


def fail(detail: str, code: str, **extra: Any) -> NoReturn:
    """Raise a GraphQL error carrying the server's slug as ``extensions.code``."""
    raise GraphQLError(detail, extensions={"code": code, **extra})


def _context(info: Info) -> Context:
    return info.context


def _readable(info: Info, stream: str) -> Context:
    context = _context(info)
    if not context.principal.can_read(stream):
        fail(f"the token does not grant the stream {stream!r}", "forbidden")
    return context


def _filter(stream: str, args: Mapping[str, Any], names: list[str]) -> Filter:
    raw = {name: args[name] for name in names if args.get(name) is not None}
    if not raw:
        return everything(stream)
    try:
        return parse_filter(stream, raw)
    except SubscriptionError as exc:
        fail(exc.detail, exc.error)


def _since(raw: str | None) -> tuple[int | None, str | None]:
    if raw is None:
        return None, None
    try:
        return parse_since(raw)
    except SubscriptionError as exc:
        fail(exc.detail, exc.error)


# -- queries ----------------------------------------------------------------------
def latest(stream: str) -> Any:
    """The resolver of a latest-message query (``metrics``, ``consensus``)."""

    def resolve(_root: Any, info: Info) -> dict[str, Any] | None:
        return _readable(info, stream).node.snapshots.latest(stream)

    return resolve


def snapshot(stream: str) -> Any:
    """The resolver of a snapshot query (``validators``, ``peers``): the current set, filtered."""

    def resolve(_root: Any, info: Info, **args: Any) -> list[dict[str, Any]]:
        node = _readable(info, stream).node
        flt = _filter(stream, args, QUERY_FILTERS[stream])
        return [m for m in node.snapshots.items(stream) if flt.matches(m)]

    return resolve


def history(stream: str) -> Any:
    """The resolver of a history query (``transactions``): kept messages, filtered.

    A broker that keeps its history in-process answers at once; a networked one
    answers asynchronously, and then the resolver returns an awaitable, which the
    executor awaits.
    """

    def resolve(_root: Any, info: Info, **args: Any) -> Any:
        node = _readable(info, stream).node
        flt = _filter(stream, args, QUERY_FILTERS[stream])
        seq, epoch = _since(args.get("since"))
        last = args.get("last")
        if last is not None and not 0 <= last <= MAX_REPLAY:
            fail(f"last must be from 0 to {MAX_REPLAY}", "invalid_replay")

        def answer(read: HistoryRead) -> list[dict[str, Any]]:
            if seq is None:
                found = [e.data for e in read.events or () if flt.matches(e.data)]
            else:  # what a subscription with this since would replay, by the same rules
                start = starting_point(SubscribeRequest(stream, flt, since=seq, epoch=epoch), read)
                if not start.recovered:
                    fail(
                        f"cannot resume after {seq}: the epoch changed, or messages after it "
                        f"are no longer kept (now {read.position.text()}); reload instead",
                        "not_recovered",
                    )
                found = [e.data for e in start.replayed]
            if last is not None:
                found = found[len(found) - last :] if last else []
            return found

        return _read(node, stream, seq, answer)

    return resolve


def position(_root: Any, info: Info, stream: str) -> Any:
    """Where a stream is now: resume a subscription from it to miss nothing after a query."""
    node = _readable(info, stream).node

    def answer(read: HistoryRead) -> dict[str, Any]:
        return {"seq": read.position.seq, "epoch": read.position.epoch}

    return _read(node, stream, sys.maxsize, answer)


def _read(
    node: Node, stream: str, since: int | None, answer: Callable[[HistoryRead], T]
) -> T | Awaitable[T]:
    """``answer`` of the stream's history: at once when the broker can, else awaited."""
    read = node.broker.history_now(stream, since)
    if read is not None:
        return answer(read)

    async def later() -> T:
        try:
            return answer(await node.broker.history(stream, since))
        except BrokerUnavailable:
            fail("the broker cannot be reached: retry later", "broker_unavailable")

    return later()


# -- the mutation -------------------------------------------------------------------
async def publish(_root: Any, info: Info, **args: Any) -> dict[str, Any]:
    """Publish events on the one stream named by the argument given, as the ingest API does."""
    context = _context(info)
    given = [(stream, events) for stream, events in args.items() if events is not None]
    if len(given) != 1:
        fail(
            f"give exactly one of {', '.join(OPTIONS)}: the events of one stream",
            "invalid_arguments",
        )
    stream, events = given[0]
    if not context.can_publish:
        fail("publishing needs a token with the publish scope", "forbidden")
    if context.node.draining:  # as the ingest API's 503: publish to another instance
        fail("the server is shutting down: publish to another instance", "shutting_down")
    if not events:
        fail("events must not be empty", "invalid_arguments")
    try:
        seqs = await context.node.publish(stream, [dict(event) for event in events])
    except ValidationError as exc:
        fail(exc.message, "validation_failed", field=exc.field, index=exc.index)
    return {"stream": stream, "accepted": len(seqs), "seqs": seqs}


# -- subscriptions ----------------------------------------------------------------------
def subscribe(stream: str) -> Any:
    """The ``subscribe`` resolver of a stream's subscription field: a checked plan."""

    def plan(_root: Any, info: Info, **args: Any) -> StreamPlan:
        _readable(info, stream)
        flt = _filter(stream, args, SUBSCRIPTION_FILTERS[stream])
        seq, epoch = _since(args.get("since"))
        return StreamPlan(SubscribeRequest(stream, flt, since=seq, epoch=epoch))

    return plan


def event(root: Any, _info: Info, **_args: Any) -> Any:
    """The ``resolve`` of a subscription field: the event is the root value of its execution."""
    return root
