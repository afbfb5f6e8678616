"""The figures of a node's workers, added up (ops/workers.py), and the metrics sampler
reading them: no Redis, the figures as they travel through it (JSON)."""

from __future__ import annotations

from collections import Counter

import orjson

from aurigraph_stream.ops.latency import LatencyHistogram
from aurigraph_stream.ops.observability import IngestCounters
from aurigraph_stream.ops.workers import merge, snapshot
from aurigraph_stream.sources.sampler import MetricsSampler
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES


def _worker(new_transactions: int, sent: int, graphql: dict[tuple[str, str], int]) -> Stats:
    stats = Stats.for_streams(NAMES)
    stats.new_transactions = new_transactions
    stats.endpoints["transactions"].messages_sent = sent
    stats.graphql.update(graphql)
    return stats


def test_new_transactions_are_one_workers_count_and_graphql_operations_are_summed() -> None:
    """Every worker's reader counts every event of the stream, so the node's new
    transactions are this worker's count, not the sum (twice too many with two workers);
    deliveries and GraphQL operations happen in one worker each, and are summed."""
    latency = {name: LatencyHistogram() for name in NAMES}
    ingest = IngestCounters()
    own = _worker(100, 30, {("executed", "query"): 2})
    other = _worker(98, 12, {("executed", "query"): 3, ("refused", "syntax_error"): 1})
    shared = orjson.loads(orjson.dumps(snapshot(other, latency, ingest)))  # through Redis
    total, _hists, _accepted, _rejected = merge(own, latency, ingest, [shared])
    assert total.new_transactions == 100
    assert total.endpoints["transactions"].messages_sent == 42
    assert total.graphql == Counter({("executed", "query"): 5, ("refused", "syntax_error"): 1})


def test_the_error_rate_stays_at_or_above_zero_when_summed_counts_go_down() -> None:
    """A dead worker's figures expire and the node's failed sends go down between two
    samples: the error rate of that interval is 0, not negative (the schema's minimum)."""
    stats = Stats.for_streams(NAMES)
    sampler = MetricsSampler(lambda: stats, 0.0)
    endpoint = stats.endpoints["transactions"]
    endpoint.messages_sent, endpoint.failed_sends = 100, 10
    assert sampler.sample(1.0)["errorRate"] == 0.1
    endpoint.messages_sent, endpoint.failed_sends = 150, 4
    assert sampler.sample(2.0)["errorRate"] == 0.0
    endpoint.messages_sent, endpoint.failed_sends = 250, 9
    assert sampler.sample(3.0)["errorRate"] == 0.05
