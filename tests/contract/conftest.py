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


@pytest.fixture(params=["memory"])
def harness(request: pytest.FixtureRequest) -> BrokerHarness:
    """Every broker implementation, in turn."""
    if request.param == "memory":
        return MemoryHarness()
    raise AssertionError(request.param)
