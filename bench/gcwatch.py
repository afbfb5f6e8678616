"""Run ``aurigraph-stream`` with a note of every garbage-collector pause over 5 ms.

``python -m bench.gcwatch serve ...`` is ``aurigraph-stream serve ...`` plus a
``gc.callbacks`` hook that prints ``GCPAUSE <wall time> <generation> <ms>
<collected>`` to stderr. ``python -m bench --gc-watch`` starts our server this
way and attaches the pauses that fell inside each phase to its row, because a
full collection with 10,000 connections alive stops the event loop for long
enough to show in p99. ``--gc-freeze SECONDS`` (environment ``BENCH_GC_FREEZE``)
adds a what-if: ``gc.freeze()`` every that many seconds.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["FREEZE_ENV", "PAUSE_MS", "main", "pauses_between"]

PAUSE_MS = 5.0
FREEZE_ENV = "BENCH_GC_FREEZE"  # seconds between gc.freeze() calls; unset or 0: never
_started: list[float] = [0.0]


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    if ms >= PAUSE_MS:
        print(
            f"GCPAUSE {time.time():.6f} {info['generation']} {ms:.1f} {info['collected']}",
            file=sys.stderr,
            flush=True,
        )


def pauses_between(log: Path, start: float, end: float) -> list[tuple[int, float]]:
    """(generation, ms) of the pauses logged between two wall-clock times."""
    out: list[tuple[int, float]] = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith("GCPAUSE "):
            continue
        parts = line.split()
        if len(parts) >= 4 and start <= float(parts[1]) <= end:
            out.append((int(parts[2]), float(parts[3])))
    return out


def _freeze_every(seconds: float) -> None:
    """What-if: move every live object to the permanent generation each ``seconds``, so
    full collections scan only what was allocated since (``gc.freeze``). Cycles among
    frozen objects are never collected, so this is an experiment, not a setting."""
    while True:
        time.sleep(seconds)
        gc.freeze()


def main() -> int:
    from aurigraph_stream.cli import main as serve

    gc.callbacks.append(_callback)
    freeze = float(os.environ.get(FREEZE_ENV, "0") or 0)
    if freeze > 0:
        threading.Thread(target=_freeze_every, args=(freeze,), daemon=True).start()
    return serve(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
