"""Unit tests of hub.py: encode once, batch per tick, cap slow consumers. No sockets."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import orjson

from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.hub import Hub, Subscriber
from aurigraph_stream.hub.members import DETACHED
from aurigraph_stream.stats import EndpointStats, Stats
from aurigraph_stream.streams import NAMES

PLAIN = ("json", 0)
DEFLATE = ("json", 15)


class Recorder(Subscriber):
    """A subscriber that keeps what the hub writes, with a settable transport backlog."""

    __slots__ = ("backlog", "overflows", "writes")

    def __init__(self, counters: EndpointStats = DETACHED) -> None:
        super().__init__(counters)
        self.writes: list[list[bytes]] = []
        self.backlog = 0
        self.overflows = 0

    def write_frames(self, frames: bytes | list[bytes]) -> None:
        self.writes.append([frames] if isinstance(frames, bytes) else frames)

    def buffered_size(self) -> int:
        return self.backlog

    def overflow(self) -> None:
        self.overflows += 1


class Loop:
    """Stands in for loop.call_soon: keeps callbacks until the test runs them."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def schedule(self, callback: Callable[[], None]) -> object:
        self.callbacks.append(callback)
        return None

    def run(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def _hub(max_buffered: int = 1 << 20) -> tuple[Hub, Loop, Stats]:
    loop = Loop()
    stats = Stats.for_streams(NAMES)
    return Hub(stats, schedule=loop.schedule, max_buffered=max_buffered), loop, stats


def _event(seq: int, stream: str = "metrics", **extra: object) -> Event:
    return Event(stream, seq, {"tps": seq, "seq": seq, **extra}, 0.0)


def _text(frame: bytes) -> bytes:
    """The payload of an unmasked server frame with a 7- or 16-bit length."""
    return frame[4:] if frame[1] == 126 else frame[2:]


def test_every_subscriber_of_a_variant_gets_the_identical_bytes_object() -> None:
    """Encode once: the frame written to each subscriber of a variant is the same object."""
    hub, loop, _ = _hub()
    plain = [Recorder() for _ in range(5)]
    packed = [Recorder() for _ in range(3)]
    for sub in plain:
        hub.subscribe(sub, "metrics", PLAIN)
    for sub in packed:
        hub.subscribe(sub, "metrics", DEFLATE)
    hub.publish([_event(1)])
    loop.run()
    frames = [sub.writes[0][0] for sub in plain]
    assert all(frame is frames[0] for frame in frames)
    assert orjson.loads(_text(frames[0])) == {"tps": 1, "seq": 1}
    compressed = [sub.writes[0][0] for sub in packed]
    assert all(frame is compressed[0] for frame in compressed)
    assert compressed[0][0] & 0x40  # RSV1: permessage-deflate
    inflated = zlib.decompressobj(-15).decompress(_text(compressed[0]) + b"\x00\x00\xff\xff")
    assert orjson.loads(inflated) == {"tps": 1, "seq": 1}


def test_publishes_in_one_tick_are_one_write_per_subscriber() -> None:
    """Two publishes before a flush: one flush scheduled, one write_frames call each, in order."""
    hub, loop, stats = _hub()
    subs = [Recorder() for _ in range(3)]
    for sub in subs:
        hub.subscribe(sub, "metrics", PLAIN)
    hub.publish([_event(1)])
    hub.publish([_event(2), _event(3)])
    assert len(loop.callbacks) == 1
    assert all(sub.writes == [] for sub in subs)  # nothing is written before the flush
    loop.run()
    for sub in subs:
        assert len(sub.writes) == 1
        assert [orjson.loads(_text(f))["seq"] for f in sub.writes[0]] == [1, 2, 3]
    assert stats.endpoints["metrics"].messages_sent == 9
    hub.publish([_event(4)])
    assert len(loop.callbacks) == 1  # the next tick schedules a new flush
    loop.run()
    assert all(len(sub.writes) == 2 for sub in subs)


def test_events_go_only_to_their_stream() -> None:
    """A subscriber of one stream receives nothing published on another."""
    hub, loop, _ = _hub()
    metrics, network = Recorder(), Recorder()
    hub.subscribe(metrics, "metrics", PLAIN)
    hub.subscribe(network, "network", PLAIN)
    hub.publish([_event(1, "network")])
    loop.run()
    assert metrics.writes == []
    assert len(network.writes) == 1
    assert hub.subscribers("metrics") == hub.subscribers("network") == 1


def test_slow_consumer_overflows_once_and_others_get_every_frame() -> None:
    """A backlog over the cap: overflow() once, it leaves the hub, the others get every frame."""
    hub, loop, stats = _hub(max_buffered=1000)
    slow, fast = Recorder(stats.endpoints["metrics"]), Recorder()
    hub.subscribe(slow, "metrics", PLAIN)
    hub.subscribe(fast, "metrics", PLAIN)
    hub.publish([_event(1)])
    loop.run()
    slow.backlog = 1001
    slow.paused = True  # as a transport past its high-water mark reports
    for seq in range(2, 6):
        hub.publish([_event(seq)])
        loop.run()
    assert slow.overflows == 1
    assert len(slow.writes) == 1
    assert hub.subscribers("metrics") == 1
    assert [orjson.loads(_text(f))["seq"] for w in fast.writes for f in w] == [1, 2, 3, 4, 5]
    assert stats.endpoints["metrics"].failed_sends == 1


def test_a_batch_larger_than_the_cap_reaches_a_subscriber_that_kept_up() -> None:
    """The cap judges the backlog: a reader with nothing unsent gets a large tick whole."""
    hub, loop, _ = _hub(max_buffered=1024)
    sub = Recorder()
    hub.subscribe(sub, "metrics", PLAIN)
    hub.publish([_event(seq, pad="x" * 100) for seq in range(1, 51)])
    loop.run()
    assert sub.overflows == 0
    assert len(sub.writes[0]) == 50
    assert sum(map(len, sub.writes[0])) > 1024


def test_unsubscribe_drops_pending_frames() -> None:
    """Frames queued for a subscriber that leaves before the flush are never written."""
    hub, loop, stats = _hub()
    gone, stays = Recorder(stats.endpoints["metrics"]), Recorder()
    hub.subscribe(gone, "metrics", PLAIN)
    hub.subscribe(stays, "metrics", PLAIN)
    hub.publish([_event(1), _event(2)])
    hub.unsubscribe(gone)
    hub.unsubscribe(gone)  # idempotent
    loop.run()
    assert gone.writes == []
    assert gone.pending is None
    assert len(stays.writes) == 1
    assert stats.endpoints["metrics"].failed_sends == 2


def test_on_flush_sees_every_published_event() -> None:
    """on_flush gets the events of the tick, even those no one subscribed to."""
    seen: list[list[int]] = []
    loop = Loop()
    hub = Hub(
        Stats.for_streams(NAMES),
        schedule=loop.schedule,
        max_buffered=1 << 20,
        on_flush=lambda events, now: seen.append([e.seq for e in events]),
        clock=lambda: 42.0,
    )
    hub.publish([_event(1, "consensus"), _event(2, "consensus")])
    loop.run()
    assert seen == [[1, 2]]


def _tx(seq: int) -> Event:
    return Event("transactions", seq, {"txHash": f"0x{seq:064x}", "seq": seq}, 0.0)


def _seqs(sink: Recorder) -> list[int]:
    out = []
    for batch in sink.writes:
        for frame in batch:
            payload = orjson.loads(frame[2:])
            out.append(payload.get("seq", -1) if "type" not in payload else -1)
    return out


def test_a_loading_subscription_keeps_live_events_until_its_history_is_read() -> None:
    """While loading, events are kept for the subscription, not written; take_buffer
    returns them in order, and after join_after(n) only seqs above n are delivered."""
    hub, loop, _ = _hub()
    sink = Recorder()
    sub = hub.subscribe(sink, "transactions", PLAIN, loading=True)
    hub.publish([_tx(1), _tx(2)])
    hub.publish([_tx(3)])
    loop.run()
    assert sink.writes == []
    assert [e.seq for e in hub.take_buffer(sub) or ()] == [1, 2, 3]
    hub.join_after(sub, 4)  # the history read reached seq 4
    hub.publish([_tx(4), _tx(5)])
    loop.run()
    assert _seqs(sink) == [5]


def _status_tx(seq: int, status: str) -> Event:
    return Event("transactions", seq, {"txHash": f"0x{seq:064x}", "status": status, "seq": seq}, 0)


def test_a_loading_subscription_keeps_only_the_events_its_filter_passes() -> None:
    """What a loading subscription keeps is filtered when kept, not when its history
    arrives: events it would not receive cost it nothing meanwhile."""
    hub, loop, _ = _hub()
    sink = Recorder()
    flt = parse_filter("transactions", {"status": "FAILED"}, strings=True)
    sub = hub.subscribe(sink, "transactions", PLAIN, flt, loading=True)
    hub.publish([_status_tx(i, "FAILED" if i % 3 == 0 else "PENDING") for i in range(1, 10)])
    loop.run()
    assert [e.seq for e in hub.drain_buffer(sub) or ()] == [3, 6, 9]
    hub.publish([_status_tx(10, "PENDING"), _status_tx(12, "FAILED")])
    assert [e.seq for e in hub.take_buffer(sub) or ()] == [12]  # drained: only the new ones


def test_a_loading_subscription_keeps_at_most_the_loading_limit() -> None:
    """Past the loading limit (events that pass its filter), the buffer is void, as after
    a reset: its history no longer joins up with what it kept. Events its filter drops do
    not count."""
    hub, loop, _ = _hub()
    hub.loading_limit = 3
    sink, other = Recorder(), Recorder()
    flt = parse_filter("transactions", {"status": "FAILED"}, strings=True)
    capped = hub.subscribe(sink, "transactions", PLAIN, flt, loading=True)
    within = hub.subscribe(other, "transactions", PLAIN, flt, loading=True)
    hub.publish([_status_tx(i, "FAILED") for i in range(1, 4)])
    hub.publish([_status_tx(i, "PENDING") for i in range(4, 20)])
    assert [e.seq for e in hub.take_buffer(within) or ()] == [1, 2, 3]
    hub.publish([_status_tx(20, "FAILED")])
    loop.run()
    assert hub.take_buffer(capped) is None
    assert sink.writes == other.writes == []


def test_many_joining_subscriptions_leave_in_any_order() -> None:
    """Subscriptions waiting to join (after a seq, or loading) leave individually: the
    others still join and are delivered to."""
    hub, loop, _ = _hub()
    sinks = [Recorder() for _ in range(6)]
    subs = [
        hub.subscribe(sink, "transactions", PLAIN, after=2, loading=i % 2 == 0)
        for i, sink in enumerate(sinks)
    ]
    for i in (4, 1, 0):
        hub.remove(subs[i])
    hub.take_buffer(subs[2])
    hub.join_after(subs[2], 2)
    hub.publish([_tx(2), _tx(3)])
    loop.run()
    assert [_seqs(sink) for sink in sinks] == [[], [], [3], [3], [], [3]]


def test_a_reset_tells_control_subscriptions_and_frees_joining_ones() -> None:
    """reset(): subscriptions with an id or asked control frames get a subscribed frame
    with recovered false and the new position; plain ones get nothing; one waiting for a
    seq of the lost epoch joins at once; a loading one learns its buffer is void."""
    hub, loop, _ = _hub()
    plain, control, mux, waiting, loading = (Recorder() for _ in range(5))
    hub.subscribe(plain, "transactions", PLAIN)
    hub.subscribe(control, "transactions", PLAIN, control=True)
    hub.subscribe(mux, "transactions", PLAIN, sub_id="t")
    hub.subscribe(waiting, "transactions", PLAIN, after=100)
    pending = hub.subscribe(loading, "transactions", PLAIN, loading=True)
    hub.reset("transactions", Position(0, "e2"))
    loop.run()
    assert plain.writes == []
    (frame,) = control.writes[0]
    assert orjson.loads(frame[2:]) == {
        "type": "subscribed",
        "stream": "transactions",
        "position": {"seq": 0, "epoch": "e2"},
        "recovered": False,
        "replayed": 0,
    }
    (wrapped,) = mux.writes[0]
    assert orjson.loads(wrapped[2:])["id"] == "t"
    hub.publish([_tx(1)])
    loop.run()
    assert _seqs(waiting) == [1]  # no longer waits for seq 101 of the old epoch
    assert hub.take_buffer(pending) is None


def test_a_batch_over_the_tick_budget_is_fanned_out_over_several_ticks_in_order() -> None:
    """A huge batch does not hold the loop: each tick fans out about ``tick_budget`` work,
    writes once per subscriber, and leaves the rest, in order, to callbacks of its own."""
    loop = Loop()
    hub = Hub(Stats.for_streams(NAMES), schedule=loop.schedule, max_buffered=1 << 20)
    hub._budget = 10 * (4 + 100)  # ten events to four subscribers (one frame each) per tick
    subs = [Recorder() for _ in range(4)]
    for sub in subs:
        hub.subscribe(sub, "metrics", PLAIN)
    hub.publish([_event(seq) for seq in range(1, 36)])
    assert hub.backlog == 25
    hub.publish([_event(36)])  # behind the waiting ones, never ahead
    ticks = 0
    while loop.callbacks and ticks < 20:
        loop.run()
        ticks += 1
    assert hub.backlog == 0
    for sub in subs:
        assert [len(write) for write in sub.writes] == [10, 10, 10, 6]
        seqs = [orjson.loads(_text(f))["seq"] for write in sub.writes for f in write]
        assert seqs == list(range(1, 37))


def test_a_reader_that_stops_is_found_slow_after_one_chunk_not_the_whole_batch() -> None:
    """Between two chunks the flush checks each backlog: a subscriber over the cap is closed
    (4008) and the rest of the batch is never queued for it."""
    loop = Loop()
    hub = Hub(Stats.for_streams(NAMES), schedule=loop.schedule, max_buffered=1024)
    hub._budget = 5 * (2 + 100)
    stuck, healthy = Recorder(), Recorder()
    for sub in (stuck, healthy):
        hub.subscribe(sub, "metrics", PLAIN)
    hub.publish([_event(seq) for seq in range(1, 31)])
    loop.run()  # the first flush: both get five
    stuck.paused, stuck.backlog = True, 4096
    for _ in range(20):
        if not loop.callbacks:
            break
        loop.run()
    assert (stuck.overflows, sum(len(w) for w in stuck.writes)) == (1, 5)
    assert sum(len(w) for w in healthy.writes) == 30


def test_drain_writes_every_waiting_event_at_once() -> None:
    """Shutting down: what waits for later ticks is fanned out and written now."""
    loop = Loop()
    hub = Hub(Stats.for_streams(NAMES), schedule=loop.schedule, max_buffered=1 << 20)
    hub._budget = 2 * (1 + 100)
    sub = Recorder()
    hub.subscribe(sub, "metrics", PLAIN)
    hub.publish([_event(seq) for seq in range(1, 11)])
    hub.drain()
    assert hub.backlog == 0
    assert [orjson.loads(_text(f))["seq"] for w in sub.writes for f in w] == list(range(1, 11))


def test_a_reset_comes_after_the_events_still_waiting_for_a_tick() -> None:
    """With a fan-out budget, events of the old history may wait for later ticks: the
    reset announcement is written after them, never ahead."""
    loop = Loop()
    hub = Hub(Stats.for_streams(NAMES), schedule=loop.schedule, max_buffered=1 << 20)
    hub._budget = 1  # one event per tick
    sub = Recorder()
    hub.subscribe(sub, "metrics", PLAIN, sub_id="m")
    hub.publish([_event(seq) for seq in range(1, 11)])
    assert hub.backlog > 0
    hub.reset("metrics", Position(0, "e2"))
    for _ in range(20):
        if not loop.callbacks:
            break
        loop.run()
    kinds = [orjson.loads(_text(f)) for w in sub.writes for f in w]
    assert [m["data"]["seq"] for m in kinds[:-1]] == list(range(1, 11))
    assert (kinds[-1]["type"], kinds[-1]["recovered"]) == ("subscribed", False)
