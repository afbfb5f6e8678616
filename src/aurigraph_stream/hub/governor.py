"""The flush governor: when the hub writes, so that broadcast latency holds its target.

Without a governor the hub flushes at the end of every event-loop tick that
queued something. That is the lowest latency while flushes are short and
events sparse. But once one flush (a write to each of thousands of sockets)
takes long enough that the next events arrive while it runs, each of them
starts a flush of its own: a publisher that sends one event per request,
pipelined on one connection, gets one fan-out per event, and falls further
behind for as long as it sends.

The governor reads how long flushes take (smoothed) and how often events
are published (the smoothed interval between publishes). ``cost / interval``
is the share of the loop that flushing would take if every publish had a
flush of its own. It is wall-clock time, not CPU time: on a machine shared
with other work the loop gets less than a core, and what counts is how much
of its time the loop has left to read events. Past :data:`DUTY` (half),
events queue behind fan-outs and the server falls behind, so a flush is then
held: it waits a bounded *hold* for more events, and the hub writes them all
with one write per subscriber::

    hold = min(MAX_HOLD, max(cost, min(HOLD_RATIO * cost, target / 2 - cost)))

- at least one flush's ``cost``: flushing then takes at most half of the
  loop, so the events keep being read and the server keeps up;
- up to ``HOLD_RATIO`` flushes' worth, while an event's expected latency (its
  wait, then the flush) stays within half of ``target``: the other half is
  the margin that keeps the 99th percentile, not only the mean, under it.

Below that share, or when flushes are shorter than :data:`MIN_COST` (a few
hundred writes: holding them would gain little), every flush is written at once, as
without a governor: a governor that never sees load changes nothing. While a
flush is held, the hub also conflates the latest-wins streams
(:mod:`.fanout`): their events wait for the flush, and only the newest one a
subscriber would get goes out.

The governor does no I/O and reads no clock: the hub passes it readings of
its clock, so tests drive it with numbers.
"""

from __future__ import annotations

import math

__all__ = ["DUTY", "HOLD_RATIO", "MAX_HOLD", "MIN_COST", "Governor"]

#: Flushes shorter than this (seconds) are never held.
MIN_COST = 0.0005
#: Flushes are held once flushing every publish on its own would take more than this
#: share of the loop.
DUTY = 0.5
#: Flushes' worth of time a hold may gather events for, latency allowing.
HOLD_RATIO = 3.0
#: No hold is longer than this, whatever a flush costs (seconds).
MAX_HOLD = 1.0
#: Weight of a new reading in the smoothed flush cost.
DECAY = 0.25
#: Weight of a new reading in the smoothed interval between publishes: a burst shows
#: within a few publishes, and one idle pause ends it.
ARRIVAL_WEIGHT = 0.2


class Governor:
    """Decides whether the next flush is written at once or held, and for how long.

    Args:
        target_ms: the broadcast latency target (``latency_target_ms``).
        enabled: off, every flush is written at once (``delay`` is always 0),
            and the figures are still kept.

    Attributes:
        cost: smoothed seconds a flush takes.
        interval: smoothed seconds between two publishes.
        flushes: flushes written.
        held: flushes that were held.
        last_hold: the latest hold, seconds.
    """

    __slots__ = (
        "cost",
        "enabled",
        "flushes",
        "held",
        "interval",
        "last_hold",
        "last_publish",
        "target",
    )

    def __init__(self, target_ms: float, *, enabled: bool = True) -> None:
        self.target = max(0.0, target_ms) / 1000.0
        self.enabled = enabled
        self.cost = 0.0
        self.interval = math.inf
        self.last_publish = -math.inf
        self.flushes = 0
        self.held = 0
        self.last_hold = 0.0

    @property
    def demand(self) -> float:
        """The share of the loop flushing would take with one flush per publish."""
        return self.cost / self.interval if self.interval > 0 else math.inf

    def published(self, now: float) -> None:
        """Events were published at ``now`` (one call per batch, whatever its size)."""
        gap = now - self.last_publish
        self.last_publish = now
        if gap == math.inf:
            return
        if self.interval == math.inf:
            self.interval = gap
        else:
            self.interval += ARRIVAL_WEIGHT * (gap - self.interval)

    def hold_for(self, cost: float) -> float:
        """The hold for flushes that take ``cost`` seconds."""
        budget = self.target / 2 - cost
        return min(MAX_HOLD, max(cost, min(HOLD_RATIO * cost, budget)))

    def delay(self) -> float:
        """Seconds the flush asked for now should wait for more events (0: none)."""
        cost = self.cost
        if not self.enabled or cost < MIN_COST or self.demand <= DUTY:
            return 0.0
        hold = self.hold_for(cost)
        self.held += 1
        self.last_hold = hold
        return hold

    def flushed(self, started: float, ended: float) -> None:
        """A flush ran from ``started`` to ``ended`` (clock readings, seconds)."""
        took = max(0.0, ended - started)
        self.flushes += 1
        self.cost = took if self.flushes == 1 else self.cost + DECAY * (took - self.cost)
