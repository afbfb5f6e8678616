"""Reconnect delays: jittered exponential back-off, and the server's Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

__all__ = ["RETRY_AFTER_JITTER", "Backoff", "parse_retry_after"]

#: Seconds added at random to a ``Retry-After``, so clients refused together do
#: not all come back in the same instant (the TypeScript SDK adds as much).
RETRY_AFTER_JITTER = 0.25


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each cut by a random share.

    The n-th delay is ``min(maximum, initial * factor**n)`` times a factor drawn
    from ``[1 - jitter, 1]``, so clients dropped together (a server restart) do
    not all come back in the same instant. :meth:`reset` after a connection that
    worked.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter <= 1")

    def next(self) -> float:
        """The delay before the next attempt."""
        # The exponent is capped so a long outage cannot overflow the float.
        base = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def after(self, retry_after: float | None) -> float:
        """The next delay, but never shorter than the server's ``Retry-After``.

        A ``Retry-After`` gets up to :data:`RETRY_AFTER_JITTER` seconds more, drawn at random.
        """
        delay = self.next()
        if retry_after is None:
            return delay
        return max(delay, retry_after + RETRY_AFTER_JITTER * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    ``None`` when there is no header or it cannot be read.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)
