"""What the operator endpoints read beside :class:`Stats`: latency, loop lag, ingest outcomes.

:class:`Observability` is created with the app and holds the three recorders.
Each costs the hot path next to nothing: broadcast latency is recorded once
per event after a hub flush (never per delivery), the loop monitor is one
timer, and ingest outcomes are counted per HTTP request. The health, stats
and Prometheus endpoints only read them.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from collections.abc import Sized
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aurigraph_stream.node import Node, WorkerIdentity
from aurigraph_stream.ops.latency import BroadcastLatency, LatencyHistogram
from aurigraph_stream.ops.workers import WorkerFigures, merge, snapshot
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import REGISTRY

__all__ = ["IngestCounters", "IngestOutcomes", "LoopMonitor", "NodeView", "Observability"]


class LoopMonitor:
    """How late the event loop runs a timer: the liveness signal.

    A task sleeps ``interval`` and notes how much later than asked it woke.
    A loop kept busy by callbacks that do not yield shows as lag. The check
    looks at the last :data:`WINDOW` readings, so a stall between two probes
    of a health checker is still seen by the next one; and when a request
    finally gets through a stall the monitor has not measured yet, the time
    since its last reading shows it.
    """

    WINDOW = 10  # readings: 5 s at the default interval of 0.5 s

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lag = 0.0  # seconds, the latest reading
        self.recent: deque[float] = deque(maxlen=self.WINDOW)
        self.last_tick: float | None = None  # loop time of the latest reading

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_tick = loop.time()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.lag = max(0.0, now - due)
            self.recent.append(self.lag)
            self.last_tick = now

    def current(self, now: float) -> float:
        """The worst lag of the window as of loop time ``now``, seconds."""
        if self.last_tick is None:
            return 0.0
        return max(max(self.recent, default=0.0), now - self.last_tick - self.interval)


class IngestCounters:
    """Ingest outcomes: events accepted per stream, requests rejected per (stream, reason)."""

    def __init__(self) -> None:
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()

    def observe(self, stream: str, status: int, body: bytes) -> None:
        """Count one answered ingest request from its status and JSON body."""
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if status == 200 and isinstance(data, dict) and isinstance(data.get("accepted"), int):
            self.accepted[stream] += data["accepted"]
            return
        reason = data.get("error") if isinstance(data, dict) else None
        if not isinstance(reason, str):
            reason = f"http_{status}" if status else "internal_error"
        self.rejected[(stream, reason)] += 1


_INGEST_PATH = re.compile(r"/api/v11/streams/([^/]+)/events/?")
_BODY_KEPT = 4096  # the answers are small JSON objects; only their head is read


class IngestOutcomes:
    """ASGI middleware counting every answer of the ingest route into :class:`IngestCounters`.

    It reads the answer, not the handler, so each outcome is counted by the
    ``error`` slug the client sees, whichever part of the server produced it.
    Streams not in the registry are counted as ``other`` to bound the labels.
    """

    def __init__(self, app: ASGIApp, counters: IngestCounters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _INGEST_PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        stream = match.group(1) if match.group(1) in REGISTRY else "other"
        status = 0
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(body) < _BODY_KEPT:
                body.extend(message.get("body", b"")[:_BODY_KEPT])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.counters.observe(stream, status, bytes(body))


@dataclass(frozen=True, slots=True)
class NodeView:
    """The figures the stats and metrics endpoints report: the whole node's."""

    stats: Stats
    latency: dict[str, LatencyHistogram]
    accepted: Counter[str]
    rejected: Counter[tuple[str, str]]


class Observability:
    """What the operator endpoints read: the node, its open connections, and the recorders.

    Args:
        connections: the open WebSocket connections (readiness counts them).
    """

    def __init__(self, node: Node, connections: Sized) -> None:
        self.node = node
        identity: WorkerIdentity | None = node.identity
        # One worker of several: the endpoints add up the figures of every worker.
        self.figures = (
            WorkerFigures(identity, node.settings.broker_url)
            if identity is not None and identity.count > 1
            else None
        )
        if self.figures is not None:
            node.node_stats = lambda: self.view().stats
        self.connections = connections
        # One histogram per stats endpoint; the multiplexed /ws one stays empty,
        # since latency is recorded per stream.
        self.latency = BroadcastLatency(
            node.stats.endpoints, self._subscribers, node.settings.latency_target_ms
        )
        self.loop = LoopMonitor(node.settings.loop_lag_interval)
        self.ingest = IngestCounters()
        node.flush_listeners.append(self.latency.on_flush)

    def _subscribers(self, stream: str) -> int:
        return self.node.hub.subscribers(stream)

    def view(self) -> NodeView:
        """This process's figures, or with several workers, the whole node's."""
        latency, ingest = self.latency.streams, self.ingest
        if self.figures is None:
            return NodeView(self.node.stats, latency, ingest.accepted, ingest.rejected)
        stats, hists, accepted, rejected = merge(
            self.node.stats, latency, ingest, self.figures.others
        )
        return NodeView(stats, hists, accepted, rejected)

    def start(self) -> None:
        """Start the loop monitor (and the figures exchange) among the node's tasks."""
        self.node.tasks.spawn("loop-monitor", self.loop.run)
        figures = self.figures
        if figures is not None:
            own = lambda: snapshot(self.node.stats, self.latency.streams, self.ingest)  # noqa: E731
            self.node.tasks.spawn("worker-figures", lambda: figures.run(own))
