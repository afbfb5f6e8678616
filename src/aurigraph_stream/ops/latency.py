"""Broadcast latency per stream, in fixed log-spaced buckets: no samples are kept.

Latency is measured from the moment the broker accepted an event
(:attr:`Event.accepted_at`) to the moment the hub has handed its frames to the
socket of every subscriber (the end of :meth:`Hub.flush`). The hub reports
each flush once with all its events, so the cost is one bucket lookup per
event, whatever the number of subscribers: nothing is done per delivery.

Percentiles come from the buckets. Neighbouring bounds differ by at most
14 %, and an estimate is interpolated inside its bucket and never exceeds
the exact maximum, which is tracked beside them. The bounds include the
round numbers Prometheus dashboards use (0.1, 0.25, ... 75, 100, ... ms),
so the exported histogram is an exact coarsening of this one.

The SLO burn: each histogram also counts the events over the latency target
(``latency_target_ms``), exactly, whatever the target, so that the share of
events delivered late is a count and not an interpolation between buckets.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from aurigraph_stream.event import Event

__all__ = ["BOUNDS_MS", "EXPORT_BOUNDS_MS", "BroadcastLatency", "LatencyHistogram"]

# Mantissas of one decade: steps of at most 14 %, with 2.5, 5 and 7.5 included.
_MANTISSAS = (
    1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0, 2.2, 2.5, 2.8,
    3.0, 3.2, 3.6, 4.0, 4.5, 5.0, 5.6, 6.3, 7.0, 7.5, 8.0, 9.0,
)  # fmt: skip

#: Upper bounds of the buckets, ms, from 10 µs to 100 s; slower goes to overflow.
BOUNDS_MS: tuple[float, ...] = (
    *(round(m * 10.0**exp, 6) for exp in range(-2, 5) for m in _MANTISSAS),
    100_000.0,
)

#: The subset exported as Prometheus ``le`` buckets.
EXPORT_BOUNDS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0,
    250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
)  # fmt: skip

_INDEX = {bound: i for i, bound in enumerate(BOUNDS_MS)}
_EXPORT_INDEX = tuple(_INDEX[b] for b in EXPORT_BOUNDS_MS)


class LatencyHistogram:
    """Counts of latencies (ms) per bucket, plus their count, sum and maximum, and how
    many were over ``target_ms`` (``over_target``)."""

    __slots__ = ("buckets", "count", "max", "over_target", "sum", "target_ms")

    def __init__(self, target_ms: float = math.inf) -> None:
        self.buckets = [0] * (len(BOUNDS_MS) + 1)  # the last one is overflow (> 100 s)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0
        self.target_ms = target_ms
        self.over_target = 0

    @property
    def burn(self) -> float:
        """The share of recorded latencies over the target (0.0 when none was recorded)."""
        return self.over_target / self.count if self.count else 0.0

    def record(self, ms: float) -> None:
        # bisect_left puts a value equal to a bound in that bound's bucket, as
        # Prometheus' ``le`` (less than or equal) means.
        self.buckets[bisect_left(BOUNDS_MS, ms)] += 1
        self.count += 1
        self.sum += ms
        if ms > self.max:
            self.max = ms
        if ms > self.target_ms:
            self.over_target += 1

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (0 < q <= 1) in ms; 0.0 when nothing was recorded.

        Interpolated linearly inside the bucket that holds the rank, like
        Prometheus' ``histogram_quantile``, and capped at the exact maximum.
        """
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                if i == len(BOUNDS_MS):
                    return self.max
                lower = BOUNDS_MS[i - 1] if i else 0.0
                upper = BOUNDS_MS[i]
                return min(lower + (upper - lower) * (rank - seen) / n, self.max)
            seen += n
        return self.max  # pragma: no cover - the ranks always land in a bucket

    def export_buckets(self) -> list[tuple[float, int]]:
        """Cumulative counts at :data:`EXPORT_BOUNDS_MS`, then at +inf."""
        out: list[tuple[float, int]] = []
        cumulative = 0
        start = 0
        for bound, index in zip(EXPORT_BOUNDS_MS, _EXPORT_INDEX, strict=True):
            cumulative += sum(self.buckets[start : index + 1])
            start = index + 1
            out.append((bound, cumulative))
        out.append((math.inf, self.count))
        return out


class BroadcastLatency:
    """One histogram per stream, fed by the hub after each flush; ``target_ms`` is the
    latency past which an event counts against the SLO.

    ``subscribers(stream)`` says whether anyone was subscribed: events nobody
    receives are not broadcasts, and would make the figures look better than
    what clients see.
    """

    def __init__(
        self,
        streams: Iterable[str],
        subscribers: Callable[[str], int],
        target_ms: float = math.inf,
    ) -> None:
        self.streams: dict[str, LatencyHistogram] = {
            name: LatencyHistogram(target_ms) for name in streams
        }
        self._subscribers = subscribers

    def on_flush(self, events: Sequence[Event], now: float) -> None:
        """Record ``now - accepted_at`` for each event of a flush that had subscribers."""
        listened: dict[str, bool] = {}
        histograms = self.streams
        for event in events:
            stream = event.stream
            heard = listened.get(stream)
            if heard is None:
                heard = listened[stream] = self._subscribers(stream) > 0
            if heard:
                histograms[stream].record((now - event.accepted_at) * 1000.0)
