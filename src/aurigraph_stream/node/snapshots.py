"""The current set of validators and of connected peers, and each stream's latest message,
kept from the events that flow.

The state is built from the published events themselves, not from a source,
so it is the same whether the simulator, the ingest API or a broker feeds the
server. With a networked broker the set also lives in the store (kept by its
publish script), and a node that starts later, or loses events, starts from
that stored set (:meth:`SnapshotState.replace`).

It is updated in the broker's handler right before the hub sees the same
events; a subscriber that reads it and joins the hub in one synchronous step
gets the set as of ``seq`` and then every change after ``seq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aurigraph_stream.event import Event
from aurigraph_stream.streams import SNAPSHOT_KEYS, snapshot_key

__all__ = ["SnapshotState"]


class SnapshotState:
    """Latest message per validator; latest message per connected peer; latest per stream.

    The latest message of a stream is kept whatever its history keeps (GraphQL's
    ``metrics`` and ``consensus`` queries read it): one dict assignment per event.
    """

    __slots__ = ("_items", "_latest")

    def __init__(self) -> None:
        self._items: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SNAPSHOT_KEYS}
        self._latest: dict[str, dict[str, Any]] = {}

    def apply(self, events: Sequence[Event]) -> None:
        latest = self._latest
        for event in events:
            latest[event.stream] = event.data
            if event.stream not in SNAPSHOT_KEYS:
                continue
            where = snapshot_key(event.stream, event.data)
            if where is None:
                continue
            key, stays = where
            items = self._items[event.stream]
            items.pop(key, None)  # re-inserted last: items stay in order of change
            if stays:
                items[key] = event.data  # a disconnected peer leaves the set

    def replace(self, stream: str, items: Sequence[dict[str, Any]]) -> None:
        """Start ``stream``'s set over from ``items`` (a networked broker's stored set)."""
        if stream not in self._items:
            return
        fresh: dict[str, dict[str, Any]] = {}
        for item in sorted(items, key=lambda m: int(m.get("seq", 0))):
            where = snapshot_key(stream, item)
            if where is not None and where[1]:
                fresh[where[0]] = item
        self._items[stream] = fresh

    def latest(self, stream: str) -> dict[str, Any] | None:
        """The stream's newest message, or ``None`` before its first."""
        return self._latest.get(stream)

    def items(self, stream: str) -> list[dict[str, Any]]:
        """The current set, least recently changed first."""
        return list(self._items[stream].values())
