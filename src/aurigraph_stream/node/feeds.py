"""The built-in sources, driven on timers: the metrics sampler and the simulated network.

The sources themselves (:mod:`aurigraph_stream.sources`) are pure; these
loops give them the time and publish what they return, trusted (not
validated: they are built to the schemas). While the broker cannot be
reached, what they produce is dropped (and logged once), as an ingest
request gets 503: the loops go on.

With several processes on one broker, each feed runs in one process only:
:func:`while_leased` runs it while the process holds a lease in the broker,
renewed every third of its TTL; when the holder dies the lease lapses (up to
one TTL after its last renewal) and another process, trying every third of a
TTL, takes over within a TTL and a third (4 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aurigraph_stream.errors import BrokerUnavailable
from aurigraph_stream.sources.sampler import MetricsSampler
from aurigraph_stream.sources.simulator import NetworkSimulator
from aurigraph_stream.stats import Stats

__all__ = ["LEASE_TTL", "Publish", "sample_metrics", "simulate", "while_leased"]

logger = logging.getLogger("aurigraph_stream.feeds")

SIMULATOR_TICK = 0.05  # seconds between simulator steps
LEASE_TTL = 3.0  # seconds a feed's lease outlives its holder

Publish = Callable[[str, Sequence[Mapping[str, Any]]], Awaitable[object]]


class _Dropping:
    """Publishes through ``publish``, dropping what the broker cannot take (logged once)."""

    def __init__(self, publish: Publish, name: str) -> None:
        self._publish = publish
        self._name = name
        self._down = False

    async def __call__(self, stream: str, messages: Sequence[Mapping[str, Any]]) -> None:
        try:
            await self._publish(stream, messages)
        except BrokerUnavailable:
            if not self._down:
                logger.warning("broker unreachable: %s output dropped", self._name)
            self._down = True
            return
        if self._down:
            logger.info("broker reachable: %s publishing again", self._name)
            self._down = False


async def while_leased(
    take: Callable[[], Awaitable[bool]], run: Callable[[], Awaitable[None]], ttl: float
) -> None:
    """Run ``run()`` only while ``take()`` (take or renew the lease) says this process holds it."""
    while True:
        if not await take():
            await asyncio.sleep(ttl / 3)
            continue
        task = asyncio.ensure_future(run())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=ttl / 3)
                if not task.done() and not await take():
                    break  # lost it (or cannot renew): another process may run it now
            if task.done():
                task.result()  # a failure goes to the supervisor (node/tasks.py)
                return
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def sample_metrics(publish: Publish, stats: Callable[[], Stats], interval: float) -> None:
    """Publish one /ws/metrics message every ``interval`` seconds, on a steady beat."""
    sampler = MetricsSampler(stats, time.time())
    publish = _Dropping(publish, "metrics sampler")
    loop = asyncio.get_running_loop()
    next_at = loop.time() + interval
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        next_at += interval
        await publish("metrics", [sampler.sample(time.time())])


async def simulate(publish: Publish, simulator: NetworkSimulator) -> None:
    """Publish what the simulated network does, one batch per stream per tick."""
    publish = _Dropping(publish, "simulator")
    while True:
        batch: dict[str, list[dict[str, Any]]] = {}
        for stream, message in simulator.advance(time.time()):
            batch.setdefault(stream, []).append(message)
        for stream, messages in batch.items():
            await publish(stream, messages)
        await asyncio.sleep(SIMULATOR_TICK)
