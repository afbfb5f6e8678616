"""A bounded per-stream history of events, for replay and resume."""

from __future__ import annotations

from collections import deque

from aurigraph_stream.event import Event

__all__ = ["History"]


class History:
    """The last ``size`` events of one stream, oldest first."""

    __slots__ = ("_events",)

    def __init__(self, size: int) -> None:
        self._events: deque[Event] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._events)

    def append(self, event: Event) -> None:
        self._events.append(event)

    def last(self, n: int) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        if n <= 0:
            return []
        events = self._events
        return list(events)[-n:] if n < len(events) else list(events)

    def since(self, seq: int) -> list[Event] | None:
        """Events after ``seq``; ``None`` if some of them are no longer kept."""
        events = self._events
        if not events:
            return [] if seq >= 0 else None
        first = events[0].seq
        last = events[-1].seq
        if seq >= last:
            return []
        if seq < first - 1:
            return None
        return list(events)[seq - first + 1 :]
