"""Counters the hub and connections keep; the sampler and stats endpoint read them.

Plain integers in plain objects: incrementing one is the cheapest thing the
hot path can do, and readers derive rates from differences.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EndpointStats", "Stats"]


@dataclass(slots=True)
class EndpointStats:
    """Totals for one endpoint since start (``connections`` is current)."""

    connections: int = 0
    connects: int = 0
    messages_sent: int = 0
    bytes_raw: int = 0  # message payloads before compression and framing
    bytes_wire: int = 0  # frames as written to sockets
    slow_disconnects: int = 0
    keepalive_disconnects: int = 0
    protocol_errors: int = 0
    failed_sends: int = 0  # deliveries dropped because the connection was closing
    # latest-wins deliveries left out because a newer event of the stream went instead
    conflated: int = 0


@dataclass(slots=True)
class Stats:
    endpoints: dict[str, EndpointStats]
    refused: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    new_transactions: int = 0  # transactions-stream events with status PENDING
    task_restarts: int = 0  # background tasks restarted after a failure
    # GraphQL operations: ("executed", query|mutation|subscription) or ("refused", error code).
    graphql: Counter[tuple[str, str]] = field(default_factory=Counter)
    started_at: float = field(default_factory=time.time)

    @classmethod
    def for_streams(cls, names: tuple[str, ...]) -> Stats:
        return cls({name: EndpointStats() for name in names})

    @property
    def connections(self) -> int:
        return sum(e.connections for e in self.endpoints.values())

    @property
    def messages_sent(self) -> int:
        return sum(e.messages_sent for e in self.endpoints.values())

    @property
    def errors(self) -> int:
        return sum(e.failed_sends + e.protocol_errors for e in self.endpoints.values())
