"""Starting a subscription: the starting frames first, then live events, with no seam.

:func:`attach` puts a connection on a stream. When the client asked for a
starting point (replay, since, snapshot) or is on ``/ws``, it reads the
broker's history (or the snapshot state) and queues the ``subscribed`` reply
(and the snapshot). The replayed messages then go out paced (:class:`CatchUp`,
a hub :class:`~aurigraph_stream.hub.Job`): a bounded step at a time, while the
connection's transport has room, each step reading the history after the last
message sent. When a read finds nothing newer, the subscription joins the hub
in that same synchronous step: with the in-process broker no event can be
published in between, so the last replayed message and the first live one are
consecutive. It joins with ``after=``, the hub's seq check, so that the seam
holds even for a broker whose history and delivery are not in step. A client
too slow to take its replay before the history drops what it still needs is
closed as a slow consumer (4008), as one that falls behind live traffic is.
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

__all__ = ["CatchUp", "attach", "reply"]

# One step of a replay: at most this many bytes of frames (and half the subscriber's
# buffer bound), and at most this many history events looked at.
STEP_BYTES = 65536
STEP_EVENTS = 256


def reply(node: Node, sink: Subscriber, codec: str, bits: int, frame: Mapping[str, Any]) -> None:
    """Queue one control reply behind what ``sink`` already has pending."""
    level = node.settings.compression_level
    node.hub.enqueue(sink, [control_frame(codec, bits, level, frame)])


def _replayed_frame(sub: Subscription, event: Event, level: int) -> bytes | None:
    payload = payload_of(sub, event)
    if payload is None:
        return None
    return message_frame(payload, sub.codec, sub.bits, sub.prefix, sub.suffix, level)


class CatchUp:
    """A subscription's replay, sent a bounded step at a time, then the subscription goes live.

    ``cursor`` is the seq of the last history event looked at: each step reads the
    history after it, queues the frames of the events that pass the filter (up to
    :data:`STEP_BYTES`), and moves it on.
    """

    __slots__ = ("cursor", "level", "node", "step_bytes", "sub")

    def __init__(self, node: Node, sub: Subscription, cursor: int) -> None:
        self.node = node
        self.sub = sub
        self.cursor = cursor
        self.level = node.settings.compression_level
        self.step_bytes = min(STEP_BYTES, node.settings.max_buffered_bytes // 2)

    @property
    def sink(self) -> Subscriber:
        return self.sub.sink

    def step(self) -> bool:
        sub = self.sub
        sink = sub.sink
        hub = self.node.hub
        if sub not in sink.subscriptions:  # unsubscribed, or the connection closed
            return False
        read = self.node.broker.history_now(sub.stream, self.cursor)
        if read is None or read.events is None:
            # The history no longer holds what this client has yet to get.
            hub.unsubscribe(sink)
            sink.overflow()
            return False
        frames: list[bytes] = []
        size = 0
        matches = sub.filter.matches
        for looked, event in enumerate(read.events, 1):
            self.cursor = event.seq
            if matches(event.data):
                # An event this format cannot carry is left out (and logged), as live.
                frame = _replayed_frame(sub, event, self.level)
                if frame is not None:
                    frames.append(frame)
                    size += len(frame)
            if size >= self.step_bytes or looked >= STEP_EVENTS:
                break
        hub.enqueue(sink, frames)
        if self.cursor < read.position.seq:
            return True
        hub.go_live(sub, self.cursor)  # nothing newer: live from here, in this same step
        return False


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
    replayed = start.replayed
    head: dict[str, Any] = {"type": "subscribed"}
    if sub_id is not None:
        head["id"] = sub_id
    head["stream"] = stream
    where = {"seq": position.seq, "epoch": position.epoch}
    head |= {"position": where, "recovered": start.recovered, "replayed": len(replayed)}
    frames = [control_frame(codec, bits, level, head)]
    if start.snapshot:
        items = [flt.project(m) for m in node.snapshots.items(stream) if flt.matches(m)]
        body: dict[str, Any] = {"type": "snapshot"}
        if sub_id is not None:
            body["id"] = sub_id
        body |= {"stream": stream, "position": where, "items": items}
        frames.append(snapshot_frame(codec, bits, level, body))
    hub.enqueue(sink, frames)
    if not replayed:
        return hub.subscribe(sink, stream, (codec, bits), flt, sub_id=sub_id, after=position.seq)
    # The replay starts after the event before the first replayed one; the first step
    # runs now (a short replay is all queued at once, as before), the rest paced.
    sub = hub.subscribe(sink, stream, (codec, bits), flt, sub_id=sub_id, live=False)
    job = CatchUp(node, sub, replayed[0].seq - 1)
    if job.step():
        hub.pace(job)
    return sub
