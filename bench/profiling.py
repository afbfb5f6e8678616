"""py-spy on the server under load, summarised as where the samples fall.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``);
:func:`summarize` turns them into the functions with the most samples at the
top of the stack (self) and anywhere on it (inclusive), as shares of all
samples. Idle time (the loop waiting in epoll) is not sampled, so the shares
are of the time the server was busy. Time spent in C code (uvloop, the
kernel's write path) is charged to the Python frame that called it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "pyspy_path", "summarize"]

_LINE = re.compile(r" \(([^()]*?):\d+\)$")


def pyspy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _function(frame: str) -> str:
    """``name (path/file.py:12)`` -> ``name (file.py)``: lines of one function add up."""
    match = _LINE.search(frame)
    if match is None:
        return frame.strip()
    name = frame[: match.start()].strip()
    return f"{name} ({Path(match.group(1)).name})"


def summarize(raw: str, top: int = 15) -> str:
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            incl_counts[name] += count
    if not total:
        return "no samples (the server was idle, or py-spy could not attach)"
    lines = [f"{total} busy samples", "self (top of stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_counts.most_common(top)]
    # The frames under everything (runpy, the CLI, the event loop's run) say nothing:
    # leave out those on (nearly) as many samples as the most common frame.
    lines.append("inclusive (anywhere on the stack; the frames under everything left out):")
    root = max(incl_counts.values())
    inclusive = [(name, n) for name, n in incl_counts.most_common() if n < 0.97 * root]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive[:top]]
    return "\n".join(lines)


class Profiler:
    """Records ``pid`` for ``seconds`` in the background; :meth:`finish` summarises."""

    def __init__(self, pid: int, seconds: float, output: Path, rate: int = 250) -> None:
        self.output = output
        exe = pyspy_path()
        self.error: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self, timeout: float = 60.0) -> str:
        if self.proc is None:
            return self.error or "not recorded"
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.output.exists():
            return f"py-spy failed: {err.decode(errors='replace')[-500:]}"
        return summarize(self.output.read_text())
