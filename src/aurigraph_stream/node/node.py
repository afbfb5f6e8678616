"""The node: the broker, the hub and the state they share, and ``publish``.

A :class:`Node` is what one server process streams from. Events go in
through :meth:`Node.publish` (sources, the ingest API, embedding code), are
ordered and kept by the broker, and come back out through the broker's
handler to the snapshots and the hub. The node knows nothing of sockets:
the WebSocket layer (:mod:`aurigraph_stream.ws`) subscribes connections to
its hub.

It is also the embedding API: code in the same process calls
:meth:`Node.publish` (from the event loop) to broadcast events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any

from aurigraph_stream.broker import Broker, create_broker
from aurigraph_stream.config import Settings
from aurigraph_stream.contract import (
    GRAPHQL_ENDPOINT,
    LATEST_WINS_STREAMS,
    MUX_ENDPOINT,
    Position,
)
from aurigraph_stream.event import Event
from aurigraph_stream.hub import Governor, Hub
from aurigraph_stream.node.collector import freeze_survivors
from aurigraph_stream.node.feeds import LEASE_TTL, sample_metrics, simulate, while_leased
from aurigraph_stream.node.identity import WorkerIdentity
from aurigraph_stream.node.snapshots import SnapshotState
from aurigraph_stream.node.tasks import Tasks
from aurigraph_stream.sources.simulator import NetworkSimulator
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES, get

__all__ = ["Node"]

FlushListener = Callable[[list[Event], float], None]


class Node:
    """One server process's streams.

    Attributes:
        draining: set when the server begins to shut down; readiness goes
            DOWN and new WebSockets are refused.
        flush_listeners: called after each hub flush with the events it
            wrote and the flush time (broadcast latency).
    """

    def __init__(self, settings: Settings, identity: WorkerIdentity | None = None) -> None:
        self.settings = settings
        self.identity = identity  # set when this process is one worker of several
        # The five streams, and the connections of the multiplexed /ws and of /graphql.
        self.stats = Stats.for_streams((*NAMES, MUX_ENDPOINT, GRAPHQL_ENDPOINT))
        self.broker: Broker = create_broker(settings.broker_url, settings.history_policies())
        self.snapshots = SnapshotState()  # current validators and peers, for snapshot=true
        self.tasks = Tasks(on_restart=self._count_restart)
        self.draining = False
        self.flush_listeners: list[FlushListener] = []
        # This process, for cluster-wide leases (simulator, sampler).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._hub: Hub | None = None
        self._loads: set[asyncio.Task[None]] = set()  # subscriptions loading their history
        # What the metrics sampler reads: this process's counters, or (set by the
        # operator layer when there are several workers) the whole node's.
        self.node_stats: Callable[[], Stats] = lambda: self.stats

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the node has not been started")
        return self._hub

    def _count_restart(self) -> None:
        self.stats.task_restarts += 1

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Start the hub, the broker and the built-in sources."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        self._hub = Hub(
            self.stats,
            schedule=loop.call_soon,
            max_buffered=settings.max_buffered_bytes,
            compression_level=settings.compression_level,
            on_flush=self._on_flush,
            tick_budget=settings.fanout_tick_budget,
            schedule_later=loop.call_later,
            governor=Governor(settings.latency_target_ms, enabled=settings.latency_governor),
            conflate=frozenset(LATEST_WINS_STREAMS),
        )
        await self.broker.start(self._on_events, self._on_reset)
        if settings.gc_freeze_interval > 0:
            self.tasks.spawn(
                "gc-freeze",
                partial(freeze_survivors, settings.gc_freeze_interval, settings.gc_full_interval),
            )
        trusted = partial(self.publish, validate=False)
        sampler = partial(sample_metrics, trusted, self._sampled, settings.metrics_interval)
        # One sampler and one simulator per cluster: the process holding the lease
        # runs them (a single process always holds it).
        self.tasks.spawn("metrics-sampler", self._leased("metrics-sampler", sampler))
        if settings.simulate:
            simulator = NetworkSimulator(
                seed=settings.seed,
                validators=settings.sim_validators,
                peers=settings.sim_peers,
                tx_rate=settings.sim_tx_rate,
                block_time=settings.sim_block_time,
            )
            run = partial(simulate, trusted, simulator)
            self.tasks.spawn("simulator", self._leased("simulator", run))

    def _sampled(self) -> Stats:
        return self.node_stats()

    def _leased(
        self, name: str, run: Callable[[], Coroutine[Any, Any, None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        take = partial(self.broker.lease, name, self.holder, LEASE_TTL)
        return partial(while_leased, take, run, LEASE_TTL)

    def begin_drain(self) -> None:
        """The server is shutting down: refuse new work, and write what was accepted.

        Set before any connection is closed with 1001. Whatever the hub still holds
        (events accepted and answered before this, but not yet written) is written
        now, so that every event a publisher was told about reaches the subscribers
        ahead of their close frame; nothing is accepted after this.
        """
        self.draining = True
        if self._hub is not None:
            self._hub.drain()

    async def stop(self) -> None:
        """Stop every background task, then the broker."""
        # A copy: each task's done callback discards it from the set it was added to.
        loads, self._loads = list(self._loads), set()
        for task in loads:
            task.cancel()
        for task in loads:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.tasks.stop()
        await self.broker.close()

    def load(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one subscription's history load in the background; :meth:`stop` cancels it."""
        task = asyncio.create_task(work)
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

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
        if validate:  # integers written as whole floats (21000.0) come back as ints
            messages = [spec.validate(message, index) for index, message in enumerate(messages)]
        return await self.broker.publish(stream, messages)

    def _on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.stream == "transactions" and event.data.get("status") == "PENDING":
                self.stats.new_transactions += 1
        self.snapshots.apply(events)  # before the hub: a snapshot and its changes meet at seq
        if self.settings.broadcast_enabled:
            self.hub.publish(events)

    def _on_reset(
        self, stream: str, position: Position, items: list[dict[str, Any]] | None
    ) -> None:
        """The broker continues ``stream`` after ``position`` in a history it lost or skipped."""
        if items is not None:
            self.snapshots.replace(stream, items)
        if self._hub is not None:
            self._hub.reset(stream, position)

    def _on_flush(self, events: list[Event], now: float) -> None:
        for listener in self.flush_listeners:
            listener(events, now)
