"""The /ws/metrics message: real figures about this server, per interval.

``tps`` is new transactions (transactions-stream events with status PENDING)
published in the interval, per second; ``cpu`` the process CPU time in the
interval as % of one core; ``memory`` the resident set size in MiB;
``connections`` the open WebSocket connections; ``errorRate`` failed sends
plus protocol errors, per message sent, in the interval. With several worker
processes, the counts are the node's (every worker's, :mod:`..ops.workers`),
CPU and memory those of the sampling process; the new transactions are those one
worker's reader saw, which is every one of the stream's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from aurigraph_stream.sources.simulator import iso_timestamp
from aurigraph_stream.stats import Stats

__all__ = ["MetricsSampler"]


class MetricsSampler:
    def __init__(self, stats: Callable[[], Stats], clock_wall: float) -> None:
        """``stats()`` gives the counters to sample (read once per sample)."""
        self._read = stats
        stats_now = stats()
        self._process = psutil.Process()
        self._last_wall = clock_wall
        self._last_cpu = self._cpu_seconds()
        self._last_tx = stats_now.new_transactions
        self._last_sent = stats_now.messages_sent
        self._last_errors = stats_now.errors

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def sample(self, wall: float) -> dict[str, Any]:
        """Figures for the interval since the previous sample (or construction)."""
        stats = self._read()
        elapsed = max(wall - self._last_wall, 1e-6)
        cpu = self._cpu_seconds()
        tx, sent, errors = stats.new_transactions, stats.messages_sent, stats.errors
        message = {
            "timestamp": iso_timestamp(wall),
            "tps": round((tx - self._last_tx) / elapsed, 2),
            "cpu": round(max(cpu - self._last_cpu, 0.0) / elapsed * 100, 1),
            "memory": round(self._process.memory_info().rss / 2**20, 1),
            "connections": stats.connections,
            # A node's summed counts go down when a dead worker's figures expire.
            "errorRate": round(max(0, errors - self._last_errors) / (sent - self._last_sent), 6)
            if sent > self._last_sent
            else 0.0,
        }
        self._last_wall, self._last_cpu = wall, cpu
        self._last_tx, self._last_sent, self._last_errors = tx, sent, errors
        return message
