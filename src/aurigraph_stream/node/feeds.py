"""The built-in sources, driven on timers: the metrics sampler and the simulated network.

The sources themselves (:mod:`aurigraph_stream.sources`) are pure; these
loops give them the time and publish what they return, trusted (not
validated: they are built to the schemas).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aurigraph_stream.sources.sampler import MetricsSampler
from aurigraph_stream.sources.simulator import NetworkSimulator
from aurigraph_stream.stats import Stats

__all__ = ["Publish", "sample_metrics", "simulate"]

SIMULATOR_TICK = 0.05  # seconds between simulator steps

Publish = Callable[[str, Sequence[Mapping[str, Any]]], Awaitable[object]]


async def sample_metrics(publish: Publish, stats: Stats, interval: float) -> None:
    """Publish one /ws/metrics message every ``interval`` seconds, on a steady beat."""
    sampler = MetricsSampler(stats, time.time())
    loop = asyncio.get_running_loop()
    next_at = loop.time() + interval
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        next_at += interval
        await publish("metrics", [sampler.sample(time.time())])


async def simulate(publish: Publish, simulator: NetworkSimulator) -> None:
    """Publish what the simulated network does, one batch per stream per tick."""
    while True:
        batch: dict[str, list[dict[str, Any]]] = {}
        for stream, message in simulator.advance(time.time()):
            batch.setdefault(stream, []).append(message)
        for stream, messages in batch.items():
            await publish(stream, messages)
        await asyncio.sleep(SIMULATOR_TICK)
