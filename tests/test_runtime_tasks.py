"""The runtime keeps its background tasks alive."""

from __future__ import annotations

import asyncio
import gc

from aurigraph_stream.config import load_settings
from aurigraph_stream.server.observability import Observability
from aurigraph_stream.server.runtime import Runtime
from aurigraph_stream.server.telemetry import build_registry


def test_failing_background_task_is_restarted() -> None:
    """A background task that raises is logged and started again, counted in /q/metrics'
    collector, and stop() ends it."""

    async def scenario() -> tuple[int, int, float | None]:
        runtime = Runtime(load_settings(environ={}, overrides={"simulate": False}))
        await runtime.start()
        runs = 0
        done = asyncio.Event()

        async def flaky() -> None:
            nonlocal runs
            runs += 1
            if runs < 3:
                raise RuntimeError("source failed")
            done.set()
            await asyncio.Event().wait()  # then runs until stopped

        runtime.spawn(flaky, max_backoff=0.05)
        await asyncio.wait_for(done.wait(), 10)
        registry = build_registry(Observability(runtime))
        exported = registry.get_sample_value("aurigraph_background_task_restarts_total")
        await runtime.stop()
        return runs, runtime.stats.task_restarts, exported

    runs, restarts, exported = asyncio.run(scenario())
    assert runs == 3
    assert restarts == 2
    assert exported == 2.0


def test_runtime_freezes_long_lived_objects() -> None:
    """With gc_freeze_interval set, start-up objects leave the collector's generations."""

    async def scenario() -> int:
        gc.unfreeze()
        runtime = Runtime(
            load_settings(environ={}, overrides={"simulate": False, "gc_freeze_interval": 0.05})
        )
        await runtime.start()
        try:
            for _ in range(200):  # bounded: 10 s at most
                if gc.get_freeze_count() > 0:
                    break
                await asyncio.sleep(0.05)
            return gc.get_freeze_count()
        finally:
            await runtime.stop()
            gc.unfreeze()

    assert asyncio.run(scenario()) > 1000
