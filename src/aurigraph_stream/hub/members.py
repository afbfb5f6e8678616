"""Who gets what: subscribers, their subscriptions, and the index that finds them.

A :class:`Subscriber` (a connection) holds one or more :class:`Subscription`
(one per stream on the multiplexed endpoint). The subscriptions of a stream
(:class:`Members`) are grouped by filter; inside a group, by variant: format,
deflate window and envelope (the bytes that wrap a message on the
multiplexed endpoint). A group whose filter has an index clause (an address,
a validator, a peer id...) is found through a dict from that field's values,
so an event costs one lookup per indexed field plus the groups it matches,
not one test per subscriber. Groups without one are tested per event, and
the common case, no filter, is one group that always matches.
"""

from __future__ import annotations

from typing import Any

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.event import Event
from aurigraph_stream.filters import Filter
from aurigraph_stream.stats import EndpointStats

__all__ = [
    "DETACHED",
    "Group",
    "Members",
    "Subscriber",
    "Subscription",
    "Variant",
    "VariantKey",
    "count_frames",
]

# Counts what a subscriber drops before its owner gives it an endpoint's counters.
DETACHED = EndpointStats()

# (codec name, deflate window bits; 0 = uncompressed).
Variant = tuple[str, int]
# (codec name, deflate bits, envelope prefix, envelope suffix): one set of members each.
VariantKey = tuple[str, int, bytes, bytes]


class Subscriber:
    """What the hub delivers to. The server's connection subclasses it.

    ``pending`` holds the frames queued this tick: ``None`` when there are none,
    the frame itself when there is one (the common case; ``bytes`` are not
    tracked by the garbage collector, so a broadcast to 10,000 subscribers
    allocates no container per subscriber), a list from the second one on.
    ``counters`` is the stats entry the subscriber's dropped frames count
    against, its endpoint's: its owner sets it. ``paused`` is set while the
    transport's buffer is over its high-water mark: latest-wins subscriptions
    then keep only their newest frame until :meth:`Hub.resume`.
    """

    __slots__ = ("counters", "paused", "pending", "subscriptions")

    def __init__(self, counters: EndpointStats = DETACHED) -> None:
        self.pending: bytes | list[bytes] | None = None
        self.counters = counters
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
        self.group: Group | None = None

    @property
    def variant_key(self) -> VariantKey:
        # Made when asked (joining and leaving a group): a tuple kept on every
        # subscription would cost more memory than the connection's session.
        return (self.codec, self.bits, self.prefix, self.suffix)


class Group:
    """The subscriptions of one stream that share one filter, by variant."""

    __slots__ = ("filter", "rest", "variants")

    def __init__(self, flt: Filter) -> None:
        self.filter = flt
        self.rest = flt.rest
        # Subscription -> its subscriber: the hot loop iterates the values.
        self.variants: dict[VariantKey, dict[Subscription, Subscriber]] = {}


class Members:
    """Every subscription of one stream, findable from an event."""

    __slots__ = ("control", "count", "groups", "index", "joining", "loading", "scanned")

    def __init__(self) -> None:
        self.groups: dict[Any, Group] = {}  # filter key -> group
        self.scanned: list[Group] = []  # groups without an index clause
        # message field -> (lower-case?, value -> groups indexed on it)
        self.index: dict[str, tuple[bool, dict[str, set[Group]]]] = {}
        # Subscriptions waiting for the first event after their replay (Subscription.after),
        # and those still loading their history (after is None), which keep the live
        # events in ``loading`` meanwhile: None once a reset made the buffer useless.
        self.joining: list[Subscription] = []
        self.loading: dict[Subscription, list[Event] | None] = {}
        # Subscriptions of /ws/{stream} that asked for control frames (on /ws every
        # subscription has an id): they are told when the stream's history was lost.
        self.control: set[Subscription] = set()
        self.count = 0

    def join(self, sub: Subscription) -> None:
        """Put ``sub`` in the group of its filter, creating and indexing the group if new."""
        flt = sub.filter
        group = self.groups.get(flt.key)
        if group is None:
            group = self.groups[flt.key] = Group(flt)
            clause = flt.index
            if clause is None:
                self.scanned.append(group)
            else:
                for field in clause.fields:
                    table = self.index.setdefault(field, (clause.lower, {}))[1]
                    for value in clause.values:
                        table.setdefault(value, set()).add(group)
        group.variants.setdefault(sub.variant_key, {})[sub] = sub.sink
        sub.group = group

    def leave(self, sub: Subscription) -> None:
        """Take ``sub`` out of its group; an emptied group leaves the index."""
        self.control.discard(sub)
        group = sub.group
        if group is None:
            if sub in self.joining:
                self.joining.remove(sub)
            self.loading.pop(sub, None)
            return
        sub.group = None
        key = sub.variant_key
        members = group.variants[key]
        del members[sub]
        if not members:
            del group.variants[key]
        if group.variants:  # an emptied variant is deleted: no variant left, no member
            return
        del self.groups[group.filter.key]
        clause = group.filter.index
        if clause is None:
            self.scanned.remove(group)
            return
        for field in clause.fields:
            table = self.index[field][1]
            for value in clause.values:
                groups = table.get(value)
                if groups is not None:
                    groups.discard(group)
                    if not groups:
                        del table[value]
            if not table:
                del self.index[field]

    def admit(self, event: Event) -> None:
        """Buffer ``event`` for subscriptions loading their history; move joining ones
        whose replay has passed its seq into their groups."""
        seq = event.seq
        ready = []
        for sub in self.joining:
            if sub.after is None:
                buffered = self.loading.get(sub)
                if buffered is not None:
                    buffered.append(event)
            elif seq > sub.after:
                ready.append(sub)
        for sub in ready:
            self.joining.remove(sub)
            sub.after = None
            self.join(sub)

    def subscriptions(self) -> list[Subscription]:
        """Every subscription in a group (not those still joining)."""
        return [sub for g in self.groups.values() for m in g.variants.values() for sub in m]

    def matching(self, data: dict[str, Any]) -> list[Group]:
        """The groups whose filter passes ``data``."""
        matched = [g for g in self.scanned if g.rest is None or g.rest(data)]
        if self.index:
            hits: set[Group] | None = None
            for field, (lower, table) in self.index.items():
                value = data.get(field)
                if value.__class__ is not str:
                    continue
                found = table.get(value.lower() if lower else value)
                if found:
                    hits = found if hits is None else hits | found
            if hits:
                matched.extend(g for g in hits if g.rest is None or g.rest(data))
        return matched


def count_frames(pending: bytes | list[bytes]) -> int:
    """How many frames a subscriber's ``pending`` holds."""
    return 1 if isinstance(pending, bytes) else len(pending)
