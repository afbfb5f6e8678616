"""A blocking wrapper for scripts: the asyncio client on a thread of its own.

::

    with SyncClient("ws://127.0.0.1:9003") as client:
        for msg in client.subscribe("metrics"):
            print(msg["tps"])

It is the same :class:`~.client.Client` (reconnects, resumes, gaps, refresh),
run on an event loop in a background thread; iteration blocks the caller. Its
methods wait for that loop, so they cannot be called on the loop's own thread
(from ``on_event`` or the token callback): there they raise ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from .client import DEFAULT_URL, Client, Subscription
from .events import Gap, Snapshot

__all__ = ["SyncClient", "SyncSubscription"]

R = TypeVar("R")


class SyncSubscription(Iterator[Any]):
    """A subscription iterated without asyncio; ``next()`` blocks until an item arrives."""

    def __init__(self, owner: SyncClient, sub: Subscription[Any]) -> None:
        self._owner = owner
        self._sub = sub
        self.id = sub.id
        self.stream = sub.stream

    def __iter__(self) -> SyncSubscription:
        return self

    def __next__(self) -> dict[str, Any] | Gap | Snapshot[Any]:
        return self.get()

    def get(self, timeout: float | None = None) -> dict[str, Any] | Gap | Snapshot[Any]:
        """The next item; StopIteration when it ended, TimeoutError after ``timeout`` s."""
        try:
            item: dict[str, Any] | Gap | Snapshot[Any] = self._owner._call(
                _within(timeout, self._sub.__anext__())
            )
        except StopAsyncIteration:
            raise StopIteration from None
        return item

    def unsubscribe(self) -> None:
        self._owner._call(self._sub.unsubscribe())


class SyncClient:
    """:class:`~.client.Client` for code without an event loop; takes the same arguments."""

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        self._url = url
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aurigraph-stream-client", daemon=True
        )
        self._client: Client | None = None

    def __enter__(self) -> SyncClient:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        self._client = self._call(self._open())

    async def _open(self) -> Client:
        client = Client(self._url, **self._options)
        client.start()
        return client

    def _call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the client's loop and wait for its result.

        A timeout belongs inside ``coro`` (:func:`_within`), on the loop: a wait
        abandoned here could drop what the coroutine had already taken from an inbox.

        Raises:
            RuntimeError: called on the loop's own thread, which it would block for ever.
        """
        if threading.get_ident() == self._thread.ident:
            coro.close()
            raise RuntimeError(
                "SyncClient methods wait for the client's event loop, so they cannot run "
                "on its thread (in on_event or the token callback); use the asyncio "
                "Client (SyncClient.client) there"
            )
        future: Future[R] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the client is not started")
        return self._client

    def subscribe(self, stream: str, **options: Any) -> SyncSubscription:
        """:meth:`Client.subscribe <.client.Client.subscribe>`, blocking-iterable."""
        return SyncSubscription(self, self._call(self._subscribe(stream, options)))

    async def _subscribe(self, stream: str, options: dict[str, Any]) -> Subscription[Any]:
        return self.client.subscribe(stream, **options)

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until the connection is open; TimeoutError after ``timeout`` s."""
        self._call(_within(timeout, self.client.wait_connected()))

    def close(self) -> None:
        """Close the client and stop its thread."""
        if self._client is not None:
            self._call(self._client.close())
            self._client = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()


async def _within(seconds: float | None, awaitable: Awaitable[R]) -> R:
    """``awaitable``, or TimeoutError after ``seconds``, timed on the client's loop.

    When the item arrives as the time runs out, it is either returned or left in
    the inbox for the next call: the inbox hands it over without yielding to the
    loop, so the timeout cannot strike between taking it and returning it.
    """
    async with asyncio.timeout(seconds):
        return await awaitable
