"""A bounded per-stream history of events, for replay and resume.

Each stream keeps its last ``size`` events and, when ``max_age`` is set, only
those accepted in the last ``max_age`` seconds: whichever bound is hit first.
The per-stream bounds come from the ``history_streams`` setting, parsed by
:func:`parse_policies` (``"transactions=5000:300,metrics=600"``: 5,000
transactions for at most 300 s, 600 metrics messages).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aurigraph_stream.errors import ConfigError
from aurigraph_stream.event import Event

__all__ = ["History", "HistoryPolicy", "parse_policies"]


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a stream is kept: ``size`` events, none older than ``max_age`` s (0: any age)."""

    size: int
    max_age: float = 0.0


class History:
    """The last events of one stream, oldest first.

    ``head`` is the seq of the newest event ever appended, kept even when age
    has emptied the history, so that :meth:`since` can tell "caught up" from
    "events were lost".
    """

    __slots__ = ("_clock", "_events", "head", "max_age")

    def __init__(
        self, size: int, max_age: float = 0.0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self.max_age = max_age
        self._clock = clock  # the clock of Event.accepted_at
        self.head = 0

    def __len__(self) -> int:
        self._expire()
        return len(self._events)

    def _expire(self) -> None:
        if self.max_age <= 0:
            return
        events = self._events
        oldest = self._clock() - self.max_age
        while events and events[0].accepted_at < oldest:
            events.popleft()

    def append(self, event: Event) -> None:
        self._events.append(event)
        self.head = event.seq
        self._expire()

    def last(self, n: int) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        self._expire()
        if n <= 0:
            return []
        events = self._events
        return list(events)[-n:] if n < len(events) else list(events)

    def first_seq(self) -> int:
        """The seq of the oldest event kept (``head + 1`` when none is)."""
        self._expire()
        return self._events[0].seq if self._events else self.head + 1

    def since(self, seq: int) -> list[Event] | None:
        """Events after ``seq``; ``None`` if some of them are no longer kept."""
        self._expire()
        if seq >= self.head:
            return []
        events = self._events
        if not events or seq < events[0].seq - 1:
            return None
        first = events[0].seq
        return list(events)[seq - first + 1 :]


def parse_policies(
    spec: str, streams: Iterable[str], default: HistoryPolicy
) -> dict[str, HistoryPolicy]:
    """Per-stream history bounds from ``"name=SIZE[:SECONDS],..."``; others get ``default``.

    Raises:
        ConfigError: an unknown stream, a size below 1 or a negative age.
    """
    names = list(streams)
    policies = dict.fromkeys(names, default)
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, bounds = item.partition("=")
        name = name.strip()
        if not sep or name not in policies:
            raise ConfigError(
                f"history_streams: {item!r} should be STREAM=SIZE[:SECONDS], "
                f"STREAM one of {', '.join(names)}"
            )
        size_text, _, age_text = bounds.partition(":")
        try:
            size = int(size_text)
            age = float(age_text) if age_text else default.max_age
        except ValueError:
            raise ConfigError(f"history_streams: {item!r}: SIZE and SECONDS are numbers") from None
        if not (1 <= size <= sys.maxsize and 0 <= age < math.inf):  # NaN is not >= 0
            raise ConfigError(
                f"history_streams: {item!r}: SIZE from 1 to {sys.maxsize}, SECONDS >= 0 and finite"
            )
        policies[name] = HistoryPolicy(size, age)
    return policies
