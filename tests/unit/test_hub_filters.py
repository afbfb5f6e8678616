"""Unit tests of the filtered hub and of filters.py: indexing, encode once, seq dedupe,
latest-wins. No sockets: the hub is sans-I/O."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from aurigraph_stream.errors import SubscriptionError
from aurigraph_stream.event import Event
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.hub import Hub, Subscriber
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
