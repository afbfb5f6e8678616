from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redisserver import RedisServer, redis_server
from tests.support.server import ServerProcess, run_server

# tests/<kind>/...: each test is marked with its kind, so `pytest -m unit` selects one.
KINDS = ("unit", "contract", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = item.path.parent.name
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(KINDS)}}}/")
        item.add_marker(getattr(pytest.mark, kind))


# A server fed by the simulator, fast enough that every stream moves within a second.
LIVE_ARGS = (
    "--profile",
    "dev",
    "--simulate",
    "--seed",
    "7",
    "--metrics-interval",
    "0.2",
    "--sim-tx-rate",
    "50",
    "--sim-block-time",
    "0.3",
    "--log-level",
    "INFO",
)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with the simulator on, shared by a module's tests."""
    with run_server(*LIVE_ARGS, tmp_path=tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server with no simulator: only what a test publishes flows."""
    with run_server("--no-simulate", "--log-level", "INFO", tmp_path=tmp_path) as server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run; a test that needs it empty flushes it.

    Tests that restart, pause or flush Redis under a running server start their own.
    """
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server
