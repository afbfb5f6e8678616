"""Reading a child process's output line by line with a deadline."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

__all__ = ["LineReader", "stop"]


class LineReader:
    """Drains a pipe on a thread so the test can wait for a line with a bounded timeout."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._pipe = pipe
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            self._queue.put(raw.decode(errors="replace").rstrip("\r\n"))
        self._queue.put(None)

    def close(self, timeout: float = 5.0) -> None:
        """After the process exited: let the thread reach end of file, then close the pipe."""
        self._thread.join(timeout)
        self._pipe.close()

    def until_end(self, timeout: float) -> list[str]:
        """Collect every line up to the end of the output (the process exited or is exiting)."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                return self.lines
            self.lines.append(line)
        raise AssertionError(f"output did not end within {timeout}s; got {self.lines[-5:]}")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> list[str]:
        """Collect lines until one satisfies ``predicate``; returns the lines read so far.

        Raises:
            AssertionError: on timeout or end of output, with what was read.
        """
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout}s; got {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended without a matching line; got {self.lines}")
            self.lines.append(line)
            if predicate(line):
                return self.lines
        raise AssertionError(f"no matching line in a million; got {self.lines[-5:]}")


def stop(proc: subprocess.Popen[bytes], sig: int, timeout: float = 10.0) -> int:
    """Send ``sig`` to the process by its PID and wait (bounded) for it to exit."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"process {proc.pid} ignored signal {sig}") from None
