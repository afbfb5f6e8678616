"""A real node (memory broker, hub) in the test's own event loop, and a subscriber that keeps
what the hub writes to it: the layers above the sockets, driven without one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import orjson

from aurigraph_stream.config import load_settings
from aurigraph_stream.hub import Subscriber
from aurigraph_stream.node import Node
from aurigraph_stream.stats import EndpointStats
from tests.support.rawws import OP_TEXT, server_frames

__all__ = ["Recorder", "epoch", "run_on_node", "running_node"]

WAIT = 10.0  # seconds a recorder waits for a write at most


@asynccontextmanager
async def running_node(**overrides: Any) -> AsyncIterator[Node]:
    """A started node with no simulator; ``overrides`` are settings."""
    settings = load_settings(environ={}, overrides={"simulate": False, **overrides})
    node = Node(settings)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def run_on_node(scenario: Callable[[Node], Coroutine[Any, Any, None]], **settings: Any) -> None:
    """Run ``scenario`` on a started node (``settings`` as overrides) in a loop of its own."""

    async def main() -> None:
        async with running_node(**settings) as node:
            await scenario(node)

    asyncio.run(main())


def epoch(node: Node, stream: str) -> str:
    """The epoch of ``stream`` on ``node``'s broker."""
    read = node.broker.history_now(stream, None)
    assert read is not None
    return read.position.epoch


class Recorder(Subscriber):
    """Keeps every frame written to it, as the hub's flush hands them over."""

    __slots__ = ("frames", "wrote")

    def __init__(self, counters: EndpointStats | None = None) -> None:
        super().__init__(counters or EndpointStats())
        self.frames: list[bytes] = []
        self.wrote = asyncio.Event()  # set by each write

    def write_frames(self, frames: bytes | list[bytes]) -> None:
        self.frames.extend([frames] if isinstance(frames, bytes) else frames)
        self.wrote.set()

    def buffered_size(self) -> int:
        return 0

    def overflow(self) -> None:
        raise AssertionError("a recorder never falls behind")

    async def flushed(self) -> list[Any]:
        """Wait for the hub's flush of what is queued for this subscriber, then take the JSON
        text frames written so far.

        The flush runs at the end of the tick (one ``call_soon`` away), or, when the
        governor holds it, up to half the latency target later: then this waits for the
        write (at most :data:`WAIT` seconds).
        """
        await asyncio.sleep(0)  # let a flush at the end of this tick run
        if self.pending is not None:  # held: wait for the write
            self.wrote.clear()
            await asyncio.wait_for(self.wrote.wait(), WAIT)
        return self._take()

    async def written(self) -> list[Any]:
        """Wait until something was written (at most :data:`WAIT` seconds), then take the
        JSON text frames: for what is queued later than now (a running operation's result)."""
        if not self.frames:
            self.wrote.clear()
            await asyncio.wait_for(self.wrote.wait(), WAIT)
        return self._take()

    def _take(self) -> list[Any]:
        messages = []
        for frame in server_frames(b"".join(self.frames)):
            assert frame.opcode == OP_TEXT
            messages.append(orjson.loads(frame.payload))
        self.frames.clear()
        return messages
