"""The flush governor's decisions, and the hub under it: held flushes, conflation. No sockets.

The clock is a number the test moves; a subscriber's write moves it by what a
socket write would cost, so a flush to N subscribers "takes" N writes.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.hub import Governor, Hub, Subscriber
from aurigraph_stream.hub.governor import DUTY, HOLD_RATIO, MAX_HOLD, MIN_COST
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES

PLAIN = ("json", 0)
WRITE = 0.0001  # seconds one socket write costs on the test's clock
CONFLATE = frozenset(("metrics", "consensus"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loop:
    """call_soon and call_later on the test's clock: callbacks run when the test says."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.soon: list[Callable[[], None]] = []
        self.later: list[tuple[float, Callable[[], None]]] = []

    def schedule(self, callback: Callable[[], None]) -> object:
        self.soon.append(callback)
        return None

    def schedule_later(self, delay: float, callback: Callable[[], None]) -> object:
        self.later.append((self.clock.now + delay, callback))
        return None

    def run_soon(self) -> None:
        while self.soon:
            callbacks, self.soon = self.soon, []
            for callback in callbacks:
                callback()

    def advance(self, seconds: float) -> None:
        """Move the clock, running the held callbacks that fall due on the way."""
        end = self.clock.now + seconds
        while True:
            due = sorted((t, i) for i, (t, _) in enumerate(self.later) if t <= end)
            if not due:
                break
            when, index = due[0]
            _, callback = self.later.pop(index)
            self.clock.now = max(self.clock.now, when)
            callback()
            self.run_soon()
        self.clock.now = end


class Sink(Subscriber):
    """Keeps each write; writing costs WRITE seconds of the test's clock."""

    __slots__ = ("clock", "writes")

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.writes: list[list[bytes]] = []

    def write_frames(self, frames: bytes | list[bytes]) -> None:
        self.clock.now += WRITE
        self.writes.append([frames] if isinstance(frames, bytes) else list(frames))

    def buffered_size(self) -> int:
        return 0

    def overflow(self) -> None:
        raise AssertionError("never slow here")

    def seqs(self) -> list[list[int]]:
        """The seqs of each write."""
        return [[orjson.loads(_text(f))["seq"] for f in w] for w in self.writes]


def _text(frame: bytes) -> bytes:
    return frame[4:] if frame[1] == 126 else frame[2:]


def _governed(
    subscribers: int, stream: str = "transactions", *, enabled: bool = True, target: float = 100
) -> tuple[Hub, Loop, Clock, list[Sink], Stats]:
    clock = Clock()
    loop = Loop(clock)
    stats = Stats.for_streams(NAMES)
    hub = Hub(
        stats,
        schedule=loop.schedule,
        schedule_later=loop.schedule_later,
        max_buffered=1 << 30,
        clock=clock,
        governor=Governor(target, enabled=enabled),
        conflate=CONFLATE,
    )
    sinks = [Sink(clock) for _ in range(subscribers)]
    for sink in sinks:
        hub.subscribe(sink, stream, PLAIN)
    return hub, loop, clock, sinks, stats


def _tx(seq: int, stream: str = "transactions", **extra: object) -> Event:
    return Event(stream, seq, {"seq": seq, **extra}, 0.0)


# -- the governor alone ------------------------------------------------------------------
def _busy(gov: Governor, cost: float, interval: float, publishes: int = 20) -> None:
    """Publishes every ``interval`` s, and one flush of ``cost`` s."""
    for i in range(publishes):
        gov.published(10.0 + i * interval)
    gov.flushed(20.0, 20.0 + cost)


def test_flushes_go_at_once_while_flushing_each_publish_takes_under_half_the_loop() -> None:
    """5 ms flushes, a publish every 20 ms: flushing each one takes a quarter of the loop."""
    gov = Governor(100)
    _busy(gov, 0.005, 0.020)
    assert gov.demand == pytest.approx(0.25)
    assert gov.delay() == 0.0
    assert gov.held == 0


def test_flushes_are_held_once_publishes_come_faster_than_half_the_loop_can_flush() -> None:
    """5 ms flushes, a publish every 4 ms: one flush each would take more than the loop;
    held for HOLD_RATIO flushes' worth while that fits half the target."""
    gov = Governor(100)
    _busy(gov, 0.005, 0.004)
    assert gov.demand > DUTY
    assert gov.delay() == pytest.approx(HOLD_RATIO * 0.005)
    assert gov.held == 1
    assert gov.last_hold == pytest.approx(0.015)


def test_the_publish_interval_follows_a_burst_and_an_idle_pause_ends_it() -> None:
    """After a minute of quiet, a burst (a publish every 0.5 ms) shows within a few dozen
    publishes, and one idle pause brings the flushes back to at once."""
    gov = Governor(100)
    _busy(gov, 0.005, 1.0)  # sparse
    assert gov.delay() == 0.0
    held_after = None
    for i in range(60):
        gov.published(100.0 + i * 0.0005)
        if held_after is None and gov.delay() > 0:
            held_after = i + 1
    assert held_after is not None
    assert held_after <= 40
    gov.published(200.0)
    assert gov.delay() == 0.0


def test_the_hold_keeps_the_expected_latency_within_half_the_target() -> None:
    """With long flushes the hold shrinks so hold + flush stays within target / 2, but
    never below one flush: flushing must leave half the loop to reading events."""
    gov = Governor(100)
    assert gov.hold_for(0.020) == pytest.approx(0.030)  # 3 x 20 ms would pass 50 ms
    assert gov.hold_for(0.030) == pytest.approx(0.030)  # 50 - 30 < 30: one flush's worth
    assert gov.hold_for(0.080) == pytest.approx(0.080)  # past the target: keep up first
    assert gov.hold_for(5.0) == MAX_HOLD
    assert Governor(1000).hold_for(0.020) == pytest.approx(0.060)  # room for 3 flushes
    assert Governor(0).hold_for(0.002) == pytest.approx(0.002)


def test_short_flushes_are_never_held() -> None:
    """Below MIN_COST a hold gains nothing worth the latency: every flush goes at once."""
    gov = Governor(100)
    _busy(gov, MIN_COST / 2, MIN_COST / 10)
    assert gov.demand > DUTY
    assert gov.delay() == 0.0


def test_the_cost_is_smoothed_a_quarter_per_flush() -> None:
    """One slow flush moves the estimate by a quarter of the difference, not all of it."""
    gov = Governor(100)
    gov.flushed(0.0, 0.008)
    assert gov.cost == pytest.approx(0.008)
    gov.flushed(1.0, 1.0)
    assert gov.cost == pytest.approx(0.006)
    gov.flushed(2.0, 2.022)
    assert gov.cost == pytest.approx(0.010)
    assert gov.flushes == 3


def test_a_disabled_governor_never_holds() -> None:
    gov = Governor(100, enabled=False)
    _busy(gov, 0.050, 0.0001)
    assert gov.delay() == 0.0
    assert (gov.held, gov.flushes) == (0, 1)


# -- the hub under it ----------------------------------------------------------------------
def test_events_queued_behind_a_long_fan_out_share_one_write_per_subscriber() -> None:
    """One event per request, each arriving right after the last flush: the first is written
    at once, the next flush is held, and the events of the hold go out in one write each."""
    hub, loop, clock, sinks, _ = _governed(100)  # a flush costs 100 writes: 10 ms
    hub.publish([_tx(1)])
    loop.run_soon()
    assert all(s.seqs() == [[1]] for s in sinks)
    for seq in range(2, 7):  # a request every 0.5 ms, as a pipelined publisher's
        hub.publish([_tx(seq)])
        loop.run_soon()
        clock.now += 0.0005
    assert all(len(s.writes) == 1 for s in sinks)  # held: nothing written yet
    assert len(loop.later) == 1
    loop.advance(0.1)
    assert all(s.seqs() == [[1], [2, 3, 4, 5, 6]] for s in sinks)
    gov = hub.governor
    assert gov is not None
    assert (gov.flushes, gov.held) == (2, 1)
    assert gov.last_hold == pytest.approx(HOLD_RATIO * 100 * WRITE)


def test_without_the_governor_every_queued_event_is_its_own_fan_out() -> None:
    """Governor off: each event published after a flush gets a flush, and a write, of its own."""
    hub, loop, clock, sinks, _ = _governed(100, enabled=False)
    for seq in range(1, 7):
        hub.publish([_tx(seq)])
        loop.run_soon()
        clock.now += 0.0005
    assert loop.later == []
    assert all(s.seqs() == [[1], [2], [3], [4], [5], [6]] for s in sinks)


def test_sparse_events_are_written_at_once_even_after_long_flushes() -> None:
    """An event that arrives after the loop was idle is not held, whatever flushes cost."""
    hub, loop, clock, sinks, _ = _governed(100)
    for seq in range(1, 4):
        hub.publish([_tx(seq)])
        loop.run_soon()
        clock.now += 0.5  # idle between events
    assert loop.later == []
    assert all(s.seqs() == [[1], [2], [3]] for s in sinks)


def test_while_a_flush_is_held_latest_wins_streams_send_only_the_newest_state() -> None:
    """Consensus states published during a hold: each subscriber gets the newest one it
    passes, the skipped deliveries are counted as conflated; transactions are all kept."""
    hub, loop, clock, sinks, stats = _governed(100, "consensus")
    txs = [Sink(clock) for _ in range(3)]
    for sink in txs:
        hub.subscribe(sink, "transactions", PLAIN)
    committed = Sink(clock)
    hub.subscribe(committed, "consensus", PLAIN, parse_filter("consensus", {"state": "COMMITTED"}))
    hub.publish([_tx(1, "consensus", state="VOTING")])
    loop.run_soon()
    hub.publish([_tx(1)])  # right after a 10 ms flush: held
    loop.run_soon()
    assert len(loop.later) == 1
    states = ["PROPOSING", "VOTING", "COMMITTED", "PROPOSING", "VOTING"]
    for seq, state in enumerate(states, start=2):
        hub.publish([_tx(seq, "consensus", state=state), _tx(seq)])
        loop.run_soon()
    loop.advance(0.2)
    assert all(s.seqs() == [[1], [6]] for s in sinks)  # 2-5 replaced by the newest, 6
    assert committed.seqs() == [[4]]  # the newest COMMITTED state, not the newest state
    assert all(s.seqs() == [[1, 2, 3, 4, 5, 6]] for s in txs)
    # 100 subscribers skipped 4 states each; the COMMITTED one skipped none.
    assert stats.endpoints["consensus"].conflated == 400
    assert stats.endpoints["consensus"].messages_sent == 100 * 2 + 1
    assert stats.endpoints["transactions"].conflated == 0


def test_without_the_governor_nothing_is_conflated() -> None:
    """Off, every consensus state reaches every subscriber."""
    hub, loop, clock, sinks, stats = _governed(100, "consensus", enabled=False)
    for seq in range(1, 5):
        hub.publish([_tx(seq, "consensus")])
        loop.run_soon()
        clock.now += 0.0005
    assert all(s.seqs() == [[1], [2], [3], [4]] for s in sinks)
    assert stats.endpoints["consensus"].conflated == 0


def test_drain_writes_conflated_states_before_what_waits_in_the_backlog() -> None:
    """Shutting down during a hold, with a backlog behind it: the held states go out first,
    so each stream stays in seq order."""
    hub, loop, clock, sinks, _ = _governed(100, "metrics")
    txs = [Sink(clock) for _ in range(3)]
    for sink in txs:
        hub.subscribe(sink, "transactions", PLAIN)
    hub.publish([_tx(1, "metrics")])
    loop.run_soon()
    hub.publish([_tx(2, "metrics")])  # right after a long flush: fanned out, the flush held
    hub.publish([_tx(3, "metrics"), _tx(4, "metrics")])  # held: conflated at the flush
    assert len(loop.later) == 1
    hub._budget = 1  # the next batch overflows into the backlog
    hub.publish([_tx(1), _tx(2)])
    hub.publish([_tx(5, "metrics")])  # behind the backlog
    hub.drain()
    assert all(s.seqs() == [[1], [2, 4, 5]] for s in sinks)
    assert all(s.seqs() == [[1, 2]] for s in txs)


def test_a_held_flush_records_the_latency_of_every_event_it_writes() -> None:
    """on_flush sees the events of the hold once each, conflated ones included."""
    seen: list[int] = []
    clock = Clock()
    loop = Loop(clock)
    hub = Hub(
        Stats.for_streams(NAMES),
        schedule=loop.schedule,
        schedule_later=loop.schedule_later,
        max_buffered=1 << 30,
        clock=clock,
        governor=Governor(100),
        conflate=CONFLATE,
        on_flush=lambda events, now: seen.extend(e.seq for e in events),
    )
    for _ in range(100):
        hub.subscribe(Sink(clock), "metrics", PLAIN)
    for seq in range(1, 5):
        hub.publish([_tx(seq, "metrics")])
        loop.run_soon()
    loop.advance(0.2)
    assert sorted(seen) == [1, 2, 3, 4]


def test_a_reset_during_a_hold_comes_after_the_held_states() -> None:
    """The broker lost the stream's history while a flush was held: the newest state of the
    old history goes out first, then the reset's announcement, never the other way round."""
    hub, loop, clock, sinks, _ = _governed(100, "consensus")
    watcher = Sink(clock)
    hub.subscribe(watcher, "consensus", PLAIN, sub_id="c")
    hub.publish([_tx(1, "consensus")])
    loop.run_soon()
    hub.publish([_tx(2, "consensus")])  # right after a 10 ms flush: the next one is held
    hub.publish([_tx(3, "consensus"), _tx(4, "consensus")])  # held: conflated
    assert len(loop.later) == 1
    hub.reset("consensus", Position(0, "e2"))
    loop.advance(0.2)
    frames = [orjson.loads(_text(f)) for w in watcher.writes for f in w]
    assert [f["data"]["seq"] for f in frames[:-1]] == [1, 2, 4]
    assert (frames[-1]["type"], frames[-1]["recovered"]) == ("subscribed", False)
    assert all(s.seqs() == [[1], [2, 4]] for s in sinks)


def test_a_subscription_joining_during_a_hold_gets_the_newest_state_after_its_join() -> None:
    """A subscription waiting for a seq (its replay ended there) that is admitted while the
    held states are fanned out, into a group of its own, gets the states after that seq,
    the newest included (its group was not there to be conflated when the hold began)."""
    hub, loop, clock, sinks, _ = _governed(10, "consensus")
    joining = Sink(clock)
    hub.publish([_tx(1, "consensus", state="VOTING")])
    loop.run_soon()
    hub.publish([_tx(2, "consensus", state="VOTING")])  # fanned out, its flush held
    loop.run_soon()
    assert len(loop.later) == 1
    flt = parse_filter("consensus", {"state": "VOTING"})
    hub.subscribe(joining, "consensus", PLAIN, flt, after=3)  # has everything up to 3
    for seq in (3, 4, 5):
        hub.publish([_tx(seq, "consensus", state="VOTING")])
    loop.advance(0.2)
    assert all(s.seqs() == [[1], [2, 5]] for s in sinks)  # 3 and 4 conflated
    assert joining.seqs() == [[4, 5]]
