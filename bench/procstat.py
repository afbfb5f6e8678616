"""Process figures read straight from /proc: resident memory and CPU time.

The figures come from the kernel's own accounting of the measured process
(and, for nginx, its workers), not from anything the process says about
itself, so every server is measured the same way. Also the command line the
reference servers share (:func:`run_reference`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

__all__ = [
    "children",
    "cpu_seconds",
    "open_fds",
    "process_tree",
    "raise_open_file_limit",
    "rss_bytes",
    "run_reference",
    "tree_cpu",
    "tree_rss",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """``VmRSS`` from ``/proc/PID/status``, in bytes (0 if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time from ``/proc/PID/stat`` (fields 14 and 15), in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def open_fds(pid: int) -> int:
    """How many file descriptors the process holds (entries of ``/proc/PID/fd``)."""
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list, so none is missed)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nginx: the master and its workers)."""
    tree = [pid]
    for _ in range(4):  # bounded: the servers here are at most two levels deep
        found = [c for p in tree for c in children(p) if c not in tree]
        if not found:
            break
        tree += found
    return tree


def tree_rss(pid: int) -> int:
    return sum(rss_bytes(p) for p in process_tree(pid))


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def run_reference(description: str, serve: Callable[[str, int], Coroutine[Any, Any, None]]) -> None:
    """The command line of a reference server: ``--host``, ``--port``, then ``serve`` on uvloop."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_open_file_limit()
    import uvloop

    uvloop.run(serve(args.host, args.port))


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard one: every connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
