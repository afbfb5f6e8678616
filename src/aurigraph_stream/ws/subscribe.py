"""Starting a subscription: the starting frames first, then live events, with no seam.

:func:`attach` puts a connection on a stream. When the client asked for a
starting point (replay, since, snapshot) or is on ``/ws``, it sends a
``subscribed`` frame, the snapshot and the replayed messages before any live
event, and the last replayed message and the first live one are consecutive.

- **In-process broker** (``history_now`` answers): the history read, the
  queued frames and joining the hub are one synchronous step, so no event can
  be published in between.
- **Networked broker** (Redis): the history is a round trip away. The
  subscription joins the hub at once in a *loading* state, in which the hub
  keeps the live events it would have received (as centrifuge's
  ``PubSubSync`` does); the history is read in the background; then, in one
  synchronous step, the replay is queued, followed by the kept events newer
  than the history's position, and the subscription receives live events
  from where those end. Every event published after the buffering started
  is either in the history read or among the kept events, and the seq check
  drops what is in both.

The snapshot (validators, network) is the node's own set
(:class:`~aurigraph_stream.node.snapshots.SnapshotState`), which is exactly
as of the last event the hub was given (``Broker.delivered``), so it needs
no read at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from aurigraph_stream.broker import HistoryRead
from aurigraph_stream.errors import BrokerUnavailable, SubscriptionError
from aurigraph_stream.event import Event
from aurigraph_stream.hub import Subscriber, Subscription, control_frame, message_frame, payload_of
from aurigraph_stream.hub.frames import snapshot_frame
from aurigraph_stream.node import Node
from aurigraph_stream.subscription import Start, SubscribeRequest, history_since, starting_point

__all__ = ["HISTORY_WAIT", "attach", "reply"]

HISTORY_WAIT = 10.0  # seconds a subscription waits for an unreachable broker's history

Failed = Callable[[SubscriptionError], None]


def reply(node: Node, sink: Subscriber, codec: str, bits: int, frame: Mapping[str, Any]) -> None:
    """Queue one control reply behind what ``sink`` already has pending."""
    level = node.settings.compression_level
    node.hub.enqueue(sink, [control_frame(codec, bits, level, frame)])


def _replayed_frame(sub: Subscription, event: Event, level: int) -> bytes | None:
    payload = payload_of(sub, event)
    if payload is None:
        return None
    return message_frame(payload, sub.codec, sub.bits, sub.prefix, sub.suffix, level)


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
            broker's history could not be read within :data:`HISTORY_WAIT`.
    """
    hub = node.hub
    stream, flt = request.stream, request.filter
    if not request.wants_control and sub_id is None:
        return hub.subscribe(sink, stream, (codec, bits), flt)
    control = sub_id is None  # a /ws/{stream} subscription with a starting point
    read = node.broker.history_now(stream, history_since(request))
    if read is not None:
        start = starting_point(request, read)
    elif request.since is not None or request.replay is not None:
        sub = hub.subscribe(
            sink, stream, (codec, bits), flt, sub_id=sub_id, loading=True, control=control
        )
        node.load(_load(node, sub, request, failed))
        return sub
    else:
        start = _from_delivered(node, request)
    sub = hub.subscribe(
        sink, stream, (codec, bits), flt, sub_id=sub_id, after=start.position.seq, control=control
    )
    hub.enqueue(sink, _starting_frames(node, sub, start, []))
    return sub


def _from_delivered(node: Node, request: SubscribeRequest) -> Start:
    """A start at the last event this node delivered, with no replay: a networked broker's
    snapshot-only subscription, or one whose resume failed (``recovered`` false then)."""
    position = node.broker.delivered(request.stream)
    asked = request.since is not None or request.replay is not None
    return Start(position, not asked, [], request.snapshot)


def _starting_frames(node: Node, sub: Subscription, start: Start, kept: list[Event]) -> list[bytes]:
    """The subscribed frame, the snapshot, the replay, then ``kept`` (newer live events)."""
    level = node.settings.compression_level
    flt = sub.filter
    # An event this format cannot carry is left out (and logged), as in live delivery.
    replay_frames = [
        f for f in (_replayed_frame(sub, e, level) for e in start.replayed) if f is not None
    ]
    # The live events kept while the history loaded come after the position: sent
    # whatever ``recovered`` says, as live events are.
    kept_frames = [
        f
        for f in (_replayed_frame(sub, e, level) for e in kept if flt.matches(e.data))
        if f is not None
    ]
    codec, bits = sub.codec, sub.bits
    position = start.position
    head: dict[str, Any] = {"type": "subscribed"}
    if sub.id is not None:
        head["id"] = sub.id
    head["stream"] = sub.stream
    where = {"seq": position.seq, "epoch": position.epoch}
    head |= {"position": where, "recovered": start.recovered, "replayed": len(replay_frames)}
    frames = [control_frame(codec, bits, level, head)]
    if start.snapshot:
        items = [flt.project(m) for m in node.snapshots.items(sub.stream) if flt.matches(m)]
        body: dict[str, Any] = {"type": "snapshot"}
        if sub.id is not None:
            body["id"] = sub.id
        body |= {"stream": sub.stream, "position": where, "items": items}
        frames.append(snapshot_frame(codec, bits, level, body))
    return frames + replay_frames + kept_frames


async def _read_history(node: Node, sub: Subscription, since: int | None) -> HistoryRead | None:
    """The history, retried while the broker is unreachable (bounded); None if given up."""
    deadline = time.monotonic() + HISTORY_WAIT
    delay = 0.1
    while True:
        try:
            return await node.broker.history(sub.stream, since)
        except BrokerUnavailable:
            if time.monotonic() + delay > deadline or sub not in sub.sink.subscriptions:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def _load(
    node: Node, sub: Subscription, request: SubscribeRequest, failed: Failed | None
) -> None:
    """A networked broker's history for a loading subscription, then its starting frames."""
    read = await _read_history(node, sub, history_since(request))
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
    # From here to the end: one synchronous step, no event can come in between.
    delivered = node.broker.delivered(sub.stream)
    buffered = hub.take_buffer(sub)
    start = starting_point(request, read)
    continuous = buffered is not None and delivered.epoch == read.position.epoch
    if continuous and request.since is not None and not start.recovered:
        continuous = False  # not resumed: start from what this node delivered, as live does
    if continuous:
        assert buffered is not None
        position = read.position
        kept = [e for e in buffered if e.seq > position.seq]
        frames = _starting_frames(node, sub, start, kept)
        # Live events resume after the newer of the history's last event and the last
        # one kept: those the hub holds for a later tick (its fan-out budget), or that
        # the reader has yet to hand over, follow in order.
        hub.join_after(sub, max(position.seq, buffered[-1].seq if buffered else 0))
    else:
        # Not resumed, or a reset came while loading (the history read belongs to
        # a lost epoch): the position is the last event delivered here, the
        # snapshot is as of it, and live events follow it.
        start = _from_delivered(node, request)
        frames = _starting_frames(node, sub, start, [])
        hub.join_after(sub, start.position.seq)
    hub.enqueue(sub.sink, frames)
