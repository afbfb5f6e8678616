"""Paced replays: a subscription's missed messages sent a bounded step at a time, then live.

Every endpoint starts a subscription with a replay the same way (``/ws``,
``/ws/{stream}`` and GraphQL's ``since``): the subscription is held in the hub
(``live=False``), and :class:`CatchUp`, a hub :class:`~aurigraph_stream.hub.Job`,
sends the history a bounded step at a time, while the subscriber's transport
has room, each step reading the history after the last message sent. When a
read finds nothing newer, the subscription joins the hub in that same
synchronous step: with the in-process broker no event can be published in
between, so the last replayed message and the first live one are consecutive.
It joins with ``after=``, the hub's seq check, so that the seam holds even for a
broker whose history and delivery are not in step. A client too slow to take
its replay before the history drops what it still needs is closed as a slow
consumer (4008), as one that falls behind live traffic is.

Messages are made when their step runs, not when the subscription starts: a
view (a GraphQL document) renders each one then, so a thousand subscribers
resuming a thousand messages back cost the loop short slices and each
connection at most its buffer bound, never a million renders queued at once.
"""

from __future__ import annotations

from aurigraph_stream.event import Event
from aurigraph_stream.hub import Subscriber, Subscription, message_frame, payload_of
from aurigraph_stream.node.node import Node

__all__ = [
    "STEP_BYTES",
    "STEP_EVENTS",
    "STEP_RENDERS",
    "CatchUp",
    "Replay",
    "replay",
    "replayed_frame",
]

# One step of a replay: at most this many bytes of frames (and half the subscriber's
# buffer bound), at most this many history events looked at, and, for a subscription
# with a view, at most this many renderings (a GraphQL execution takes about 70 us:
# 64 of them are about 5 ms of the loop).
STEP_BYTES = 65536
STEP_EVENTS = 256
STEP_RENDERS = 64


def replayed_frame(sub: Subscription, event: Event, level: int) -> bytes | None:
    """``event`` framed as the next message ``sub`` is sent; ``None`` if it cannot be made.

    A subscription whose first message says where it started (its ``opening``,
    GraphQL's ``extensions.stream``) gets it on this one, and the usual suffix after.
    """
    payload = payload_of(sub, event)
    if payload is None:
        return None
    suffix = sub.suffix
    if sub.opening is not None:  # held, not in a group: its variant can change
        suffix, sub.opening = sub.opening, None
    return message_frame(payload, sub.codec, sub.bits, sub.prefix, suffix, level)


class _Paced:
    """What a paced job knows of its subscription: where it is, and how much one step does."""

    __slots__ = ("cursor", "level", "most", "node", "step_bytes", "sub")

    def __init__(self, node: Node, sub: Subscription, cursor: int) -> None:
        self.node = node
        self.sub = sub
        self.cursor = cursor
        self.level = node.settings.compression_level
        self.step_bytes = min(STEP_BYTES, node.settings.max_buffered_bytes // 2)
        self.most = STEP_EVENTS if sub.view is None else STEP_RENDERS  # messages made per step

    @property
    def sink(self) -> Subscriber:
        return self.sub.sink

    def gone(self) -> bool:
        """Unsubscribed, or the connection closed: nothing more to send."""
        return self.sub not in self.sub.sink.subscriptions


class CatchUp(_Paced):
    """A subscription's replay, sent a bounded step at a time, then the subscription goes live.

    ``cursor`` is the seq of the last history event looked at: each step reads the
    history after it, queues the frames of the events that pass the filter (up to
    :data:`STEP_BYTES`), and moves it on.
    """

    __slots__ = ()

    def step(self) -> bool:
        sub = self.sub
        sink = sub.sink
        hub = self.node.hub
        if self.gone():
            return False
        read = self.node.broker.history_now(sub.stream, self.cursor)
        if read is None or read.events is None:
            # The history no longer holds what this client has yet to get.
            hub.unsubscribe(sink)
            sink.overflow()
            return False
        frames: list[bytes] = []
        size = made = 0
        matches = sub.filter.matches
        for looked, event in enumerate(read.events, 1):
            self.cursor = event.seq
            if matches(event.data):
                made += 1
                # An event this format cannot carry is left out (and logged), as live.
                frame = replayed_frame(sub, event, self.level)
                if frame is not None:
                    frames.append(frame)
                    size += len(frame)
            if size >= self.step_bytes or looked >= STEP_EVENTS or made >= self.most:
                break
        hub.enqueue(sink, frames)
        if self.cursor < read.position.seq:
            return True
        hub.go_live(sub, self.cursor)  # nothing newer: live from here, in this same step
        return False


class Replay(_Paced):
    """A networked broker's replay and the live events kept while it loaded, sent a bounded
    step at a time; then the subscription, loading until then, goes live.

    ``events`` are what is left to send (already filtered), ``cursor`` the newest seq
    the start covers. When they are sent, a step takes what the hub kept meanwhile:
    the events newer than ``cursor`` are sent next; when there are none, the
    subscription joins live delivery in that same step.
    """

    __slots__ = ("at", "events")

    def __init__(self, node: Node, sub: Subscription, events: list[Event], cursor: int) -> None:
        super().__init__(node, sub, cursor)
        self.events = events
        self.at = 0

    def step(self) -> bool:
        sub = self.sub
        sink = sub.sink
        hub = self.node.hub
        if self.gone():
            return False
        events = self.events
        frames: list[bytes] = []
        size = 0
        start = at = self.at
        while at < len(events):
            event = events[at]
            at += 1
            if event.seq > self.cursor:
                self.cursor = event.seq
            # An event this format cannot carry is left out (and logged), as live.
            frame = replayed_frame(sub, event, self.level)
            if frame is not None:
                frames.append(frame)
                size += len(frame)
            if size >= self.step_bytes or at - start >= self.most:
                break
        self.at = at
        hub.enqueue(sink, frames)
        if at < len(events):
            return True
        kept = hub.drain_buffer(sub)
        if kept is None:
            # A reset, or more live events than a loading subscription keeps: what it
            # kept no longer joins up. It goes on from what this node delivered.
            hub.take_buffer(sub)
            position = self.node.broker.delivered(sub.stream)
            hub.announce(sub, position)
            hub.join_after(sub, position.seq)
            return False
        newer = [e for e in kept if e.seq > self.cursor]
        if newer:
            self.events, self.at = newer, 0
            return True
        hub.take_buffer(sub)  # nothing newer: live from here, in this same step
        hub.join_after(sub, self.cursor)
        return False


def replay(node: Node, sub: Subscription, after: int) -> None:
    """Send held ``sub`` the history after seq ``after``, paced, then let it go live.

    The first step runs now (a short replay is all queued at once), the rest a
    step per turn of the event loop, in turn with the other jobs. A subscriber
    whose transport is already full gets none now: its replay waits for it to
    drain, so a client that reads nothing and starts replay after replay makes
    the server hold no more than its buffer bound.
    """
    job = CatchUp(node, sub, after)
    if sub.sink.paused or job.step():
        node.hub.pace(job)
