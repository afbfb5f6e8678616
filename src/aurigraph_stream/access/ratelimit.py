"""Token buckets and per-client counters: how much any one client may take.

Pure and clock-injected: every method takes ``now`` (seconds, any monotonic
clock), so the unit tests step time by hand instead of sleeping. Memory is
bounded by design: a bucket left alone long enough to refill completely is
indistinguishable from a new one, so :class:`RateLimiter` drops it, and a
hard cap on the number of keys evicts the least recently used first (an
attacker spraying addresses cannot grow the table, only reset old entries).
"""

from __future__ import annotations

import math

__all__ = ["ConnectionCounter", "RateLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, n: int = 1) -> float:
        """Take ``n`` tokens if there are that many.

        Returns:
            0.0 when taken; otherwise the seconds until ``n`` tokens will be
            there (nothing is taken then).
        """
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= n:
            self.tokens = tokens - n
            return 0.0
        self.tokens = tokens
        return (n - tokens) / self.rate

    def available(self, now: float) -> float:
        """The tokens there are at ``now`` (nothing is taken)."""
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def full_at(self) -> float:
        """When this bucket will be full again if nothing more is taken."""
        return self.stamp + (self.burst - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per key (a client address), in bounded memory.

    The dict is kept in least-recently-used order (a key is moved to the end
    each time it is used), so both evictions look only at its front: buckets
    that are full again, and, past ``max_keys``, the oldest.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, *, max_keys: int = 65536) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take a token for ``key``: 0.0 if allowed, else seconds to wait."""
        buckets = self._buckets
        bucket = buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
        buckets[key] = bucket
        wait = bucket.take(now)
        self._evict(now)
        return wait

    def retry_after(self, wait: float) -> int:
        """``wait`` as a Retry-After value: whole seconds, at least 1."""
        return max(1, math.ceil(wait))

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        # Each bucket is evicted at most once, so this is amortised O(1) per take.
        while buckets:
            key = next(iter(buckets))
            if len(buckets) <= self.max_keys and buckets[key].full_at() > now:
                break
            del buckets[key]


class ConnectionCounter:
    """Open connections per key; a key at zero is removed, so memory follows the open count."""

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: no limit (still counted, for the stats)
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def full(self, key: str) -> bool:
        """Whether one more connection from ``key`` would go over the limit."""
        return 0 < self.limit <= self._counts.get(key, 0)

    def acquire(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def release(self, key: str) -> None:
        n = self._counts.get(key, 0) - 1
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)
