"""The broker contract: it orders each stream, keeps its history, and delivers.

Every publish goes through the broker, in-process or not, and comes back out
through the handler given to :meth:`Broker.start`; so a single node and a
cluster take the same path to the hub. The broker owns ``seq`` (one counter
per stream, +1 per event) and the epoch of its history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event

__all__ = ["Broker", "EventHandler", "HistoryRead"]

EventHandler = Callable[[Sequence[Event]], None]


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A stream's history and position, read at one instant.

    ``events`` are those after the ``since`` asked for, or every event kept
    when none was asked; ``None`` when some events after ``since`` are no
    longer kept. Live delivery continues right after ``position.seq``.
    """

    position: Position
    events: list[Event] | None
    first_seq: int  # the oldest seq kept (position.seq + 1 when none is)


class Broker(Protocol):
    async def start(self, handler: EventHandler) -> None:
        """Begin delivering published events to ``handler``, in ``seq`` order per stream."""

    async def close(self) -> None:
        """Stop delivering and release resources."""

    async def publish(self, stream: str, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Assign consecutive ``seq`` values, store and deliver; returns the seqs.

        Messages of one call stay together and in order.
        """
        ...

    async def history(self, stream: str, since: int | None) -> HistoryRead:
        """The stream's history after ``since`` (every event kept when ``None``), and its position.

        Every broker answers this; live delivery continues right after the
        position it reports.
        """
        ...

    def history_now(self, stream: str, since: int | None) -> HistoryRead | None:
        """The history read synchronously, or ``None`` if this broker cannot.

        A broker that keeps history in-process answers at once, and the
        subscriber joins the hub in the same step: no event can fall between
        the history read and live delivery. A networked broker returns
        ``None``; the hub's seq check (``Hub.subscribe(after=...)``) then keeps
        a replay and live delivery from overlapping.
        """
        ...

    async def ping(self) -> bool:
        """Whether the broker can take publishes now (for readiness checks)."""
        ...
