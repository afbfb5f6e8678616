"""The node keeps its background tasks alive, and its long-lived objects out of the collector."""

from __future__ import annotations

import asyncio
import gc

from aurigraph_stream.config import load_settings
from aurigraph_stream.node import Node
from aurigraph_stream.ops.observability import Observability
from aurigraph_stream.ops.telemetry import build_registry


def test_failing_background_task_is_restarted() -> None:
    """A background task that raises is logged and started again, counted in /q/metrics'
    collector, and stop() ends it."""

    async def scenario() -> tuple[int, int, float | None]:
        node = Node(load_settings(environ={}, overrides={"simulate": False}))
        await node.start()
        runs = 0
        done = asyncio.Event()

        async def flaky() -> None:
            nonlocal runs
            runs += 1
            if runs < 3:
                raise RuntimeError("source failed")
            done.set()
            await asyncio.Event().wait()  # then runs until stopped

        node.tasks.spawn("flaky", flaky, max_backoff=0.05)
        await asyncio.wait_for(done.wait(), 10)
        registry = build_registry(Observability(node, set()))
        exported = registry.get_sample_value("aurigraph_background_task_restarts_total")
        await node.stop()
        return runs, node.stats.task_restarts, exported

    runs, restarts, exported = asyncio.run(scenario())
    assert runs == 3
    assert restarts == 2
    assert exported == 2.0


def test_node_freezes_long_lived_objects() -> None:
    """With gc_freeze_interval set, start-up objects leave the collector's generations."""

    async def scenario() -> int:
        gc.unfreeze()
        node = Node(
            load_settings(environ={}, overrides={"simulate": False, "gc_freeze_interval": 0.05})
        )
        await node.start()
        try:
            for _ in range(200):  # bounded: 10 s at most
                if gc.get_freeze_count() > 0:
                    break
                await asyncio.sleep(0.05)
            return gc.get_freeze_count()
        finally:
            await node.stop()
            gc.unfreeze()

    assert asyncio.run(scenario()) > 1000
