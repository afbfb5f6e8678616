"""Brokers, chosen by URL scheme: ``memory://`` (default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aurigraph_stream.broker.base import Broker, EventHandler, HistoryRead
from aurigraph_stream.broker.memory import MemoryBroker
from aurigraph_stream.errors import ConfigError
from aurigraph_stream.history import HistoryPolicy

__all__ = ["Broker", "EventHandler", "HistoryRead", "MemoryBroker", "create_broker"]


def create_broker(
    url: str,
    streams: Sequence[str],
    history_size: int,
    policies: Mapping[str, HistoryPolicy] | None = None,
) -> Broker:
    """Build the broker a URL names.

    Raises:
        ConfigError: for a scheme no broker implements.
    """
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryBroker(streams, history_size, policies)
    raise ConfigError(f"unsupported broker URL scheme {scheme!r} (supported: memory://)")
