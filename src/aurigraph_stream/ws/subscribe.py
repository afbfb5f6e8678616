"""Starting a subscription: the starting frames first, then live events, with no seam.

:func:`attach` puts a connection on a stream. When the client asked for a
starting point (replay, since, snapshot) or is on ``/ws``, it first reads the
broker's history (or the snapshot state), queues the ``subscribed`` reply and
the replayed messages, and joins the hub, all in one synchronous step: with
the in-process broker no event can be published in between, so the last
replayed message and the first live one are consecutive. The subscription
also joins with ``after=position.seq``, the hub's seq check, so that the seam
holds even for a broker whose history and delivery are not in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurigraph_stream.errors import SubscriptionError
from aurigraph_stream.event import Event
from aurigraph_stream.hub import Subscriber, Subscription, control_frame, message_frame, payload_of
from aurigraph_stream.hub.frames import snapshot_frame
from aurigraph_stream.node import Node
from aurigraph_stream.subscription import SubscribeRequest, history_since, starting_point

__all__ = ["attach", "reply"]


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
) -> Subscription:
    """Subscribe ``sink`` to the node's hub as ``request`` asks, its starting frames queued first.

    Raises:
        SubscriptionError: ``history_unavailable`` when a starting point is asked
            of a broker that cannot read its history synchronously.
    """
    hub = node.hub
    level = node.settings.compression_level
    stream, flt = request.stream, request.filter
    if not request.wants_control and sub_id is None:
        return hub.subscribe(sink, stream, (codec, bits), flt)
    read = node.broker.history_now(stream, history_since(request))
    if read is None:
        raise SubscriptionError(
            "history_unavailable", "this broker cannot serve replay, since or snapshot"
        )
    start = starting_point(request, read)
    position = start.position
    sub = hub.subscribe(sink, stream, (codec, bits), flt, sub_id=sub_id, after=position.seq)
    # An event this format cannot carry is left out (and logged), as in live delivery.
    replay_frames = [
        frame
        for frame in (_replayed_frame(sub, e, level) for e in start.replayed)
        if frame is not None
    ]
    head: dict[str, Any] = {"type": "subscribed"}
    if sub_id is not None:
        head["id"] = sub_id
    head["stream"] = stream
    where = {"seq": position.seq, "epoch": position.epoch}
    head |= {"position": where, "recovered": start.recovered, "replayed": len(replay_frames)}
    frames = [control_frame(codec, bits, level, head)]
    if start.snapshot:
        items = [flt.project(m) for m in node.snapshots.items(stream) if flt.matches(m)]
        body: dict[str, Any] = {"type": "snapshot"}
        if sub_id is not None:
            body["id"] = sub_id
        body |= {"stream": stream, "position": where, "items": items}
        frames.append(snapshot_frame(codec, bits, level, body))
    hub.enqueue(sink, frames + replay_frames)
    return sub
