"""The figures of every worker of a node, added up for the operator endpoints.

With ``--workers N`` a request for ``/api/v11/websocket/stats`` or
``/q/metrics`` reaches one worker, but it must describe the node. Every worker
writes its counters and latency buckets to Redis once a second (a key per
worker that expires after :data:`TTL`, so a dead worker's figures leave) and
reads the others'. The endpoints then add them to their own live figures:
counters and connections summed, latency histograms merged bucket by bucket
(the buckets are the same everywhere, so the merge is exact), the events
over the latency target (the SLO burn) and the GraphQL operations summed.
The new transactions are not summed: every worker's reader counts every
event of the stream, so one worker's count is the node's (this worker's, which
only grows). The other workers' part is at most about two :data:`INTERVAL`
old (written up to one interval before it is read, read up to one interval
before a request). When a worker dies its figures leave with its key, so a
summed counter may go down then.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import asdict, fields
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from aurigraph_stream.node import WorkerIdentity
from aurigraph_stream.ops.latency import LatencyHistogram
from aurigraph_stream.stats import EndpointStats, Stats

__all__ = ["INTERVAL", "TTL", "WorkerFigures", "merge"]

logger = logging.getLogger("aurigraph_stream.workers")

INTERVAL = 1.0  # seconds between writes
TTL = 5.0  # seconds a worker's figures outlive its last write
_ENDPOINT_FIELDS = tuple(f.name for f in fields(EndpointStats))

Figures = dict[str, Any]


def snapshot(stats: Stats, latency: dict[str, LatencyHistogram], ingest: Any) -> Figures:
    """One worker's figures as plain JSON data."""
    return {
        "endpoints": {name: asdict(e) for name, e in stats.endpoints.items()},
        "refused": dict(stats.refused),
        "closes": {str(code): n for code, n in stats.closes.items()},
        "new_transactions": stats.new_transactions,
        "task_restarts": stats.task_restarts,
        "graphql": [[outcome, what, n] for (outcome, what), n in stats.graphql.items()],
        "started_at": stats.started_at,
        "latency": {
            name: {
                "buckets": h.buckets,
                "count": h.count,
                "sum": h.sum,
                "max": h.max,
                "over": h.over_target,
            }
            for name, h in latency.items()
        },
        "accepted": dict(ingest.accepted),
        "rejected": [[stream, reason, n] for (stream, reason), n in ingest.rejected.items()],
    }


def merge(
    stats: Stats, latency: dict[str, LatencyHistogram], ingest: Any, others: list[Figures]
) -> tuple[Stats, dict[str, LatencyHistogram], Counter[str], Counter[tuple[str, str]]]:
    """This worker's live figures plus the others': (stats, latency, accepted, rejected)."""
    total = Stats.for_streams(tuple(stats.endpoints))
    total.started_at = stats.started_at
    # Every worker's reader counts every event: this worker's count is the node's.
    total.new_transactions = stats.new_transactions
    hists = {name: LatencyHistogram() for name in latency}
    accepted: Counter[str] = Counter(ingest.accepted)
    rejected: Counter[tuple[str, str]] = Counter(ingest.rejected)
    own = snapshot(stats, latency, ingest)
    for figures in [own, *others]:
        for name, values in figures["endpoints"].items():
            target = total.endpoints.get(name)
            if target is None:
                continue
            for field in _ENDPOINT_FIELDS:
                setattr(target, field, getattr(target, field) + int(values.get(field, 0)))
        total.refused.update(figures["refused"])
        total.closes.update({int(code): n for code, n in figures["closes"].items()})
        total.task_restarts += figures["task_restarts"]
        for outcome, what, n in figures.get("graphql", ()):
            total.graphql[(outcome, what)] += n
        total.started_at = min(total.started_at, figures["started_at"])
        for name, h in figures["latency"].items():
            merged = hists.get(name)
            if merged is None or len(h["buckets"]) != len(merged.buckets):
                continue
            merged.buckets = [a + b for a, b in zip(merged.buckets, h["buckets"], strict=True)]
            merged.count += h["count"]
            merged.sum += h["sum"]
            merged.max = max(merged.max, h["max"])
            merged.over_target += int(h.get("over", 0))  # the SLO burn's numerator
        if figures is not own:
            accepted.update(figures["accepted"])
            for stream, reason, n in figures["rejected"]:
                rejected[(stream, reason)] += n
    return total, hists, accepted, rejected


class WorkerFigures:
    """Shares this worker's figures with the other workers of its node, through Redis."""

    def __init__(self, identity: WorkerIdentity, url: str) -> None:
        self.identity = identity
        self.others: list[Figures] = []
        self._client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=1.0
        )
        base = f"aurigraph:figures:{identity.node}:"
        self._key = base + str(identity.index)
        self._peers = [base + str(i) for i in range(identity.count) if i != identity.index]

    async def run(self, own: Any) -> None:
        """Every :data:`INTERVAL`: write ``own()`` (this worker's figures), read the others'."""
        try:
            while True:
                try:
                    await self._client.set(self._key, orjson.dumps(own()), px=int(TTL * 1000))
                    values = await self._client.mget(self._peers) if self._peers else []
                    self.others = [orjson.loads(v) for v in values if v is not None]
                except (RedisError, OSError):
                    pass  # Redis away: the endpoints show the figures last read
                await asyncio.sleep(INTERVAL)
        finally:
            await self._client.aclose()
