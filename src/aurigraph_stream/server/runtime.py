"""The running server's state: settings, broker, hub, stats, connections, sources.

:class:`Runtime` is also the embedding API: code in the same process calls
:meth:`Runtime.publish` (from the event loop) to broadcast events.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aurigraph_stream.broker import create_broker
from aurigraph_stream.config import Settings
from aurigraph_stream.errors import HandshakeRejected
from aurigraph_stream.event import Event
from aurigraph_stream.hub import Hub, Variant
from aurigraph_stream.server.security import Guard
from aurigraph_stream.server.subscribe import MUX_ENDPOINT, attach
from aurigraph_stream.snapshots import SnapshotState
from aurigraph_stream.sources.sampler import MetricsSampler
from aurigraph_stream.sources.simulator import NetworkSimulator
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES, get
from aurigraph_stream.subscription import SubscribeRequest

if TYPE_CHECKING:
    from aurigraph_stream.server.connection import Connection

__all__ = ["Runtime"]

logger = logging.getLogger("aurigraph_stream.runtime")

SIMULATOR_TICK = 0.05  # seconds between simulator steps
KEEPALIVE_SLICES = 10  # each ping interval pings a tenth of the connections at a time


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The five streams, and the multiplexed /ws endpoint's connections.
        self.stats = Stats.for_streams((*NAMES, MUX_ENDPOINT))
        self.guard = Guard(settings)  # access policy; raises ConfigError for bad security settings
        self.broker = create_broker(settings.broker_url, settings.history_policies())
        self.snapshots = SnapshotState()  # current validators and peers, for snapshot=true
        self.connections: set[Connection] = set()
        self.draining = False
        self._hub: Hub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.flush_listeners: list[Callable[[list[Event], float], None]] = []

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the runtime has not been started")
        return self._hub

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        self._hub = Hub(
            self.stats,
            schedule=loop.call_soon,
            max_buffered=settings.max_buffered_bytes,
            compression_level=settings.compression_level,
            on_flush=self._on_flush,
        )
        await self.broker.start(self._on_events)
        self.spawn(self._keepalive)
        if settings.gc_freeze_interval > 0:
            self.spawn(self._freeze_survivors)
        self.spawn(self._sample_metrics)
        if settings.simulate:
            simulator = NetworkSimulator(
                seed=settings.seed,
                validators=settings.sim_validators,
                peers=settings.sim_peers,
                tx_rate=settings.sim_tx_rate,
                block_time=settings.sim_block_time,
            )
            self.spawn(lambda: self._simulate(simulator))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.broker.close()

    def spawn(self, run: Callable[[], Awaitable[None]], *, max_backoff: float = 30.0) -> None:
        """Run ``run()`` in the background until :meth:`stop`, restarting it if it fails.

        A failing source must neither take the server down nor stay dead: it is
        logged and started again after a back-off that doubles up to ``max_backoff``.
        """

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
                    self.stats.task_restarts += 1
                    delay = min(max_backoff, 0.1 * 2**failures)
                    logger.exception("background task failed; restarting in %.1fs", delay)
                    await asyncio.sleep(delay)

        self._tasks.append(asyncio.create_task(supervised()))

    # -- publishing -----------------------------------------------------------
    async def publish(
        self, stream: str, messages: Sequence[Mapping[str, Any]], *, validate: bool = True
    ) -> list[int]:
        """Broadcast ``messages`` on ``stream`` in order; returns their ``seq`` values.

        Call from the event loop. Nothing is published if one message is invalid.

        Raises:
            UnknownStream: no such stream.
            ValidationError: a message does not match the stream's schema.
        """
        spec = get(stream)
        if validate:
            for index, message in enumerate(messages):
                spec.validate(message, index)
        return await self.broker.publish(stream, messages)

    def _on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.stream == "transactions" and event.data.get("status") == "PENDING":
                self.stats.new_transactions += 1
        self.snapshots.apply(events)  # before the hub: a snapshot and its changes meet at seq
        if self.settings.broadcast_enabled:
            self.hub.publish(events)

    def _on_flush(self, events: list[Event], now: float) -> None:
        for listener in self.flush_listeners:
            listener(events, now)

    # -- connections ----------------------------------------------------------
    def admit(self) -> None:
        """Raise HandshakeRejected unless one more connection may open."""
        if self.draining:
            raise HandshakeRejected(
                503,
                "shutting_down",
                "the server is shutting down",
                (("Retry-After", str(self.settings.retry_after)),),
            )
        if len(self.connections) >= self.settings.max_connections:
            raise HandshakeRejected(
                503,
                "too_many_connections",
                f"the server holds its maximum of {self.settings.max_connections} connections",
                (("Retry-After", str(self.settings.retry_after)),),
            )

    def connection_opened(
        self,
        conn: Connection,
        stream: str,
        variant: Variant,
        request: SubscribeRequest | None = None,
    ) -> None:
        """Count a new connection and subscribe it (on /ws, its commands subscribe it)."""
        self.connections.add(conn)
        counters = self.stats.endpoints[stream]
        counters.connections += 1
        counters.connects += 1
        if stream == MUX_ENDPOINT:
            return
        if request is None:
            self.hub.subscribe(conn, stream, variant)
        else:
            attach(self, conn, request, variant[0], variant[1])

    def connection_closed(self, conn: Connection) -> None:
        self.hub.unsubscribe(conn)
        if conn in self.connections:
            self.connections.remove(conn)
            self.stats.endpoints[conn.stream].connections -= 1
            self.stats.closes[conn.close_code] += 1

    # -- background tasks -----------------------------------------------------
    async def _keepalive(self) -> None:
        """Ping each connection once per ``ping_interval``; close it if silent for ``ping_timeout``.

        One timer for all connections instead of one task each, and the pings go
        out in slices spread over the interval: pinging 10,000 connections at
        once stalled the loop, and their pongs all came back together.
        """
        settings = self.settings
        loop = asyncio.get_running_loop()
        step = settings.ping_interval / KEEPALIVE_SLICES
        while True:
            connections = list(self.connections)
            size = -(-len(connections) // KEEPALIVE_SLICES)
            for index in range(KEEPALIVE_SLICES):
                await asyncio.sleep(step)
                now = loop.time()
                chunk = connections[index * size : (index + 1) * size]
                pinged = [conn for conn in chunk if conn.ping(now)]
                if pinged:
                    loop.call_later(settings.ping_timeout, self._check_pongs, pinged, now)

    async def _freeze_survivors(self) -> None:
        """Keep the cyclic garbage collector's full passes short.

        A full collection scans every tracked object: with the app's modules and
        10,000 connections that was 145-397 ms of stalled loop, several times a
        minute (docs/benchmarks.md). Here, every ``gc_freeze_interval``, the young
        garbage is collected and what survived is frozen: long-lived objects
        (modules, connections, history) are then never scanned again, and every
        collection only looks at what is new. Frozen objects are still freed by
        reference counting; connections break their own cycles when they close.
        What could still leak, a cycle among frozen objects, is reclaimed by an
        unfrozen full pass every ``gc_full_interval``.
        """
        settings = self.settings
        full_every = (
            max(1, round(settings.gc_full_interval / settings.gc_freeze_interval))
            if settings.gc_full_interval > 0
            else 0
        )
        rounds = 0
        while True:
            if full_every and rounds and rounds % full_every == 0:
                gc.unfreeze()
            gc.collect()
            gc.freeze()
            rounds += 1
            await asyncio.sleep(settings.gc_freeze_interval)

    def _check_pongs(self, pinged: list[Connection], sent_at: float) -> None:
        # Compare with the ping's own time, not "now - timeout": loop timers may
        # fire a little early (uvloop rounds to milliseconds), and a ping missed
        # here would never be checked again, since no new ping is sent meanwhile.
        for conn in pinged:
            conn.check_pong(sent_at)

    async def _sample_metrics(self) -> None:
        sampler = MetricsSampler(self.stats, time.time())
        interval = self.settings.metrics_interval
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            await self.publish("metrics", [sampler.sample(time.time())], validate=False)

    async def _simulate(self, simulator: NetworkSimulator) -> None:
        while True:
            batch: dict[str, list[dict[str, Any]]] = {}
            for stream, message in simulator.advance(time.time()):
                batch.setdefault(stream, []).append(message)
            for stream, messages in batch.items():
                await self.publish(stream, messages, validate=False)
            await asyncio.sleep(SIMULATOR_TICK)
