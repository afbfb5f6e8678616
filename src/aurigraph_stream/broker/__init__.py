"""Brokers, chosen by URL scheme: ``memory://`` (default), ``redis://`` and ``rediss://``."""

from __future__ import annotations

from collections.abc import Mapping

from aurigraph_stream.broker.base import (
    Broker,
    BrokerUnavailable,
    EventHandler,
    HistoryRead,
    ResetHandler,
)
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.broker.memory import MemoryBroker
from aurigraph_stream.errors import ConfigError

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "EventHandler",
    "HistoryRead",
    "MemoryBroker",
    "ResetHandler",
    "create_broker",
    "is_shared",
]

SHARED_SCHEMES = ("redis", "rediss")


def is_shared(url: str) -> bool:
    """Whether the broker a URL names is shared by processes (so seq is cluster-wide)."""
    return url.partition("://")[0] in SHARED_SCHEMES


def create_broker(url: str, policies: Mapping[str, HistoryPolicy]) -> Broker:
    """Build the broker a URL names, for the streams of ``policies`` (their history bounds).

    Raises:
        ConfigError: for a scheme no broker implements.
    """
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryBroker(policies)
    if scheme in SHARED_SCHEMES:
        # Imported here: a memory-only server does not load the Redis client.
        from aurigraph_stream.broker.redis import RedisBroker

        return RedisBroker(url, policies)
    raise ConfigError(
        f"unsupported broker URL scheme {scheme!r} (supported: memory://, redis://, rediss://)"
    )
