"""The implementations each contract suite runs against.

A new implementation joins a suite by adding one parameter here: a harness that
builds it and knows how to make it lose its history (for the epoch tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import pytest

from aurigraph_stream.broker import Broker, MemoryBroker
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.broker.redis import RedisBroker
from tests.support.redisserver import RedisServer


class BrokerHarness(Protocol):
    name: str

    def new(self, policies: Mapping[str, HistoryPolicy]) -> Broker:
        """A broker on this harness's store (for a networked broker, the same server)."""
        ...

    async def lose_history(self) -> None:
        """Make the store forget every stream, as a restart without persistence does."""
        ...


class MemoryHarness:
    """memory://: the broker is its own store, so losing history is a new broker."""

    name = "memory"

    def new(self, policies: Mapping[str, HistoryPolicy]) -> Broker:
        return MemoryBroker(policies)

    async def lose_history(self) -> None:
        return None  # the next new() is a fresh process's broker


class RedisHarness:
    """redis://: brokers on one real redis-server; losing history is FLUSHALL."""

    name = "redis"

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    def new(self, policies: Mapping[str, HistoryPolicy]) -> Broker:
        return RedisBroker(self.server.url, policies)

    async def lose_history(self) -> None:
        self.server.flushall()


@pytest.fixture(params=["memory", "redis"])
def harness(request: pytest.FixtureRequest) -> BrokerHarness:
    """Every broker implementation, in turn."""
    if request.param == "memory":
        return MemoryHarness()
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        server.flushall()
        return RedisHarness(server)
    raise AssertionError(request.param)
