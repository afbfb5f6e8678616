"""The broker contract: it orders each stream, keeps its history, and delivers.

Every publish goes through the broker, in-process or not, and comes back out
through the handler given to :meth:`Broker.start`; so a single node and a
cluster take the same path to the hub. The broker owns ``seq`` (one counter
per stream, +1 per event) and the epoch of its history.

A networked broker can also lose what it delivers: a store restarted without
persistence starts a new epoch, and a reader cut off for longer than the
history lasts misses events. It then calls ``on_reset`` with the position
delivery continues from (and, for the snapshot streams, the set as of that
position), so that subscribers are told ``recovered: false`` instead of
being handed a silent gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aurigraph_stream.contract import Position
from aurigraph_stream.errors import BrokerUnavailable
from aurigraph_stream.event import Event

__all__ = ["Broker", "BrokerUnavailable", "EventHandler", "HistoryRead", "ResetHandler"]

EventHandler = Callable[[Sequence[Event]], None]
# (stream, the position delivery continues after, the snapshot set at it or None).
ResetHandler = Callable[[str, Position, list[dict[str, Any]] | None], None]


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
    async def start(self, handler: EventHandler, on_reset: ResetHandler | None = None) -> None:
        """Begin delivering published events to ``handler``, in ``seq`` order per stream.

        ``on_reset`` is called when delivery cannot continue where it was
        (the store lost the stream, or events were missed); a broker that
        delivers in-process never calls it.
        """

    async def close(self) -> None:
        """Stop delivering and release resources."""

    async def publish(self, stream: str, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Assign consecutive ``seq`` values, store and deliver; returns the seqs.

        Messages of one call stay together and in order: all are stored, or
        none is.

        Raises:
            BrokerUnavailable: the store cannot be reached; nothing of the call
                was acknowledged.
        """
        ...

    async def history(
        self, stream: str, since: int | None, newest: int | None = None
    ) -> HistoryRead:
        """The stream's history after ``since`` (every event kept when ``None``), and its position.

        ``newest``, without ``since``: only the newest that many events kept (a
        ``replay=N`` with no filter need not read the rest).

        Raises:
            BrokerUnavailable: the store cannot be reached.
        """
        ...

    def history_now(self, stream: str, since: int | None) -> HistoryRead | None:
        """The history read synchronously, or ``None`` if this broker cannot.

        A broker that keeps history in-process answers at once, and the
        subscriber joins the hub in the same step: no event can fall between
        the history read and live delivery. A networked broker returns
        ``None``; the subscriber then buffers live events while
        :meth:`history` loads, as centrifuge's ``PubSubSync`` does
        (``ws/subscribe.py``).
        """
        ...

    def delivered(self, stream: str) -> Position:
        """The position of the last event handed to the handler (no I/O)."""
        ...

    async def lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew a lease held by at most one ``holder`` cluster-wide for ``ttl`` seconds.

        Returns whether ``holder`` holds it now. A single-process broker always
        grants it; a networked one lets it lapse when its holder stops renewing.
        """
        ...

    async def ping(self) -> bool:
        """Whether the broker can take publishes now (for readiness checks)."""
        ...
