"""The broadcast-latency recorder: buckets, percentiles, export, and what counts as a broadcast."""

from __future__ import annotations

import itertools
import math
import random

from aurigraph_stream.event import Event
from aurigraph_stream.ops.latency import (
    BOUNDS_MS,
    EXPORT_BOUNDS_MS,
    BroadcastLatency,
    LatencyHistogram,
)


def test_bounds_are_fine_and_include_the_exported_ones() -> None:
    """Neighbouring bounds differ by at most 14 %, and every exported bound is one of them."""
    assert list(BOUNDS_MS) == sorted(set(BOUNDS_MS))
    assert max(b / a for a, b in itertools.pairwise(BOUNDS_MS)) <= 1.14
    assert set(EXPORT_BOUNDS_MS) <= set(BOUNDS_MS)
    assert BOUNDS_MS[0] == 0.01
    assert BOUNDS_MS[-1] == 100_000.0


def test_percentiles_are_within_a_bucket_of_the_exact_values() -> None:
    """On 20,000 log-normal latencies p50, p99 and p99.9 land within 14 % of the exact ones."""
    rng = random.Random(3)
    values = [rng.lognormvariate(1.0, 1.2) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    values.sort()
    for q in (0.5, 0.99, 0.999):
        exact = values[math.ceil(q * len(values)) - 1]
        assert abs(h.percentile(q) - exact) <= 0.14 * exact, q
    assert h.count == len(values)
    assert h.max == values[-1]
    assert math.isclose(h.sum, sum(values))


def test_estimates_never_exceed_the_maximum_and_empty_is_zero() -> None:
    """A single value is reported as itself (capped at the max); nothing recorded is 0."""
    assert LatencyHistogram().percentile(0.99) == 0.0
    h = LatencyHistogram()
    h.record(3.1)
    assert h.percentile(0.5) == h.percentile(0.999) == 3.1
    h.record(250_000.0)  # past the last bound: overflow bucket, reported as the max
    assert h.percentile(1.0) == 250_000.0


def test_export_buckets_are_cumulative_with_le_semantics() -> None:
    """A value equal to a bound counts in that bound's bucket; +Inf holds the count."""
    h = LatencyHistogram()
    for v in (0.1, 0.2, 5.0, 5.01, 99.0, 20_000.0):
        h.record(v)
    exported = dict(h.export_buckets())
    assert exported[0.1] == 1
    assert exported[0.25] == 2
    assert exported[5.0] == 3
    assert exported[10.0] == 4
    assert exported[100.0] == 5
    assert exported[10000.0] == 5
    assert exported[math.inf] == 6
    counts = [n for _, n in h.export_buckets()]
    assert counts == sorted(counts)


def test_only_events_with_subscribers_are_recorded_once_each() -> None:
    """One flush of several events records one latency per event of a stream that had
    subscribers, measured from accepted_at, and none for a stream nobody follows."""
    subscribers = {"transactions": 3, "metrics": 0}
    latency = BroadcastLatency(("transactions", "metrics"), lambda s: subscribers[s])
    flushed = [
        Event("transactions", 1, {}, accepted_at=10.000),
        Event("transactions", 2, {}, accepted_at=10.002),
        Event("metrics", 1, {}, accepted_at=10.001),
    ]
    latency.on_flush(flushed, 10.005)
    tx = latency.streams["transactions"]
    assert tx.count == 2  # not 2 x 3 subscribers
    assert math.isclose(tx.max, 5.0)
    assert math.isclose(tx.sum, 5.0 + 3.0)
    assert latency.streams["metrics"].count == 0


def test_events_over_the_target_are_counted_exactly_per_stream() -> None:
    """The SLO burn: events later than the target are counted, whatever bucket they fall
    in; an event exactly at the target is within it."""
    latency = BroadcastLatency(("transactions", "consensus"), lambda s: 1, target_ms=100.0)
    latency.on_flush([Event("transactions", 1, {}, accepted_at=10.000)], 10.050)
    latency.on_flush([Event("transactions", 2, {}, accepted_at=10.000)], 10.100)
    latency.on_flush([Event("transactions", 3, {}, accepted_at=10.000)], 10.1003)
    latency.on_flush([Event("consensus", 1, {}, accepted_at=10.000)], 10.010)
    tx = latency.streams["transactions"]
    assert (tx.count, tx.over_target) == (3, 1)
    assert math.isclose(tx.burn, 1 / 3)
    assert latency.streams["consensus"].burn == 0.0
    assert BroadcastLatency(("metrics",), lambda s: 1).streams["metrics"].burn == 0.0
