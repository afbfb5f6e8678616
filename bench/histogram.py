"""A fixed-bucket latency histogram: cheap to record into, exact to merge.

Recording one sample is an index computation and a list increment, so the
load generator can record every delivery instead of sampling. Buckets are
10 us wide up to 100 ms and 1 ms wide from there to 60 s; a percentile is
reported as the upper edge of its bucket (never flattering), the maximum
exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["FINE_LIMIT_US", "Histogram", "bucket_of", "upper_edge_us"]

FINE_US = 10  # bucket width below FINE_LIMIT_US
FINE_LIMIT_US = 100_000
COARSE_US = 1_000
LIMIT_US = 60_000_000
_FINE_BUCKETS = FINE_LIMIT_US // FINE_US
SIZE = _FINE_BUCKETS + (LIMIT_US - FINE_LIMIT_US) // COARSE_US + 1


def bucket_of(latency_us: int) -> int:
    if latency_us < FINE_LIMIT_US:
        return latency_us // FINE_US if latency_us > 0 else 0
    if latency_us >= LIMIT_US:
        return SIZE - 1
    return _FINE_BUCKETS + (latency_us - FINE_LIMIT_US) // COARSE_US


def upper_edge_us(bucket: int) -> int:
    if bucket < _FINE_BUCKETS:
        return (bucket + 1) * FINE_US
    return FINE_LIMIT_US + (bucket - _FINE_BUCKETS + 1) * COARSE_US


class Histogram:
    """Counts per bucket, plus the exact maximum."""

    __slots__ = ("count", "counts", "max_us")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.max_us = 0

    @classmethod
    def from_buckets(cls, buckets: Mapping[int, int], max_us: int) -> Histogram:
        hist = cls()
        hist.counts = dict(buckets)
        hist.count = sum(buckets.values())
        hist.max_us = max_us
        return hist

    def merge(self, others: Iterable[Histogram]) -> Histogram:
        for other in others:
            for bucket, n in other.counts.items():
                self.counts[bucket] = self.counts.get(bucket, 0) + n
            self.count += other.count
            self.max_us = max(self.max_us, other.max_us)
        return self

    def percentile_us(self, q: float) -> int | None:
        """The latency below which a fraction ``q`` of the samples fall (None if empty)."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(upper_edge_us(bucket), self.max_us)
        return self.max_us
