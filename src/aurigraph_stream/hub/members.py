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

The index costs in proportion to the distinct values, not to subscriptions
times values: the groups whose index clause holds the same values (the same
addresses with another ``minValue``, say) share one :class:`ValueSet`, entered
in the dict once, and a value that only one value set holds maps to it
directly, with no set of its own. Subscriptions of one group share its
filter, so a thousand clients watching the same thousand addresses keep one
copy of them.

A subscription may carry a :class:`View`: a rendering of the stream's
messages other than the message in a format (a GraphQL document's result).
Its group is then keyed by filter and view, so subscribers whose filter and
view agree share one rendering per event, as the others share one encoding.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.event import Event
from aurigraph_stream.filters import Filter
from aurigraph_stream.stats import EndpointStats

__all__ = [
    "DEFAULT_LOADING_LIMIT",
    "DETACHED",
    "Group",
    "Members",
    "Subscriber",
    "Subscription",
    "ValueSet",
    "Variant",
    "VariantKey",
    "View",
    "count_frames",
    "subscription_bytes",
]

# Counts what a subscriber drops before its owner gives it an endpoint's counters.
DETACHED = EndpointStats()

#: Live events a subscription loading its history keeps (those that pass its filter);
#: past it, what it kept no longer joins up, as after a reset (``recovered: false``).
DEFAULT_LOADING_LIMIT = 10_000

# (codec name, deflate window bits; 0 = uncompressed).
Variant = tuple[str, int]
# (codec name, deflate bits, envelope prefix, envelope suffix): one set of members each.
VariantKey = tuple[str, int, bytes, bytes]


class View(Protocol):
    """What a group's subscribers receive of an event, instead of the message in a format.

    ``key`` names the rendering: views with equal keys render equal bytes for
    every event, so their subscribers (with equal filters) share a group, and
    the hub renders an event once per key. ``render`` returns the payload the
    envelope goes around, or ``None`` when the event cannot be rendered.
    ``opening`` is the suffix of a first message that says where the
    subscription (re)starts: ``start`` holds what a ``subscribed`` frame says
    (``position``, ``recovered``, ``replayed``); the hub asks for one when the
    stream's history was lost (:meth:`Hub.reset`).
    """

    @property
    def key(self) -> Hashable: ...

    def render(self, event: Event) -> bytes | None: ...

    def opening(self, start: Mapping[str, Any]) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ViewShape:
    """A view's key where the hub keys a projection: equal to no projection and no filter key."""

    key: Hashable


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
    """One subscriber's interest in one stream: a filter, a format, an envelope.

    The envelope is the bytes before and after each payload: on ``/ws`` the
    format's (:meth:`Codec.envelope`), or ``envelope`` when given. ``opening``,
    when set, replaces the suffix for the first message delivered live only
    (a GraphQL subscription's first result carries where it started).
    """

    __slots__ = (
        "after",
        "bits",
        "codec",
        "filter",
        "group",
        "held",
        "id",
        "opening",
        "prefix",
        "sink",
        "stream",
        "suffix",
        "view",
    )

    def __init__(
        self,
        sink: Subscriber,
        stream: str,
        flt: Filter,
        codec: str,
        bits: int,
        sub_id: str | None,
        *,
        view: View | None = None,
        envelope: tuple[bytes, bytes] | None = None,
        opening: bytes | None = None,
    ) -> None:
        self.sink = sink
        self.stream = stream
        self.filter = flt
        self.codec = codec
        self.bits = bits
        self.id = sub_id
        if envelope is not None:
            self.prefix, self.suffix = envelope
        elif sub_id is not None:
            self.prefix, self.suffix = CODECS[codec].envelope(stream, sub_id)
        else:
            self.prefix, self.suffix = b"", b""
        self.view = view
        self.opening = opening
        self.after: int | None = None  # joining: deliver only events with a greater seq
        self.held: bytes | None = None  # latest-wins: the newest frame while paused
        self.group: Group | None = None

    @property
    def group_key(self) -> Any:
        """The key of the group it joins: its filter's, and its view's when it has one."""
        if self.view is None:
            return self.filter.key
        return (self.filter.key, ViewShape(self.view.key))

    @property
    def variant_key(self) -> VariantKey:
        # Made when asked (joining and leaving a group): a tuple kept on every
        # subscription would cost more memory than the connection's session.
        suffix = self.suffix if self.opening is None else self.opening
        return (self.codec, self.bits, self.prefix, suffix)


class Group:
    """The subscriptions of one stream that share one filter (and view), by variant.

    ``shape`` is what the payload of an event depends on besides the format:
    the filter's projection, or the view itself (hashed by identity, which
    costs the hot loop nothing: a view's owner shares one object per key, so
    groups of equal views still share one rendering). ``fresh`` holds the
    members whose first message has an ``opening`` suffix.
    """

    __slots__ = ("filter", "fresh", "key", "rest", "shape", "values", "variants", "view")

    def __init__(self, flt: Filter, key: Any, view: View | None) -> None:
        self.filter = flt
        self.key = key
        self.rest = flt.rest
        self.values: ValueSet | None = None  # the value set it is indexed under, if any
        self.view = view
        self.shape: object = flt.projection if view is None else view
        # Subscription -> its subscriber: the hot loop iterates the values.
        self.variants: dict[VariantKey, dict[Subscription, Subscriber]] = {}
        self.fresh: set[Subscription] = set()

    def add(self, sub: Subscription) -> None:
        self.variants.setdefault(sub.variant_key, {})[sub] = sub.sink
        if sub.opening is not None:
            self.fresh.add(sub)

    def discard(self, sub: Subscription) -> None:
        key = sub.variant_key
        members = self.variants[key]
        del members[sub]
        if not members:
            del self.variants[key]
        self.fresh.discard(sub)

    def settle(self) -> None:
        """The fresh members had their first message: from now on, their usual envelope."""
        for sub in self.fresh:
            key = sub.variant_key
            members = self.variants[key]
            del members[sub]
            if not members:
                del self.variants[key]
            sub.opening = None
            self.variants.setdefault(sub.variant_key, {})[sub] = sub.sink
        self.fresh.clear()


class ValueSet:
    """The groups whose index clause has one set of values, on the same fields."""

    __slots__ = ("groups", "key")

    def __init__(self, key: tuple[tuple[str, ...], frozenset[str]]) -> None:
        self.key = key
        self.groups: set[Group] = set()


# A value's entry in the index: the one value set holding it, or a set of them.
_Entry = ValueSet | set[ValueSet]


class Members:
    """Every subscription of one stream, findable from an event."""

    __slots__ = (
        "control",
        "count",
        "groups",
        "index",
        "joining",
        "loading",
        "loading_limit",
        "scanned",
        "valuesets",
    )

    def __init__(self, loading_limit: int = DEFAULT_LOADING_LIMIT) -> None:
        self.groups: dict[Any, Group] = {}  # filter key -> group
        self.scanned: list[Group] = []  # groups without an index clause
        # message field -> (lower-case?, value -> the value set(s) holding it)
        self.index: dict[str, tuple[bool, dict[str, _Entry]]] = {}
        self.valuesets: dict[tuple[tuple[str, ...], frozenset[str]], ValueSet] = {}
        # Subscriptions waiting for the first event after their replay (Subscription.after),
        # and those still loading their history (after is None), which keep the live
        # events that pass their filter in ``loading`` meanwhile, up to
        # ``loading_limit``: None once a reset, or that limit, made the buffer useless.
        # A dict used as an ordered set: leaving is O(1).
        self.joining: dict[Subscription, None] = {}
        self.loading: dict[Subscription, list[Event] | None] = {}
        self.loading_limit = loading_limit
        # Subscriptions of /ws/{stream} that asked for control frames (on /ws every
        # subscription has an id): they are told when the stream's history was lost.
        self.control: set[Subscription] = set()
        self.count = 0

    def join(self, sub: Subscription) -> None:
        """Put ``sub`` in the group of its filter, creating and indexing the group if new."""
        flt = sub.filter
        key = sub.group_key
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(flt, key, sub.view)
            clause = flt.index
            if clause is None:
                self.scanned.append(group)
            else:
                group.values = self._enter(clause.fields, clause.values, clause.lower)
                group.values.groups.add(group)
        else:
            sub.filter = group.filter  # one copy of the filter (and its values) per group
        group.add(sub)
        sub.group = group

    def _enter(self, fields: tuple[str, ...], values: frozenset[str], lower: bool) -> ValueSet:
        """The value set of ``values`` on ``fields``, entered in the index if new."""
        key = (fields, values)
        valueset = self.valuesets.get(key)
        if valueset is not None:
            return valueset
        valueset = self.valuesets[key] = ValueSet(key)
        for field in fields:
            table = self.index.setdefault(field, (lower, {}))[1]
            for value in values:
                entry = table.get(value)
                if entry is None:
                    table[value] = valueset
                elif isinstance(entry, ValueSet):
                    table[value] = {entry, valueset}
                else:
                    entry.add(valueset)
        return valueset

    def _remove(self, valueset: ValueSet) -> None:
        """Take a value set no group uses out of the index."""
        del self.valuesets[valueset.key]
        fields, values = valueset.key
        for field in fields:
            table = self.index[field][1]
            for value in values:
                entry = table.get(value)
                if entry is valueset:
                    del table[value]
                elif isinstance(entry, set):
                    entry.discard(valueset)
                    if len(entry) == 1:
                        (table[value],) = entry
            if not table:
                del self.index[field]

    def leave(self, sub: Subscription) -> None:
        """Take ``sub`` out of its group; an emptied group leaves the index."""
        self.control.discard(sub)
        group = sub.group
        if group is None:
            self.joining.pop(sub, None)
            self.loading.pop(sub, None)
            return
        sub.group = None
        group.discard(sub)
        if group.variants:  # an emptied variant is deleted: no variant left, no member
            return
        del self.groups[group.key]
        valueset = group.values
        if valueset is None:
            self.scanned.remove(group)
            return
        group.values = None
        valueset.groups.discard(group)
        if not valueset.groups:
            self._remove(valueset)

    def admit(self, event: Event) -> None:
        """Keep ``event`` for the subscriptions loading their history whose filter it passes;
        move joining ones whose replay has passed its seq into their groups."""
        seq = event.seq
        loading = self.loading
        ready = None
        for sub in self.joining:
            after = sub.after
            if after is None:
                buffered = loading.get(sub)
                if buffered is not None and sub.filter.matches(event.data):
                    if len(buffered) < self.loading_limit:
                        buffered.append(event)
                    else:
                        loading[sub] = None  # too much to keep: it no longer joins up
            elif seq > after:
                if ready is None:
                    ready = [sub]
                else:
                    ready.append(sub)
        if ready is not None:
            for sub in ready:
                del self.joining[sub]
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
                if found is None:
                    continue
                if isinstance(found, ValueSet):
                    groups = found.groups
                    hits = groups if hits is None else hits | groups
                else:
                    for valueset in found:
                        hits = valueset.groups if hits is None else hits | valueset.groups
            if hits:
                matched.extend(g for g in hits if g.rest is None or g.rest(data))
        return matched


def count_frames(pending: bytes | list[bytes]) -> int:
    """How many frames a subscriber's ``pending`` holds."""
    return 1 if isinstance(pending, bytes) else len(pending)


# What a subscription holds, as tracemalloc counts it (filters of their own, values no
# other subscription shares): 1.5 KB with a filter of one clause, 2.3 KB with one
# address, 4.6 KB with ten addresses and a status, 175 KB with a thousand addresses
# (the string, its slots in the filter's set, key and index). Rounded up, so that a
# budget built on it holds (tests/unit/test_hub_filters.py checks it).
_SUBSCRIPTION_BYTES = 3072
_VALUE_BYTES = 160  # plus the value's length


def subscription_bytes(flt: Filter) -> int:
    """About how many bytes one subscription with ``flt`` holds (an upper estimate).

    A connection's subscriptions are charged this against its memory budget
    (``max_connection_memory``), whether or not the hub shares them with others.
    """
    total = _SUBSCRIPTION_BYTES
    for clause in flt.clauses:
        for value in clause.values:
            total += _VALUE_BYTES + len(value)
    return total
