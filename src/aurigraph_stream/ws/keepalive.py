"""Keepalive: one timer for all connections, pinging them in slices.

Each connection is pinged once per ``ping_interval`` and closed with 4009 if
it has not answered ``ping_timeout`` later. One task serves every
connection, instead of a timer per connection, and the pings go out in
slices spread over the interval: pinging 10,000 connections at once stalled
the loop, and their pongs all came back together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Protocol

__all__ = ["SLICES", "Pingable", "keepalive"]

SLICES = 10  # each ping interval pings a tenth of the connections at a time


class Pingable(Protocol):
    def ping(self) -> bool:
        """Send a ping unless one is outstanding; True if sent."""
        ...

    def check_pong(self, sent_by: float) -> None:
        """Close if a ping sent at or before ``sent_by`` (clock seconds) is unanswered."""
        ...


async def keepalive(
    connections: Collection[Pingable],
    interval: float,
    answer_within: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ping ``connections`` once per ``interval``; check each slice ``answer_within`` s later.

    ``clock`` must be the one the connections stamp their pings with.
    """
    loop = asyncio.get_running_loop()
    step = interval / SLICES
    while True:
        snapshot = list(connections)
        size = -(-len(snapshot) // SLICES)
        for index in range(SLICES):
            await asyncio.sleep(step)
            chunk = snapshot[index * size : (index + 1) * size]
            pinged = [conn for conn in chunk if conn.ping()]
            if pinged:
                # Stamped after the pings: every ping of the slice was sent by then.
                # Compared with the ping's own time, not "now - timeout": timers may
                # fire a little early, and a ping missed here would never be checked
                # again, since no new ping is sent while one is outstanding.
                loop.call_later(answer_within, _check, pinged, clock())


def _check(pinged: list[Pingable], sent_by: float) -> None:
    for conn in pinged:
        conn.check_pong(sent_by)
