"""Single-process broker: a counter and a bounded history per stream.

There is no pub/sub to go through: :meth:`MemoryBroker.publish` stores the
events and calls the handler directly, as centrifuge's memory broker does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aurigraph_stream.broker.base import Broker, EventHandler, HistoryRead, ResetHandler
from aurigraph_stream.broker.history import History, HistoryPolicy
from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event

__all__ = ["MemoryBroker"]


class MemoryBroker:
    def __init__(self, policies: Mapping[str, HistoryPolicy]) -> None:
        """One stream per entry of ``policies``, with its history bounds."""
        # A new epoch per process: the history does not survive a restart.
        self.epoch = secrets.token_hex(4)
        self._seq = dict.fromkeys(policies, 0)
        self._history = {name: History(p.size, p.max_age) for name, p in policies.items()}
        self._handler: EventHandler | None = None

    async def start(self, handler: EventHandler, on_reset: ResetHandler | None = None) -> None:
        self._handler = handler  # history is never lost while the process lives: no reset

    async def close(self) -> None:
        self._handler = None

    async def publish(self, stream: str, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        seq = self._seq[stream]
        history = self._history[stream]
        now = time.perf_counter()
        events = []
        for message in messages:
            seq += 1
            event = Event(stream, seq, {**message, "seq": seq}, now)
            history.append(event)
            events.append(event)
        self._seq[stream] = seq
        if self._handler is not None and events:
            self._handler(events)
        return [event.seq for event in events]

    async def history(
        self, stream: str, since: int | None, newest: int | None = None
    ) -> HistoryRead:
        if since is None and newest is not None:
            history = self._history[stream]
            position = Position(self._seq[stream], self.epoch)
            return HistoryRead(position, history.last(newest), history.first_seq())
        return self.history_now(stream, since)

    def history_now(self, stream: str, since: int | None) -> HistoryRead:
        history = self._history[stream]
        events = history.last(len(history)) if since is None else history.since(since)
        return HistoryRead(Position(self._seq[stream], self.epoch), events, history.first_seq())

    def delivered(self, stream: str) -> Position:
        return Position(self._seq[stream], self.epoch)  # delivered as soon as published

    async def lease(self, name: str, holder: str, ttl: float) -> bool:
        return True  # one process: it is the whole cluster

    async def ping(self) -> bool:
        return True


def _conforms(broker: MemoryBroker) -> Broker:
    """Checked by mypy: MemoryBroker implements Broker."""
    return broker
