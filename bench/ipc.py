"""Commands from the controller to a worker process's event loop.

A pipe's file descriptor must not be watched with ``loop.add_reader``: libuv
(uvloop) switches a watched descriptor to non-blocking mode, and
``Connection.recv`` then fails half-way through any message larger than the
pipe's buffer (the list of 10,000 paths to connect is). A thread does the
blocking reads and hands each command to the loop instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["listen"]


def listen(
    pipe: Connection,
    loop: asyncio.AbstractEventLoop,
    handle: Callable[[dict[str, Any] | None], None],
) -> threading.Thread:
    """Call ``handle(command)`` on ``loop`` for each command; ``None`` when the pipe closes.

    The thread ends after ``None`` or an ``{"op": "exit"}`` command.
    """

    def run() -> None:
        while True:
            try:
                command: dict[str, Any] | None = pipe.recv()
            except (EOFError, OSError):
                command = None
            try:
                loop.call_soon_threadsafe(handle, command)
            except RuntimeError:  # the loop is already closed
                return
            if command is None or command.get("op") == "exit":
                return

    thread = threading.Thread(target=run, name="bench-commands", daemon=True)
    thread.start()
    return thread
