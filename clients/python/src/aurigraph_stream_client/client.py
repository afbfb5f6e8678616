"""The asyncio client: one ``/ws`` connection, any number of subscriptions, and no silent loss.

::

    async with Client("ws://127.0.0.1:9003") as client:
        async for msg in client.subscribe("transactions", address="0x..."):
            if isinstance(msg, Gap):
                ...  # the server could not resume: reload what depends on the stream
            else:
                print(msg["txHash"], msg["seq"])

A background task keeps the connection: it connects, sends every subscription,
and reads frames into each subscription's inbox. When the connection ends it
decides by the server's close-code table (:mod:`.policy`) whether to reconnect;
it waits a jittered exponential back-off (never less than a ``Retry-After``),
connects again and resubscribes each subscription from the last seq it
delivered (``since=SEQ:EPOCH``). Each subscription's :class:`.SeqTracker` drops
duplicates and turns ``recovered: false`` into a :class:`.Gap` ahead of the next
message. A frame the client cannot decode may be a message: the client closes
that connection itself and reconnects the same way, rather than skip it. Should
the task itself fail, every subscription ends with a :class:`.StreamClientError`
whose ``__cause__`` is the fault, instead of waiting for ever.

An inbox holds at most ``max_queue`` items. When the application reads more
slowly than messages arrive, the reader waits for room, so the socket is not
read; the server then closes the connection as a slow consumer (4008), and
the client reconnects and resumes where the application is. Nothing is
dropped to keep up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload
from urllib.parse import urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.protocol import State
from websockets.typing import Subprotocol

from .backoff import Backoff, parse_retry_after
from .errors import CommandError, GaveUp, HandshakeError, Revoked, StreamClientError
from .events import (
    Connected,
    ConnectionEvent,
    Disconnected,
    Gap,
    Position,
    Snapshot,
    TokenRefreshed,
)
from .messages import (
    ConsensusMessage,
    MetricsMessage,
    NetworkMessage,
    TransactionMessage,
    ValidatorMessage,
)
from .policy import ABNORMAL, Decision, after_close, after_refusal
from .tracking import SeqTracker
from .wire import Format, command, decoder, subprotocol, token_expiry

__all__ = ["DEFAULT_URL", "Client", "Subscription", "TokenSource"]

logger = logging.getLogger("aurigraph_stream_client")

DEFAULT_URL = "ws://127.0.0.1:9003"
#: A token: fixed, or a callable (plain or async) asked for a new one before ``exp``.
TokenSource = str | Callable[[], str | Awaitable[str]] | None
FilterValue = str | int | bool | Sequence[str]

T = TypeVar("T")
_MIN_REFRESH_PAUSE = 1.0  # seconds between two refreshes (or tries), whatever the tokens say
# Filter options that only project (drop fields, never messages): seqs stay consecutive.
_PROJECTIONS = frozenset(("fields", "detail"))
_UNREADABLE = "unreadable frame"


class _NoToken(Exception):
    """The token callback failed (raised, or returned no string) before a connection attempt."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Ended:
    """How a connection ended."""

    code: int  # the close code received (1006: none)
    reason: str
    cause: BaseException  # websockets' account of the close (a GaveUp's __cause__)
    worked: bool  # the server took a subscription on it, or there was none to take
    unreadable: bool  # this client closed it on a frame it could not decode


class _Inbox(Generic[T]):
    """A bounded FIFO whose end (with or without an error) comes after what it holds."""

    __slots__ = ("_end", "_ended", "_items", "_maxsize", "_readable", "_writable")

    def __init__(self, maxsize: int) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._ended = False
        self._end: BaseException | None = None

    async def put(self, item: T) -> None:
        """Append, waiting while it is full (the reader then stops reading the socket)."""
        while len(self._items) >= self._maxsize and not self._ended:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(item)
        self._readable.set()

    def end(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended, self._end = True, error
        self._readable.set()
        self._writable.set()

    async def get(self) -> T:
        """The next item; then StopAsyncIteration, or the error it ended with."""
        while not self._items:
            if self._ended:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if len(self._items) < self._maxsize:
            self._writable.set()
        return item


class Subscription(Generic[T]):
    """One subscription on the client's connection; iterate it for its messages.

    It yields the stream's messages (``T``, a TypedDict of :mod:`.messages`), a
    :class:`.Gap` where the server lost messages, and a :class:`.Snapshot` when
    one was asked for. Iteration ends when it is unsubscribed or the client
    closes, and raises when the SDK stops on an error (after everything received).
    """

    __slots__ = (
        "_client",
        "_filter",
        "_inbox",
        "_replay",
        "_retry",
        "_sent_on",
        "_snapshot",
        "_tracker",
        "id",
        "stream",
    )

    def __init__(
        self,
        client: Client,
        sub_id: str,
        stream: str,
        flt: dict[str, Any],
        replay: int | None,
        since: Position | int | None,
        snapshot: bool,
        maxsize: int,
        retry: Backoff,
    ) -> None:
        self._client = client
        self.id = sub_id
        self.stream = stream
        self._filter = flt
        self._replay = replay
        self._snapshot = snapshot
        filtered = any(key not in _PROJECTIONS for key in flt)
        self._tracker = SeqTracker(stream, since, filtered=filtered)
        self._inbox: _Inbox[T | Gap | Snapshot[T]] = _Inbox(maxsize)
        self._sent_on: ClientConnection | None = None  # the connection it was last sent on
        self._retry = retry  # delays before asking again after history_unavailable

    @property
    def position(self) -> Position | None:
        """The last position delivered (``seq`` and epoch), once the server named the epoch."""
        t = self._tracker
        return Position(t.seq, t.epoch) if t.seq is not None and t.epoch is not None else None

    @property
    def duplicates(self) -> int:
        """Messages received twice and not delivered again."""
        return self._tracker.duplicates

    def command(self) -> str:
        """The subscribe command that (re)starts it: from the last seq delivered, if known."""
        since = self._tracker.since()
        return command(
            "subscribe",
            id=self.id,
            stream=self.stream,
            filter=self._filter or None,
            replay=None if since is not None else self._replay,
            since=since,
            snapshot=self._snapshot or None,
        )

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T | Gap | Snapshot[T]:
        return await self._inbox.get()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.unsubscribe()

    async def unsubscribe(self) -> None:
        """End it: no message of it is delivered after what it already holds."""
        await self._client._unsubscribe(self)


class Client:
    """A connection to an Aurigraph Stream server that subscriptions share.

    Args:
        url: the server, ``ws://host:port`` (``/ws`` is added) or ``wss://``.
        token: an access token, or a callable (plain or async) returning one; a
            callable is asked again before the token's ``exp`` (the connection
            takes the new token with a ``refresh`` command, without reconnecting)
            and when the server says the token expired (4001).
        format: ``json``, ``msgpack`` (extra ``msgpack``) or ``protobuf`` (extra
            ``protobuf``); messages decode to the same dicts.
        backoff: reconnect delays (default: from 0.5 s doubling to 30 s, jittered).
        max_retries: retries after a failed attempt before giving up with
            :class:`.GaveUp`: it gives up when ``max_retries + 1`` attempts in a
            row failed (None: never). A subscription the server could not start
            (``history_unavailable``) is asked again as many times.
        refresh_margin: seconds before ``exp`` to refresh (at most half the
            token's remaining lifetime).
        max_queue: items each subscription holds for the application.
        open_timeout: seconds for one connection attempt.
        compression: offer permessage-deflate.
        on_event: called with :class:`.Connected`, :class:`.Disconnected` and
            :class:`.TokenRefreshed` as they happen.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: TokenSource = None,
        format: Format = "json",
        backoff: Backoff | None = None,
        max_retries: int | None = None,
        refresh_margin: float = 30.0,
        max_queue: int = 10_000,
        open_timeout: float = 10.0,
        compression: bool = True,
        on_event: Callable[[ConnectionEvent], None] | None = None,
    ) -> None:
        self.url = mux_url(url)
        self.format: Format = format
        self._decode = decoder(format)  # fails now, not at the first frame, without an extra
        self._token_source = token
        self._token: str | None = token if isinstance(token, str) else None
        self._backoff = backoff or Backoff()
        self._max_retries = max_retries
        self._refresh_margin = refresh_margin
        self._max_queue = max_queue
        self._open_timeout = open_timeout
        self._compression = compression
        self._on_event = on_event
        self._subs: dict[str, Subscription[Any]] = {}
        self._next_id = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._closed = False
        self._error: StreamClientError | None = None
        self._failures = 0
        self._worked = False  # the open connection took a subscription (or had none to take)

    # -- lifecycle ----------------------------------------------------------------
    async def __aenter__(self) -> Client:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (``async with`` does it)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def error(self) -> StreamClientError | None:
        """Why the client stopped, when it stopped on an error."""
        return self._error

    async def wait_connected(self) -> None:
        """Wait until the connection is open (bound it with ``asyncio.timeout``).

        Raises:
            StreamClientError: the client stopped on an error first.
        """
        stopped = asyncio.ensure_future(self._stopped())
        opened = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait((stopped, opened), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            opened.cancel()
        if self._error is not None:
            raise self._error
        if not self._connected.is_set():
            raise StreamClientError("the client is closed")

    async def _stopped(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Close the connection; every subscription ends after what it already holds."""
        if self._closed:
            return
        self._closed = True
        ws = self._ws  # taken first: the session forgets it when cancelled
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ws = None
        if ws is not None:
            await ws.close()
        for pending in list(self._tasks):
            pending.cancel()
        self._connected.clear()
        for sub in self._subs.values():
            sub._inbox.end(None)
        self._subs.clear()

    # -- subscriptions ------------------------------------------------------------
    @overload
    def subscribe(
        self,
        stream: Literal["metrics"],
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[MetricsMessage]: ...

    @overload
    def subscribe(
        self,
        stream: Literal["transactions"],
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[TransactionMessage]: ...

    @overload
    def subscribe(
        self,
        stream: Literal["validators"],
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[ValidatorMessage]: ...

    @overload
    def subscribe(
        self,
        stream: Literal["consensus"],
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[ConsensusMessage]: ...

    @overload
    def subscribe(
        self,
        stream: Literal["network"],
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[NetworkMessage]: ...

    @overload
    def subscribe(
        self,
        stream: str,
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[Any]: ...

    def subscribe(
        self,
        stream: str,
        *,
        filter: Mapping[str, Any] | None = None,
        replay: int | None = None,
        since: Position | str | int | None = None,
        snapshot: bool = False,
        **filters: FilterValue,
    ) -> Subscription[Any]:
        """Subscribe to a stream on the shared connection.

        Args:
            stream: ``metrics``, ``transactions``, ``validators``, ``consensus``, ``network``.
            filter: filter options as a dict (use it for ``from``, a Python keyword).
            replay: start with the last N messages that pass the filter.
            since: resume after a position (``Position``, ``"SEQ:EPOCH"``, or a seq).
            snapshot: validators, network: the current set first.
            **filters: filter options (``address="0x..."``, ``status=["PENDING"]``).

        The server checks the filter; a bad one ends the subscription with
        :class:`.CommandError` when iterated.

        Raises:
            ValueError: replay together with since.
            StreamClientError: the client is closed.
        """
        if self._closed or self._error is not None:
            raise self._error or StreamClientError("the client is closed")
        if replay is not None and since is not None:
            raise ValueError("ask for replay or since, not both")
        flt = {k: _json_value(v) for k, v in {**(filter or {}), **filters}.items()}
        self._next_id += 1
        sub: Subscription[Any] = Subscription(
            self,
            f"s{self._next_id}",
            stream,
            flt,
            replay,
            _since(since),
            snapshot,
            self._max_queue,
            dataclasses.replace(self._backoff, attempts=0),
        )
        self._subs[sub.id] = sub
        ws = self._ws
        if ws is not None:
            self._spawn(self._send_subscription(ws, sub))
        return sub

    async def _unsubscribe(self, sub: Subscription[Any]) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        sub._inbox.end(None)
        ws = self._ws
        if ws is not None and sub._sent_on is ws:
            await self._send(ws, command("unsubscribe", id=sub.id))

    async def _send_subscription(self, ws: ClientConnection, sub: Subscription[Any]) -> None:
        # Marked before the send awaits, so the reconnect path and subscribe() never
        # both send it on one connection (the second would be a duplicate_id).
        if sub._sent_on is ws or self._subs.get(sub.id) is not sub:
            return
        sub._sent_on = ws
        await self._send(ws, sub.command())

    async def _send(self, ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader sees the close and acts
            await ws.send(text)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the connection -------------------------------------------------------------
    def _emit(self, event: ConnectionEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # the application's callback must not take the client down
            logger.exception("on_event callback failed")

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except Exception as exc:
            # A fault of the SDK's own (a frame it misread, a bug): stop loudly, rather
            # than leave every subscription waiting for items that will never come.
            logger.exception("the client failed")
            error = StreamClientError(f"the client failed: {exc!r}")
            error.__cause__ = exc
            self._stop(error, ABNORMAL, str(error))

    async def _keep_connected(self) -> None:
        attempt = 0
        new_token = False  # the server refused the token: ask the callback for another
        while True:
            retry_after: float | None = None
            failure: BaseException
            renewed = False  # this attempt's token was fetched for it
            try:
                renewed = await self._token_for_attempt(new_token)
                new_token = False
                ws = await connect(
                    self.url,
                    additional_headers=self._headers(),
                    subprotocols=[Subprotocol(subprotocol(self.format))],
                    open_timeout=self._open_timeout,
                    compression="deflate" if self._compression else None,
                    max_size=64 * 2**20,
                    close_timeout=5,
                )
            except _NoToken as exc:
                # Like a connection that failed: the callback may answer next time (and
                # is asked again then, whether or not the last token was refused).
                logger.warning("%s", exc)
                decision = Decision(new_token=new_token)
                code, reason = ABNORMAL, str(exc)
                failure = exc.__cause__ or exc
            except InvalidStatus as exc:
                response = exc.response
                error, detail = _refusal(response.body)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                decision = after_refusal(
                    response.status_code, error, detail, self._can_renew(), renewed
                )
                code, reason = response.status_code, f"{error}: {detail}"
                failure = HandshakeError(response.status_code, error, detail)
            except InvalidURI as exc:
                self._stop(StreamClientError(str(exc)), ABNORMAL, str(exc))
                return
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                decision = Decision()
                code, reason = ABNORMAL, str(exc) or type(exc).__name__
                failure = exc
            else:
                ended = await self._session(ws, attempt)
                code, reason, failure = ended.code, ended.reason, ended.cause
                if ended.unreadable:
                    # Our own close: the code is our 1002 echoed, which says nothing of
                    # the server. Reconnect, and resume from the last message delivered.
                    decision = Decision()
                    reason = _UNREADABLE
                else:
                    decision = after_close(code, reason, self._can_renew())
                    if ended.worked:  # a good connection: start the back-off over
                        self._backoff.reset()
                        self._failures = 0
            if decision.error is not None:
                self._stop(decision.error, code, reason)
                return
            new_token = decision.new_token
            self._failures += 1
            if self._max_retries is not None and self._failures > self._max_retries:
                gave_up = GaveUp(
                    f"gave up after {self._failures} failed attempts in a row "
                    f"({self._max_retries} retries): {code} {reason}"
                )
                gave_up.__cause__ = failure
                self._stop(gave_up, code, reason)
                return
            delay = self._backoff.after(retry_after)
            self._emit(Disconnected(code, reason, delay))
            await asyncio.sleep(delay)
            attempt += 1

    def _stop(self, error: StreamClientError, code: int, reason: str) -> None:
        """Stop for good: each subscription raises ``error`` after what it holds."""
        self._error = error
        self._emit(Disconnected(code, reason, None))
        for sub in self._subs.values():
            sub._inbox.end(error)
        self._subs.clear()

    async def _session(self, ws: ClientConnection, attempt: int) -> _Ended:
        """Run one open connection to its end."""
        self._ws = ws
        self._connected.set()
        # A connection with no subscription to confirm it works once it opens.
        self._worked = not self._subs
        unreadable = False
        self._emit(Connected(self.url, attempt))
        refresher = asyncio.ensure_future(self._refresher(ws))
        try:
            for sub in list(self._subs.values()):
                await self._send_subscription(ws, sub)
            async for frame in ws:
                try:
                    data = self._decode(frame)
                except Exception:
                    # A frame we cannot read may be a message: leave this connection
                    # without reading further, and resume from the last one delivered.
                    logger.exception("unreadable frame; reconnecting")
                    unreadable = True
                    await ws.close(1002, _UNREADABLE)
                    break
                await self._dispatch(ws, data)
        except ConnectionClosed:
            pass
        except Exception:
            with contextlib.suppress(Exception):
                await ws.close(1011, "client failure")
            raise
        finally:
            refresher.cancel()
            self._connected.clear()
            self._ws = None
        code = int(ws.close_code) if ws.close_code is not None else ABNORMAL
        # websockets' account of the close ("received 1001 (going away); then sent 1001").
        closed = ws.protocol.state is State.CLOSED
        cause = ws.protocol.close_exc if closed else ConnectionClosedError(None, None)
        return _Ended(code, ws.close_reason or "", cause, self._worked, unreadable)

    async def _dispatch(self, ws: ClientConnection, data: dict[str, Any]) -> None:
        kind = data.get("type")
        sub = self._subs.get(data.get("id", ""))
        if kind == "message":
            if sub is not None and sub._tracker.accept(int(data["data"]["seq"])):
                await sub._inbox.put(data["data"])
        elif kind == "subscribed":
            if sub is None:
                return
            position = Position.from_json(data["position"])
            gap = sub._tracker.on_subscribed(
                position, bool(data["recovered"]), int(data.get("replayed", 0))
            )
            self._worked = True  # the server took us back: a working connection
            sub._retry.reset()
            if gap is not None:
                await sub._inbox.put(gap)
        elif kind == "snapshot":
            if sub is not None:
                position = Position.from_json(data["position"])
                sub._tracker.on_snapshot(position)
                await sub._inbox.put(Snapshot(sub.stream, position, list(data["items"])))
        elif kind == "unsubscribed":
            if sub is not None and data.get("reason") == "forbidden":
                del self._subs[sub.id]
                detail = f"the refreshed token no longer grants the stream {sub.stream!r}"
                sub._inbox.end(Revoked("forbidden", detail))
        elif kind == "error":
            if sub is not None and data.get("op") == "subscribe":
                if data.get("error") == "history_unavailable" and self._may_retry(sub):
                    self._spawn(self._subscribe_again(ws, sub))
                    return
                del self._subs[sub.id]
                sub._inbox.end(_command_error(data))
            else:
                logger.warning("the server refused a command: %s", data)
        elif kind == "refreshed":
            expires = data.get("expiresAt")
            self._emit(TokenRefreshed(float(expires) if expires is not None else None))

    def _may_retry(self, sub: Subscription[Any]) -> bool:
        return self._max_retries is None or sub._retry.attempts < self._max_retries

    async def _subscribe_again(self, ws: ClientConnection, sub: Subscription[Any]) -> None:
        """The server could not read the history to start ``sub`` (``history_unavailable``):
        ask again after a back-off, from the same position (nothing was delivered since)."""
        sub._sent_on = None  # the server does not have it: not unsubscribed, sent again
        await asyncio.sleep(sub._retry.next())
        if self._ws is ws:  # else the next connection sends it with the others
            await self._send_subscription(ws, sub)

    # -- tokens -------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _can_renew(self) -> bool:
        return self._token_source is not None and not isinstance(self._token_source, str)

    async def _call_token(self) -> str:
        source = self._token_source
        if source is None or isinstance(source, str):
            raise RuntimeError("no token callback")
        result = source()
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, str) or not result:
            raise TypeError("the token callback must return a non-empty string")
        return result

    async def _token_for_attempt(self, new_token: bool) -> bool:
        """Ask the callback for a token when there is none yet, the last one was refused
        (``new_token``), or it is about to expire; True if this attempt's token was fetched.

        Raises:
            _NoToken: the callback failed.
        """
        if not self._can_renew():
            return False
        exp = token_expiry(self._token) if self._token else None
        stale = exp is not None and exp - time.time() < _MIN_REFRESH_PAUSE
        if not (new_token or self._token is None or stale):
            return False
        try:
            self._token = await self._call_token()
        except Exception as exc:
            raise _NoToken(f"the token callback failed: {exc}") from exc
        return True

    async def _refresher(self, ws: ClientConnection) -> None:
        """Before each exp, ask the callback for a token and hand it over with ``refresh``."""
        if not self._can_renew():
            return
        sent = 0
        pause = 0.0  # after a try, failed or not, at least _MIN_REFRESH_PAUSE to the next
        while True:
            exp = token_expiry(self._token) if self._token else None
            if exp is None:
                return
            remaining = exp - time.time()
            delay = remaining - min(self._refresh_margin, remaining / 2)
            await asyncio.sleep(max(pause, delay))
            pause = _MIN_REFRESH_PAUSE
            try:
                token = await self._call_token()
            except Exception:
                logger.exception("the token callback failed; trying again")
                continue
            sent += 1
            self._token = token  # also what a reconnect uses
            await self._send(ws, command("refresh", token=token, id=f"refresh-{sent}"))


def mux_url(url: str) -> str:
    """The ``/ws`` endpoint of the server at ``url`` (``http(s)://`` taken as ``ws(s)://``).

    Raises:
        ValueError: a scheme other than ws, wss, http, https.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the server URL must be ws:// or wss://, not {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _json_value(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise TypeError(f"a filter value is a string, number, boolean or list, not {value!r}")


def _since(value: Position | str | int | None) -> Position | int | None:
    if isinstance(value, str):
        return Position.parse(value) if ":" in value else int(value)
    return value


def _refusal(body: bytes | bytearray | None) -> tuple[str, str]:
    """The ``error`` and ``detail`` of a refused upgrade's JSON body, as far as there are any."""
    try:
        data = orjson.loads(bytes(body or b""))
    except orjson.JSONDecodeError:
        return "http_error", bytes(body or b"").decode(errors="replace")[:200]
    if not isinstance(data, dict):
        return "http_error", ""
    return str(data.get("error", "http_error")), str(data.get("detail", ""))


def _command_error(data: Mapping[str, Any]) -> StreamClientError:
    return CommandError(str(data.get("error", "error")), str(data.get("detail", "")))
