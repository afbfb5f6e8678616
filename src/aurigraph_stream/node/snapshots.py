"""The current set of validators and of connected peers, and each stream's latest message,
kept from the events that flow.

The state is built from the published events themselves, not from a source,
so it is the same whether the simulator, the ingest API or a broker feeds the
server. It is updated in the broker's handler right before the hub sees the
same events; a subscriber that reads it and joins the hub in one synchronous
step gets the set as of ``seq`` and then every change after ``seq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aurigraph_stream.event import Event

__all__ = ["SnapshotState"]

# stream -> (the field that identifies an item, whether it is case-insensitive)
_KEYS = {"validators": ("validator", True), "network": ("peerId", False)}


class SnapshotState:
    """Latest message per validator; latest message per connected peer; latest per stream.

    The latest message of a stream is kept whatever its history keeps (GraphQL's
    ``metrics`` and ``consensus`` queries read it): one dict assignment per event.
    """

    __slots__ = ("_items", "_latest")

    def __init__(self) -> None:
        self._items: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in _KEYS}
        self._latest: dict[str, dict[str, Any]] = {}

    def apply(self, events: Sequence[Event]) -> None:
        latest = self._latest
        for event in events:
            latest[event.stream] = event.data
            spec = _KEYS.get(event.stream)
            if spec is None:
                continue
            field, lower = spec
            value = event.data.get(field)
            if not isinstance(value, str):
                continue
            key = value.lower() if lower else value
            items = self._items[event.stream]
            items.pop(key, None)  # re-inserted last: items stay in order of change
            if event.stream != "network" or event.data.get("connected") is not False:
                items[key] = event.data  # a disconnected peer leaves the set

    def latest(self, stream: str) -> dict[str, Any] | None:
        """The stream's newest message, or ``None`` before its first."""
        return self._latest.get(stream)

    def items(self, stream: str) -> list[dict[str, Any]]:
        """The current set, least recently changed first."""
        return list(self._items[stream].values())
