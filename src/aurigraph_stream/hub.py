"""Fan-out: each event is encoded, framed and compressed once per variant, and
the same bytes are queued for every subscriber of that variant.

The hub does no I/O. Frames queued during one event-loop tick are collected
per subscriber and written together by :meth:`Hub.flush`, which the server
schedules with ``loop.call_soon``: a burst of events costs each subscriber one
write, not one per event. Publishing never waits on a subscriber; one whose
unsent bytes pass ``max_buffered`` is told to go away (:meth:`Subscriber.overflow`)
instead of slowing anyone else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.event import Event
from aurigraph_stream.stats import Stats
from aurigraph_stream.wire.deflate import compress
from aurigraph_stream.wire.frames import encode_frame

__all__ = ["Hub", "Subscriber", "Variant"]

# (codec name, deflate window bits; 0 = uncompressed): subscribers that share
# a variant share the bytes.
Variant = tuple[str, int]


class Subscriber:
    """What the hub delivers to. The server's connection subclasses it.

    ``pending`` holds the frames queued this tick (``None`` when there are none),
    ``pending_size`` their length in bytes.
    """

    __slots__ = ("pending", "pending_size", "stream", "variant")

    def __init__(self) -> None:
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.stream = ""
        self.variant: Variant = ("json", 0)

    def write_frames(self, frames: list[bytes]) -> None:
        """Hand frames to the transport, in order."""
        raise NotImplementedError

    def buffered_size(self) -> int:
        """Bytes written but not yet sent (the transport's buffer)."""
        raise NotImplementedError

    def overflow(self) -> None:
        """Called once when the subscriber fell too far behind; it must leave the hub."""
        raise NotImplementedError


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
        self._groups: dict[str, dict[Variant, set[Subscriber]]] = {}
        self._dirty: list[Subscriber] = []
        self._flushed_events: list[Event] = []
        self._flush_scheduled = False

    def subscribe(self, sub: Subscriber, stream: str, variant: Variant) -> None:
        sub.stream = stream
        sub.variant = variant
        self._groups.setdefault(stream, {}).setdefault(variant, set()).add(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        """Remove ``sub``; frames it has pending are dropped. Idempotent."""
        groups = self._groups.get(sub.stream)
        if groups is None:
            return
        members = groups.get(sub.variant)
        if members is not None:
            members.discard(sub)
            if not members:
                del groups[sub.variant]
        if sub.pending is not None:
            self._stats.endpoints[sub.stream].failed_sends += len(sub.pending)
            sub.pending = None

    def subscribers(self, stream: str) -> int:
        return sum(len(m) for m in self._groups.get(stream, {}).values())

    def publish(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for their subscribers; they are written at the next flush."""
        dirty = self._dirty
        for event in events:
            self._flushed_events.append(event)
            groups = self._groups.get(event.stream)
            if not groups:
                continue
            counters = self._stats.endpoints[event.stream]
            payloads: dict[str, bytes] = {}
            for (codec_name, bits), members in groups.items():
                codec = CODECS[codec_name]
                payload = payloads.get(codec_name)
                if payload is None:
                    payload = payloads[codec_name] = codec.encode(event.data)
                if bits:
                    frame = encode_frame(
                        codec.opcode, compress(payload, self._level, bits), rsv1=True
                    )
                else:
                    frame = encode_frame(codec.opcode, payload)
                size = len(frame)
                for sub in members:
                    pending = sub.pending
                    if pending is None:
                        sub.pending = [frame]
                        sub.pending_size = size
                        dirty.append(sub)
                    else:
                        pending.append(frame)
                        sub.pending_size += size
                n = len(members)
                counters.messages_sent += n
                counters.bytes_raw += len(payload) * n
                counters.bytes_wire += size * n
        if not self._flush_scheduled and self._flushed_events:
            self._flush_scheduled = True
            self._schedule(self.flush)

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
            sub.pending = None
            if sub.buffered_size() + sub.pending_size > limit:
                self._stats.endpoints[sub.stream].failed_sends += len(frames)
                self.unsubscribe(sub)
                sub.overflow()
                continue
            sub.write_frames(frames)
        if self._on_flush is not None and events:
            self._on_flush(events, self._clock())
