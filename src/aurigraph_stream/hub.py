"""Fan-out: each event is encoded, framed and compressed once per variant, and
the same bytes are queued for every subscriber of that variant.

The hub does no I/O. Frames queued during one event-loop tick are collected
per subscriber and written together by :meth:`Hub.flush`, which the server
schedules with ``loop.call_soon``: a burst of events costs each subscriber one
write, not one per event. Publishing never waits on a subscriber; one whose
unsent bytes pass ``max_buffered`` is told to go away (:meth:`Subscriber.overflow`)
instead of slowing anyone else.

Filters. A :class:`Subscriber` (a connection) holds one or more
:class:`Subscription` (one per stream on the multiplexed endpoint). The
subscriptions of a stream are grouped by filter; inside a group, by variant:
format, deflate window and envelope (the bytes that wrap a message on the
multiplexed endpoint). A group whose filter has an index clause (an address,
a validator, a peer id...) is found through a dict from that field's values,
so an event costs one lookup per indexed field plus the groups it matches,
not one test per subscriber. Groups without one are tested per event, and
the common case, no filter, is one group that always matches.

Encode once. Per event, a payload is encoded once per (projection, format)
and a frame built and compressed once per (projection, format, deflate,
envelope), whatever the number of groups that match: subscribers that share a
filter and format share the very same ``bytes`` object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.event import Event
from aurigraph_stream.filters import Filter, everything
from aurigraph_stream.stats import Stats
from aurigraph_stream.wire.deflate import compress
from aurigraph_stream.wire.frames import encode_frame

__all__ = ["Hub", "Subscriber", "Subscription", "Variant", "build_frame", "count_frames"]

logger = logging.getLogger("aurigraph_stream.hub")

# (codec name, deflate window bits; 0 = uncompressed).
Variant = tuple[str, int]
# (codec name, deflate bits, envelope prefix, envelope suffix): one set of members each.
_VariantKey = tuple[str, int, bytes, bytes]


class Subscriber:
    """What the hub delivers to. The server's connection subclasses it.

    ``pending`` holds the frames queued this tick: ``None`` when there are none,
    the frame itself when there is one (the common case; ``bytes`` are not
    tracked by the garbage collector, so a broadcast to 10,000 subscribers
    allocates no container per subscriber), a list from the second one on.
    ``stream`` names the stats entry
    the subscriber's failures count against (its endpoint). ``paused`` is set
    while the transport's buffer is over its high-water mark: latest-wins
    subscriptions then keep only their newest frame until :meth:`Hub.resume`.
    """

    __slots__ = ("paused", "pending", "stream", "subscriptions")

    def __init__(self) -> None:
        self.pending: bytes | list[bytes] | None = None
        self.stream = ""
        self.paused = False
        self.subscriptions: list[Subscription] = []

    def write_frames(self, frames: bytes | list[bytes]) -> None:
        """Hand one frame, or several in order, to the transport."""
        raise NotImplementedError

    def buffered_size(self) -> int:
        """Bytes written but not yet sent (the transport's buffer)."""
        raise NotImplementedError

    def overflow(self) -> None:
        """Called once when the subscriber fell too far behind; it must leave the hub."""
        raise NotImplementedError


class Subscription:
    """One subscriber's interest in one stream: a filter, a format, an envelope."""

    __slots__ = (
        "after",
        "bits",
        "codec",
        "filter",
        "group",
        "held",
        "id",
        "prefix",
        "sink",
        "stream",
        "suffix",
    )

    def __init__(
        self, sink: Subscriber, stream: str, flt: Filter, codec: str, bits: int, sub_id: str | None
    ) -> None:
        self.sink = sink
        self.stream = stream
        self.filter = flt
        self.codec = codec
        self.bits = bits
        self.id = sub_id
        self.prefix, self.suffix = (
            CODECS[codec].envelope(stream, sub_id) if sub_id is not None else (b"", b"")
        )
        self.after: int | None = None  # joining: deliver only events with a greater seq
        self.held: bytes | None = None  # latest-wins: the newest frame while paused
        self.group: _Group | None = None

    @property
    def variant_key(self) -> _VariantKey:
        return (self.codec, self.bits, self.prefix, self.suffix)

    def wrap(self, payload: bytes) -> bytes:
        """The payload in this subscription's envelope (itself when there is none)."""
        return self.prefix + payload + self.suffix if self.prefix else payload


class _Group:
    """The subscriptions of one stream that share one filter, by variant."""

    __slots__ = ("filter", "rest", "variants")

    def __init__(self, flt: Filter) -> None:
        self.filter = flt
        self.rest = flt.rest
        # Subscription -> its subscriber: the hot loop iterates the values.
        self.variants: dict[_VariantKey, dict[Subscription, Subscriber]] = {}


class _Stream:
    """Every subscription of one stream, findable from an event."""

    __slots__ = ("count", "groups", "index", "joining", "scanned")

    def __init__(self) -> None:
        self.groups: dict[Any, _Group] = {}  # filter key -> group
        self.scanned: list[_Group] = []  # groups without an index clause
        # message field -> (lower-case?, value -> groups indexed on it)
        self.index: dict[str, tuple[bool, dict[str, set[_Group]]]] = {}
        self.joining: list[Subscription] = []
        self.count = 0


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
        self._streams: dict[str, _Stream] = {}
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
    ) -> Subscription:
        """Add a subscription of ``sink`` to ``stream``.

        Args:
            variant: (format, deflate window bits or 0).
            flt: what to deliver; ``None`` is every message in full.
            sub_id: on the multiplexed endpoint, the id each message is wrapped with.
            after: the seq the subscriber already has (a replay ended there):
                events up to it are skipped, so that a history read and live
                delivery never overlap, whatever order a broker delivers in.
        """
        if not sink.stream:
            sink.stream = stream
        sub = Subscription(sink, stream, flt or everything(stream), variant[0], variant[1], sub_id)
        sink.subscriptions.append(sub)
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream()
        st.count += 1
        if after is not None:
            sub.after = after
            st.joining.append(sub)
        else:
            self._join(st, sub)
        return sub

    def _join(self, st: _Stream, sub: Subscription) -> None:
        flt = sub.filter
        group = st.groups.get(flt.key)
        if group is None:
            group = st.groups[flt.key] = _Group(flt)
            clause = flt.index
            if clause is None:
                st.scanned.append(group)
            else:
                for field in clause.fields:
                    table = st.index.setdefault(field, (clause.lower, {}))[1]
                    for value in clause.values:
                        table.setdefault(value, set()).add(group)
        group.variants.setdefault(sub.variant_key, {})[sub] = sub.sink
        sub.group = group

    def _leave(self, st: _Stream, sub: Subscription) -> None:
        group = sub.group
        if group is None:
            if sub in st.joining:
                st.joining.remove(sub)
            return
        sub.group = None
        members = group.variants[sub.variant_key]
        del members[sub]
        if not members:
            del group.variants[sub.variant_key]
        if group.variants:  # an emptied variant is deleted: no variant left, no member
            return
        del st.groups[group.filter.key]
        clause = group.filter.index
        if clause is None:
            st.scanned.remove(group)
            return
        for field in clause.fields:
            table = st.index[field][1]
            for value in clause.values:
                groups = table.get(value)
                if groups is not None:
                    groups.discard(group)
                    if not groups:
                        del table[value]
            if not table:
                del st.index[field]

    def remove(self, sub: Subscription) -> None:
        """End one subscription; frames already queued for its subscriber stay queued."""
        sink = sub.sink
        if sub not in sink.subscriptions:
            return
        sink.subscriptions.remove(sub)
        sub.held = None
        st = self._streams[sub.stream]
        st.count -= 1
        self._leave(st, sub)

    def unsubscribe(self, sink: Subscriber) -> None:
        """Remove every subscription of ``sink``; frames it has pending are dropped. Idempotent."""
        for sub in list(sink.subscriptions):
            self.remove(sub)
        if sink.pending is not None:
            self._stats.endpoints[sink.stream].failed_sends += count_frames(sink.pending)
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

    def _admit(self, st: _Stream, seq: int) -> None:
        """Move joining subscriptions whose replay ``seq`` has passed into their groups."""
        for sub in [s for s in st.joining if s.after is not None and seq > s.after]:
            st.joining.remove(sub)
            sub.after = None
            self._join(st, sub)

    def _matching(self, st: _Stream, data: dict[str, Any]) -> list[_Group]:
        matched = [g for g in st.scanned if g.rest is None or g.rest(data)]
        if st.index:
            hits: set[_Group] | None = None
            for field, (lower, table) in st.index.items():
                value = data.get(field)
                if value.__class__ is not str:
                    continue
                found = table.get(value.lower() if lower else value)
                if found:
                    hits = found if hits is None else hits | found
            if hits:
                matched.extend(g for g in hits if g.rest is None or g.rest(data))
        return matched

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
                self._admit(st, event.seq)
            data = event.data
            matched = self._matching(st, data)
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
                        payload = payloads[pkey] = self._encode(event, group.filter, codec_name)
                    if payload is None:  # this format cannot carry the event
                        counters.failed_sends += len(members)
                        continue
                    fkey = (projection, *vkey)
                    frame = frames.get(fkey)
                    if frame is None:
                        body = prefix + payload + suffix if prefix else payload
                        opcode = CODECS[codec_name].opcode
                        frame = frames[fkey] = build_frame(opcode, body, level, bits)
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

    def _encode(self, event: Event, flt: Filter, codec: str) -> bytes | None:
        try:
            return CODECS[codec].message(event.stream, flt.project(event.data))
        except Exception:  # one malformed event must not stop the fan-out
            logger.exception("cannot encode %s seq=%d as %s", event.stream, event.seq, codec)
            return None

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


def count_frames(pending: bytes | list[bytes]) -> int:
    """How many frames a subscriber's ``pending`` holds."""
    return 1 if isinstance(pending, bytes) else len(pending)


def build_frame(opcode: int, body: bytes, level: int, bits: int) -> bytes:
    """One server frame: compressed from an empty window when ``bits`` (RFC 7692), else plain."""
    if bits:
        return encode_frame(opcode, compress(body, level, bits), rsv1=True)
    return encode_frame(opcode, body)
