"""Brokers, chosen by URL scheme: ``memory://`` (default)."""

from __future__ import annotations

from collections.abc import Mapping

from aurigraph_stream.broker.base import Broker, EventHandler, HistoryRead
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.broker.memory import MemoryBroker
from aurigraph_stream.errors import ConfigError

__all__ = ["Broker", "EventHandler", "HistoryRead", "MemoryBroker", "create_broker"]


def create_broker(url: str, policies: Mapping[str, HistoryPolicy]) -> Broker:
    """Build the broker a URL names, for the streams of ``policies`` (their history bounds).

    Raises:
        ConfigError: for a scheme no broker implements.
    """
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryBroker(policies)
    raise ConfigError(f"unsupported broker URL scheme {scheme!r} (supported: memory://)")
