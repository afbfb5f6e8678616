"""Unit tests of the filtered hub and of filters.py: indexing, encode once, seq dedupe,
latest-wins. No sockets: the hub is sans-I/O."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

import orjson
import pytest

from aurigraph_stream.errors import SubscriptionError
from aurigraph_stream.event import Event
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.hub import Hub, Subscriber, subscription_bytes
from aurigraph_stream.hub.members import Members
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES


class Sink(Subscriber):
    """Keeps every frame written to it."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    def write_frames(self, frames: bytes | list[bytes]) -> None:
        self.frames.extend([frames] if isinstance(frames, bytes) else frames)

    def buffered_size(self) -> int:
        return 0

    def overflow(self) -> None:
        raise AssertionError("never slow")


def _hub() -> tuple[Hub, Callable[[], None]]:
    scheduled: list[Callable[[], None]] = []
    hub = Hub(Stats.for_streams(NAMES), schedule=scheduled.append, max_buffered=1 << 30)

    def run() -> None:
        while scheduled:
            scheduled.pop()()

    return hub, run


def _addr(n: int) -> str:
    return "0x" + f"{n:040x}"


def _tx(seq: int, sender: str, receiver: str, value: str = "1") -> Event:
    data = {"from": sender, "to": receiver, "value": value, "status": "PENDING", "seq": seq}
    return Event("transactions", seq, data, 0.0)


def _payload(frame: bytes) -> object:
    return orjson.loads(frame[4:] if frame[1] == 126 else frame[2:])


def test_equivalent_filters_share_a_key_and_bad_ones_are_refused() -> None:
    """Order and case do not change a filter's key; an unknown option or a value the schema
    refuses raises SubscriptionError naming it."""
    one = parse_filter("transactions", {"address": ["0x" + _addr(10)[2:].upper()]})
    two = parse_filter("transactions", {"address": _addr(10)})
    assert one.key == two.key
    both = parse_filter("validators", {"status": ["JAILED", "ACTIVE"]})
    assert both.key == parse_filter("validators", {"status": "ACTIVE,JAILED"}, strings=True).key
    for raw in ({"colour": "red"}, {"status": "LOST"}, {"minValue": 1.5}, {"from": ["0x12"]}):
        with pytest.raises(SubscriptionError) as refused:
            parse_filter("transactions", raw)
        assert refused.value.error == "invalid_filter"
        assert next(iter(raw)) in refused.value.detail


def test_filters_sharing_a_projection_and_format_share_the_frame_object() -> None:
    """Two subscribers with one filter, and a third with another filter matching the same
    event, all get the identical bytes object: encoded and framed once."""
    hub, run = _hub()
    sinks = [Sink() for _ in range(3)]
    a, b = _addr(1), _addr(2)
    hub.subscribe(sinks[0], "transactions", ("json", 0), parse_filter("transactions", {"from": a}))
    hub.subscribe(sinks[1], "transactions", ("json", 0), parse_filter("transactions", {"from": a}))
    hub.subscribe(sinks[2], "transactions", ("json", 0), parse_filter("transactions", {"to": b}))
    hub.publish([_tx(1, a, b)])
    run()
    frames = [sink.frames[0] for sink in sinks]
    assert frames[0] is frames[1] is frames[2]


def test_a_subscription_joining_after_a_seq_skips_what_it_already_has() -> None:
    """subscribe(after=N) delivers nothing up to seq N, then everything: the seam of a
    replay and live delivery cannot duplicate, whatever order events come in."""
    hub, run = _hub()
    sink = Sink()
    hub.subscribe(sink, "transactions", ("json", 0), after=5)
    hub.publish([_tx(seq, _addr(1), _addr(2)) for seq in (4, 5, 6, 7)])
    run()
    assert [_payload(f)["seq"] for f in sink.frames] == [6, 7]  # type: ignore[index]


def test_latest_wins_holds_only_the_newest_frame_while_paused() -> None:
    """A latest-wins subscriber that is paused keeps one frame, the newest, and gets it on
    resume; a plain subscriber on the same stream gets every frame."""
    hub, run = _hub()
    latest, plain = Sink(), Sink()
    flt = parse_filter("consensus", {"latest": True})
    hub.subscribe(latest, "consensus", ("json", 0), flt)
    hub.subscribe(plain, "consensus", ("json", 0))
    latest.paused = True
    hub.publish([Event("consensus", seq, {"seq": seq}, 0.0) for seq in range(1, 6)])
    run()
    assert latest.frames == []
    assert len(plain.frames) == 5
    hub.resume(latest)
    run()
    assert [_payload(f) for f in latest.frames] == [{"seq": 5}]


def test_latest_wins_subscribers_that_keep_up_get_every_frame_in_one_write() -> None:
    """Latest-wins subscribers that are not paused get every frame, in order, the bytes a
    plain subscriber gets."""
    hub, run = _hub()
    latest = [Sink() for _ in range(3)]
    plain = Sink()
    flt = parse_filter("consensus", {"latest": True})
    for sink in latest:
        hub.subscribe(sink, "consensus", ("json", 0), flt)
    hub.subscribe(plain, "consensus", ("json", 0))
    hub.publish([Event("consensus", seq, {"seq": seq}, 0.0) for seq in range(1, 4)])
    run()
    for sink in latest:
        assert [_payload(f) for f in sink.frames] == [{"seq": 1}, {"seq": 2}, {"seq": 3}]
        assert sink.frames == plain.frames


def _per_event_seconds(subscribers: int) -> float:
    hub, run = _hub()
    for n in range(subscribers):
        flt = parse_filter("transactions", {"address": _addr(n)})
        hub.subscribe(Sink(), "transactions", ("json", 0), flt)
    events = [_tx(seq, _addr(seq % 50), _addr(seq % 50 + 1)) for seq in range(1, 2001)]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        hub.publish(events)
        run()
        best = min(best, time.perf_counter() - start)
    return best / len(events)


def test_indexed_filters_cost_does_not_grow_with_subscribers() -> None:
    """10,000 subscribers each watching its own address cost about what 100 do per
    transaction: the hub looks addresses up instead of testing every subscriber."""
    small, large = _per_event_seconds(100), _per_event_seconds(10_000)
    # Testing each subscriber would make this 100 times larger; allow noise, not that.
    assert large < small * 4, (small, large)


def _members(hub: Hub, stream: str) -> Members:
    return hub._streams[stream]


def test_the_index_costs_per_distinct_value_not_per_subscription() -> None:
    """100 filters on the same 1,000 addresses (each with its own minValue) enter the
    addresses in the index once; each address maps to the one value set they share."""
    hub, _ = _hub()
    addresses = [_addr(n) for n in range(1000)]
    subs = [
        hub.subscribe(
            Sink(),
            "transactions",
            ("json", 0),
            parse_filter("transactions", {"address": addresses, "minValue": str(n)}),
        )
        for n in range(100)
    ]
    members = _members(hub, "transactions")
    assert len(members.groups) == 100
    (valueset,) = members.valuesets.values()
    assert len(valueset.groups) == 100
    for field in ("from", "to"):
        table = members.index[field][1]
        assert len(table) == 1000
        assert all(entry is valueset for entry in table.values())
    for sub in subs:
        hub.remove(sub)
    assert (members.index, members.valuesets, members.groups) == ({}, {}, {})


def test_overlapping_value_sets_each_find_their_groups() -> None:
    """Two value sets that share an address: an event from it reaches both, one from an
    address of only one reaches that one, and removing one leaves the other indexed."""
    hub, run = _hub()
    a, b, c = _addr(1), _addr(2), _addr(3)
    one, two = Sink(), Sink()
    first = hub.subscribe(one, "transactions", flt=parse_filter("transactions", {"from": [a, b]}))
    hub.subscribe(two, "transactions", flt=parse_filter("transactions", {"from": [b, c]}))
    hub.publish([_tx(1, a, c), _tx(2, b, c), _tx(3, c, a)])
    run()
    assert [_payload(f)["seq"] for f in one.frames] == [1, 2]  # type: ignore[index]
    assert [_payload(f)["seq"] for f in two.frames] == [2, 3]  # type: ignore[index]
    hub.remove(first)
    table = _members(hub, "transactions").index["from"][1]
    assert set(table) == {b, c}
    hub.publish([_tx(4, b, a)])
    run()
    assert [_payload(f)["seq"] for f in two.frames] == [2, 3, 4]  # type: ignore[index]


def test_subscriptions_of_one_group_share_its_filter() -> None:
    """A second subscription with an equal filter keeps the group's, not a copy of its own."""
    hub, _ = _hub()
    addresses = [_addr(n) for n in range(10)]
    first = hub.subscribe(
        Sink(), "transactions", flt=parse_filter("transactions", {"address": addresses})
    )
    second = hub.subscribe(
        Sink(), "transactions", flt=parse_filter("transactions", {"address": addresses[::-1]})
    )
    assert second.filter is first.filter


def test_a_thousand_values_are_checked_in_a_few_milliseconds() -> None:
    """Filter values are checked by the compiled schema: 1,000 addresses take about a
    millisecond (the reference validator took ten times that)."""
    raw = {"address": [_addr(n) for n in range(1000)]}
    parse_filter("transactions", raw)  # warm
    best = min(_timed(lambda: parse_filter("transactions", raw)) for _ in range(5))
    assert best < 0.02, best


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _held_per_subscription(raws: list[dict[str, object]]) -> tuple[float, Subscriber]:
    """Bytes (tracemalloc) that subscribing with each of ``raws`` holds, on average: the
    growth from the first half to the whole, so one-time allocations elsewhere in the
    process do not count."""
    hub, _ = _hub()
    sink = Sink()
    half = len(raws) // 2
    gc.collect()
    tracemalloc.start()
    sizes: list[int] = []
    for part in (raws[:half], raws[half:]):
        for raw in part:
            flt = parse_filter("transactions", raw)
            hub.subscribe(sink, "transactions", ("json", 0), flt, sub_id=f"s{len(sizes)}")
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    return (sizes[1] - sizes[0]) / (len(raws) - half), sink


def test_subscription_bytes_is_an_upper_estimate() -> None:
    """subscription_bytes charges at least what a subscription holds (filter, group, index,
    as tracemalloc counts it), for filters of their own with many values, few, and none."""
    cases: list[Callable[[int], dict[str, object]]] = [
        lambda k: {"address": [_addr(k * 1000 + n) for n in range(1000)]},
        lambda k: {"from": [_addr(k * 100 + n) for n in range(10)], "status": "PENDING"},
        lambda k: {"address": _addr(k)},
        lambda k: {"minValue": str(k)},
    ]
    for case in cases:
        raws = [case(k) for k in range(40)]  # built before counting: the client's input
        held, sink = _held_per_subscription(raws)
        charged = subscription_bytes(sink.subscriptions[0].filter)
        assert held <= charged, (raws[0].keys(), held, charged)
