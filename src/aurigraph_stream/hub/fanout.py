"""Fan-out: each event is encoded, framed and compressed once per variant, and
the same bytes are queued for every subscriber of that variant.

The hub does no I/O. Frames queued during one event-loop tick are collected
per subscriber and written together by :meth:`Hub.flush`, which the server
schedules with ``loop.call_soon``: a burst of events costs each subscriber one
write, not one per event. Publishing never waits on a subscriber; one whose
unsent bytes pass ``max_buffered`` is told to go away (:meth:`Subscriber.overflow`)
instead of slowing anyone else.

Who gets an event is :mod:`.members`' business; how it becomes bytes, :mod:`.frames`'.

Encode once. Per event, a payload is encoded once per (projection, format)
and a frame built and compressed once per (projection, format, deflate,
envelope), whatever the number of groups that match: subscribers that share a
filter and format share the very same ``bytes`` object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from aurigraph_stream.filters import Filter, everything
from aurigraph_stream.hub.frames import control_frame, encode_payload, message_frame
from aurigraph_stream.hub.members import Members, Subscriber, Subscription, Variant, count_frames
from aurigraph_stream.stats import Stats

__all__ = ["Hub"]


class Hub:
    def __init__(
        self,
        stats: Stats,
        *,
        schedule: Callable[[Callable[[], None]], object],
        max_buffered: int,
        compression_level: int = 6,
        on_flush: Callable[[list[Event], float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._stats = stats
        self._schedule = schedule
        self._max_buffered = max_buffered
        self._level = compression_level
        self._on_flush = on_flush
        self._clock = clock
        self._streams: dict[str, Members] = {}
        self._dirty: list[Subscriber] = []
        self._flushed_events: list[Event] = []
        self._flush_scheduled = False

    # -- membership ---------------------------------------------------------------
    def subscribe(
        self,
        sink: Subscriber,
        stream: str,
        variant: Variant = ("json", 0),
        flt: Filter | None = None,
        *,
        sub_id: str | None = None,
        after: int | None = None,
        loading: bool = False,
        control: bool = False,
    ) -> Subscription:
        """Add a subscription of ``sink`` to ``stream``.

        Args:
            variant: (format, deflate window bits or 0).
            flt: what to deliver; ``None`` is every message in full.
            sub_id: on the multiplexed endpoint, the id each message is wrapped with.
            after: the seq the subscriber already has (a replay ended there):
                events up to it are skipped, so that a history read and live
                delivery never overlap, whatever order a broker delivers in.
            loading: the history is still being read: live events are kept for
                the subscription until :meth:`loaded` says where it starts.
            control: a /ws/{stream} subscription that gets control frames
                (on /ws, every subscription does): :meth:`reset` tells it.
        """
        sub = Subscription(sink, stream, flt or everything(stream), variant[0], variant[1], sub_id)
        sink.subscriptions.append(sub)
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = Members()
        st.count += 1
        if control:
            st.control.add(sub)
        if loading:
            st.loading[sub] = []
            st.joining.append(sub)
        elif after is not None:
            sub.after = after
            st.joining.append(sub)
        else:
            st.join(sub)
        return sub

    def take_buffer(self, sub: Subscription) -> list[Event] | None:
        """End a subscription's loading: the live events kept meanwhile, in order
        (``None`` if a reset came in between). It then waits for :meth:`join_after`.
        """
        st = self._streams[sub.stream]
        return st.loading.pop(sub)

    def join_after(self, sub: Subscription, after: int) -> None:
        """Let a subscription whose buffer was taken receive the live events after ``after``."""
        sub.after = after

    def reset(self, stream: str, position: Position) -> None:
        """The broker lost the stream's history (or events) and continues after ``position``.

        Subscriptions that get control frames are told with a ``subscribed``
        frame saying ``recovered: false`` and the new position; subscriptions
        waiting for a seq of the old history join now; those still loading
        learn that their buffer no longer joins up.
        """
        st = self._streams.get(stream)
        if st is None:
            return
        for sub in list(st.joining):
            if sub.after is not None:
                st.joining.remove(sub)
                sub.after = None
                st.join(sub)
            elif sub in st.loading:
                st.loading[sub] = None
        where = {"seq": position.seq, "epoch": position.epoch}
        for sub in st.subscriptions():
            if sub.id is None and sub not in st.control:
                continue
            frame: dict[str, Any] = {"type": "subscribed"}
            if sub.id is not None:
                frame["id"] = sub.id
            frame |= {"stream": stream, "position": where, "recovered": False, "replayed": 0}
            self.enqueue(sub.sink, [control_frame(sub.codec, sub.bits, self._level, frame)])

    def remove(self, sub: Subscription) -> None:
        """End one subscription; frames already queued for its subscriber stay queued."""
        sink = sub.sink
        if sub not in sink.subscriptions:
            return
        sink.subscriptions.remove(sub)
        sub.held = None
        st = self._streams[sub.stream]
        st.count -= 1
        st.leave(sub)

    def unsubscribe(self, sink: Subscriber) -> None:
        """Remove every subscription of ``sink``; frames it has pending are dropped. Idempotent."""
        for sub in list(sink.subscriptions):
            self.remove(sub)
        if sink.pending is not None:
            sink.counters.failed_sends += count_frames(sink.pending)
            sink.pending = None

    def subscribers(self, stream: str) -> int:
        """Subscriptions of ``stream`` (a connection on /ws may hold several)."""
        st = self._streams.get(stream)
        return st.count if st is not None else 0

    # -- delivery -------------------------------------------------------------------
    def enqueue(self, sink: Subscriber, frames: list[bytes]) -> None:
        """Queue frames built for one subscriber (replies, replays) behind its pending ones."""
        if not frames:
            return
        pending = sink.pending
        if pending is None:
            sink.pending = list(frames)
            self._dirty.append(sink)
        elif isinstance(pending, list):
            pending.extend(frames)
        else:
            sink.pending = [pending, *frames]
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule(self.flush)

    def resume(self, sink: Subscriber) -> None:
        """The transport drained: queue what latest-wins subscriptions held back."""
        sink.paused = False
        held = []
        for sub in sink.subscriptions:
            if sub.held is not None:
                held.append(sub.held)
                sub.held = None
        self.enqueue(sink, held)

    def publish(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for their subscribers; they are written at the next flush."""
        dirty = self._dirty
        level = self._level
        for event in events:
            self._flushed_events.append(event)
            st = self._streams.get(event.stream)
            if st is None:
                continue
            if st.joining:
                st.admit(event)
            data = event.data
            matched = st.matching(data)
            if not matched:
                continue
            counters = self._stats.endpoints[event.stream]
            payloads: dict[tuple[Any, str], bytes | None] = {}
            frames: dict[tuple[Any, ...], bytes] = {}
            for group in matched:
                projection = group.filter.projection
                latest = group.filter.latest
                for vkey, members in group.variants.items():
                    codec_name, bits, prefix, suffix = vkey
                    pkey = (projection, codec_name)
                    if pkey in payloads:
                        payload = payloads[pkey]
                    else:
                        payload = payloads[pkey] = encode_payload(event, group.filter, codec_name)
                    if payload is None:  # this format cannot carry the event
                        counters.failed_sends += len(members)
                        continue
                    fkey = (projection, *vkey)
                    frame = frames.get(fkey)
                    if frame is None:
                        frame = frames[fkey] = message_frame(
                            payload, codec_name, bits, prefix, suffix, level
                        )
                    if latest:
                        self._deliver_latest(members, frame)
                    else:
                        # The hot loop: one frame, queued for every member.
                        for sink in members.values():
                            pending = sink.pending
                            if pending is None:
                                sink.pending = frame
                                dirty.append(sink)
                            elif isinstance(pending, list):
                                pending.append(frame)
                            else:
                                sink.pending = [pending, frame]
                    n = len(members)
                    counters.messages_sent += n
                    counters.bytes_raw += len(payload) * n
                    counters.bytes_wire += len(frame) * n
        if not self._flush_scheduled and self._flushed_events:
            self._flush_scheduled = True
            self._schedule(self.flush)

    def _deliver_latest(self, members: dict[Subscription, Subscriber], frame: bytes) -> None:
        """Latest-wins: a paused subscriber keeps only the newest frame, written on resume."""
        for sub, sink in members.items():
            if sink.paused:
                sub.held = frame
            else:
                self.enqueue(sink, [frame])

    def flush(self) -> None:
        """Write every subscriber's pending frames: one write per subscriber."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        events, self._flushed_events = self._flushed_events, []
        limit = self._max_buffered
        for sub in dirty:
            frames = sub.pending
            if frames is None:  # unsubscribed since it was queued
                continue
            # Slow means a backlog already over the cap, not a large tick: one
            # accepted ingest batch may itself be near the cap, and a reader
            # that has kept up must get it.
            # Only a paused transport (its buffer past the high-water mark, which
            # the connection keeps at or below the cap) can be over the cap, so
            # the others cost no call here.
            if sub.paused and sub.buffered_size() > limit:
                self.unsubscribe(sub)  # drops the pending frames, counted as failed sends
                sub.overflow()
                continue
            sub.pending = None
            sub.write_frames(frames)
        if self._on_flush is not None and events:
            self._on_flush(events, self._clock())
