"""Starting a subscription: the starting frames first, then live events, with no seam.

:func:`attach` puts a connection on a stream. When the client asked for a
starting point (replay, since, snapshot) or is on ``/ws``, it reads the
broker's history (or the snapshot state) and queues the ``subscribed`` reply
(and the snapshot). The replayed messages then go out paced
(:mod:`aurigraph_stream.node.replay`, shared with GraphQL): a bounded step at a
time, while the connection's transport has room, and the subscription joins
live delivery in the step that finds nothing newer, so the last replayed
message and the first live one are consecutive.

A networked broker (Redis) cannot read its history synchronously. There the
subscription joins the hub at once in a *loading* state, in which the hub
keeps the live events it would have received, those that pass its filter (as
centrifuge's ``PubSubSync`` does); the history is read in the background; then
the starting frames are queued, and the replay, followed by the kept events
newer than the history's position, goes out paced as above (:class:`Replay`):
the subscription keeps loading until a step finds nothing newer kept, and joins
live delivery in that step. Every event published after the buffering started
is in the history read or among the kept events, and the seq check drops what
is in both. A subscription keeps at most the hub's loading limit of events:
past it (a client too slow for its replay, or a history slow to come), what
it kept no longer joins up, and it is told ``recovered: false`` from the last
event this node delivered, as after a reset. A snapshot, or a start without a
replay (``replay=0``), needs no read: the node's snapshot set is exactly as of
the last event it delivered (``Broker.delivered``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aurigraph_stream.broker import HistoryRead
from aurigraph_stream.errors import BrokerUnavailable, SubscriptionError
from aurigraph_stream.hub import Subscriber, Subscription, control_frame
from aurigraph_stream.hub.frames import snapshot_frame
from aurigraph_stream.node import Node
from aurigraph_stream.node.replay import Replay, replay
from aurigraph_stream.subscription import Start, SubscribeRequest, history_since, starting_point

__all__ = ["HISTORY_WAIT", "attach", "reply"]

HISTORY_WAIT = 10.0  # seconds a subscription waits for an unreachable broker's history

logger = logging.getLogger("aurigraph_stream.subscribe")

Failed = Callable[[SubscriptionError], None]


def reply(node: Node, sink: Subscriber, codec: str, bits: int, frame: Mapping[str, Any]) -> None:
    """Queue one control reply behind what ``sink`` already has pending."""
    level = node.settings.compression_level
    node.hub.enqueue(sink, [control_frame(codec, bits, level, frame)])


def attach(
    node: Node,
    sink: Subscriber,
    request: SubscribeRequest,
    codec: str,
    bits: int,
    sub_id: str | None = None,
    failed: Failed | None = None,
) -> Subscription:
    """Subscribe ``sink`` to the node's hub as ``request`` asks, its starting frames queued first.

    Args:
        failed: called (after the subscription was removed) when a networked
            broker's history could not be read within :data:`HISTORY_WAIT`
            (``history_unavailable``), or its loading failed (``internal_error``).
    """
    hub = node.hub
    stream, flt = request.stream, request.filter
    if not request.wants_control and sub_id is None:
        return hub.subscribe(sink, stream, (codec, bits), flt)
    control = sub_id is None  # a /ws/{stream} subscription with a starting point
    read = node.broker.history_now(stream, history_since(request))
    if read is None:
        if request.since is not None or request.replay:
            sub = hub.subscribe(
                sink, stream, (codec, bits), flt, sub_id=sub_id, loading=True, control=control
            )
            node.load(_load_or_fail(node, sub, request, failed))
            return sub
        start = _from_delivered(node, request)  # replay=0 or a snapshot: no read needed
    else:
        start = starting_point(request, read)
    position = start.position
    replayed = start.replayed
    hub.enqueue(sink, _head_frames(node, request, start, codec, bits, sub_id))
    if not replayed:
        return hub.subscribe(
            sink, stream, (codec, bits), flt, sub_id=sub_id, after=position.seq, control=control
        )
    # The replay starts after the event before the first replayed one, paced.
    sub = hub.subscribe(
        sink, stream, (codec, bits), flt, sub_id=sub_id, live=False, control=control
    )
    replay(node, sub, replayed[0].seq - 1)
    return sub


def _head_frames(
    node: Node, request: SubscribeRequest, start: Start, codec: str, bits: int, sub_id: str | None
) -> list[bytes]:
    """The subscribed frame, then the snapshot when the start has one."""
    level = node.settings.compression_level
    stream, flt = request.stream, request.filter
    position = start.position
    head: dict[str, Any] = {"type": "subscribed"}
    if sub_id is not None:
        head["id"] = sub_id
    head["stream"] = stream
    where = {"seq": position.seq, "epoch": position.epoch}
    head |= {"position": where, "recovered": start.recovered, "replayed": len(start.replayed)}
    frames = [control_frame(codec, bits, level, head)]
    if start.snapshot:
        items = [flt.project(m) for m in node.snapshots.items(stream) if flt.matches(m)]
        body: dict[str, Any] = {"type": "snapshot"}
        if sub_id is not None:
            body["id"] = sub_id
        body |= {"stream": stream, "position": where, "items": items}
        frames.append(snapshot_frame(codec, bits, level, body))
    return frames


def _from_delivered(node: Node, request: SubscribeRequest) -> Start:
    """A start at the last event this node delivered, with no replay: a networked broker's
    snapshot-only or ``replay=0`` subscription, or one whose resume or replay failed
    (``recovered`` false then)."""
    position = node.broker.delivered(request.stream)
    asked = request.since is not None or bool(request.replay)
    return Start(position, not asked, [], request.snapshot)


async def _read_history(
    node: Node, sub: Subscription, since: int | None, newest: int | None
) -> HistoryRead | None:
    """The history, retried while the broker is unreachable (bounded); None if given up.

    The last attempt may start just before :data:`HISTORY_WAIT` and take a command's
    timeout, so giving up can take a few seconds more than it.
    """
    deadline = time.monotonic() + HISTORY_WAIT
    delay = 0.1
    while True:
        try:
            return await node.broker.history(sub.stream, since, newest)
        except BrokerUnavailable:
            if time.monotonic() + delay > deadline or sub not in sub.sink.subscriptions:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def _load_or_fail(
    node: Node, sub: Subscription, request: SubscribeRequest, failed: Failed | None
) -> None:
    """:func:`_load`; if it fails, the subscription ends and the client is told.

    Not the broker being away (:func:`_read_history` retries that) but an answer it
    could not read, or a bug: without this the subscription would stay loading, the
    hub keeping its live events for ever, and the client would wait for a reply.
    """
    try:
        await _load(node, sub, request, failed)
    except Exception:
        logger.exception("subscription failed to load", extra={"stream": sub.stream})
        if sub in sub.sink.subscriptions:
            node.hub.remove(sub)
            if failed is not None:
                failed(SubscriptionError("internal_error", "the server failed to load the history"))


async def _load(
    node: Node, sub: Subscription, request: SubscribeRequest, failed: Failed | None
) -> None:
    """A networked broker's history for a loading subscription, then its starting frames
    and its paced replay."""
    since = history_since(request)
    # replay=N with no filter: the newest N are all it needs of the history.
    newest = request.replay if since is None and not request.filter.clauses else None
    read = await _read_history(node, sub, since, newest)
    hub = node.hub
    if sub not in sub.sink.subscriptions:
        return  # the client left, or unsubscribed, meanwhile
    if read is None:
        hub.remove(sub)
        if failed is not None:
            failed(
                SubscriptionError(
                    "history_unavailable",
                    f"the broker did not answer within {HISTORY_WAIT:g}s; retry later",
                )
            )
        return
    # From here to the first step of the replay: one synchronous step, no event can
    # come in between.
    delivered = node.broker.delivered(sub.stream)
    kept = hub.drain_buffer(sub)
    start = starting_point(request, read)
    continuous = kept is not None and delivered.epoch == read.position.epoch
    if continuous and request.since is not None and not start.recovered:
        continuous = False  # not resumed: start from what this node delivered, as live does
    if not continuous:
        # Not resumed, or the kept events no longer join up (a reset came while
        # loading, and the history read belongs to a lost epoch; or more came than a
        # subscription keeps): the position is the last event delivered here, the
        # snapshot is as of it, and live events follow it.
        start = _from_delivered(node, request)
        hub.take_buffer(sub)
        hub.enqueue(sub.sink, _head_frames(node, request, start, sub.codec, sub.bits, sub.id))
        hub.join_after(sub, start.position.seq)
        return
    assert kept is not None
    position = start.position
    hub.enqueue(sub.sink, _head_frames(node, request, start, sub.codec, sub.bits, sub.id))
    # The replay, then the live events kept while it loaded that are newer than it
    # (sent whatever ``recovered`` says, as live events are); those the hub holds for
    # a later tick (its fan-out budget), or that the reader has yet to hand over,
    # are kept meanwhile and follow in order.
    newer = [e for e in kept if e.seq > position.seq]
    job = Replay(node, sub, [*start.replayed, *newer], position.seq)
    if job.step():
        hub.pace(job)
