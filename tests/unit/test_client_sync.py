"""The blocking SyncClient without sockets: its client never connects, and the tests put
items in its subscriptions' inboxes themselves."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aurigraph_stream_client import Client, SyncClient

BOUND = 5.0  # seconds any one wait of these tests may take


@pytest.fixture
def idle_sync() -> Iterator[SyncClient]:
    """A SyncClient whose client never connects: its inboxes are filled by the test."""
    sync = SyncClient()
    sync._thread.start()

    async def make() -> Client:
        return Client()  # not started: no connection

    sync._client = sync._call(make())
    yield sync
    # Bounded: should a test have left the loop blocked, close() would wait for ever.
    closer = threading.Thread(target=sync.close, daemon=True)
    closer.start()
    closer.join(BOUND)


def test_a_get_that_times_out_as_its_item_arrives_loses_nothing(idle_sync: SyncClient) -> None:
    """The item comes, then the loop is busy past get's timeout before it hands the item
    over: get either returns it, or raises TimeoutError and leaves it for the next get.
    Never is it taken and dropped."""
    sub = idle_sync.subscribe("transactions")
    loop = idle_sync._loop
    stalled = threading.Event()
    puts: list[asyncio.Task[None]] = []

    def stall() -> None:
        stalled.set()
        time.sleep(0.3)  # the loop is busy: get's timeout comes due meanwhile

    def arrive() -> None:  # on the loop: the item goes in, then the stall
        puts.append(loop.create_task(sub._sub._inbox.put({"seq": 1})))
        loop.call_soon(stall)

    loop.call_soon_threadsafe(loop.call_later, 0.02, arrive)
    got: list[Any] = []
    try:
        got.append(sub.get(timeout=0.1))
    except TimeoutError:
        got.append(sub.get(timeout=BOUND))
    assert stalled.is_set()
    assert got == [{"seq": 1}]


def test_a_get_times_out_on_an_empty_subscription(idle_sync: SyncClient) -> None:
    sub = idle_sync.subscribe("transactions")
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        sub.get(timeout=0.05)
    assert time.monotonic() - start < BOUND


def test_sync_methods_on_the_loop_thread_raise_instead_of_deadlocking(
    idle_sync: SyncClient,
) -> None:
    """Called from the client's own thread (on_event, the token callback), a blocking method
    would wait for the loop it blocks: it raises RuntimeError at once."""
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def on_loop() -> None:
        try:
            idle_sync.subscribe("metrics")
            outcome.append(None)
        except RuntimeError as exc:
            outcome.append(exc)
        done.set()

    idle_sync._loop.call_soon_threadsafe(on_loop)
    assert done.wait(BOUND), "deadlocked"
    (error,) = outcome
    assert isinstance(error, RuntimeError)
    assert "its thread" in str(error)
