"""The one lifecycle of every background task: started, restarted when it fails, stopped.

A source that fails must neither take the server down nor stay dead, and no
task may outlive the server: :class:`Tasks` runs each task supervised,
restarting it after a back-off that doubles up to a cap, and cancels them
all, and waits for them, on :meth:`Tasks.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Tasks"]

logger = logging.getLogger("aurigraph_stream.tasks")


class Tasks:
    """The background tasks of one node.

    Args:
        on_restart: called once per restart (the node counts them for /q/metrics).
    """

    def __init__(self, on_restart: Callable[[], None] = lambda: None) -> None:
        self._on_restart = on_restart
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(
        self, name: str, run: Callable[[], Awaitable[None]], *, max_backoff: float = 30.0
    ) -> None:
        """Run ``run()`` in the background until :meth:`stop`, restarting it if it fails."""

        async def supervised() -> None:
            failures = 0
            while True:
                try:
                    await run()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    self._on_restart()
                    delay = min(max_backoff, 0.1 * 2**failures)
                    logger.exception("background task %s failed; restarting in %.1fs", name, delay)
                    await asyncio.sleep(delay)

        self._tasks.append(asyncio.create_task(supervised(), name=name))

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
