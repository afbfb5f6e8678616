"""One WebSocket connection: a lean asyncio protocol, the first one on every socket.

uvicorn accepts each socket and asks :class:`Accept` (``uvicorn.Config(http=...)``)
for its protocol: a :class:`Connection`. When the first read is one whole upgrade
head, the connection answers it itself; anything else (plain HTTP for the FastAPI
app on the same port, a head split over reads) goes to uvicorn's HTTP protocol,
which hands a WebSocket upgrade back to a new :class:`Connection`
(``uvicorn.Config(ws=...)``). So the common connect builds no HTTP parser and
parses its head once (docs/benchmarks.md, finding 4). There is no task and no
queue per connection: the hub writes frames straight to the transport, and
inbound bytes are parsed in :meth:`data_received`. With ``__slots__`` an idle
connection is a few hundred bytes of Python objects plus the transport.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aurigraph_stream.errors import CloseCode, HandshakeRejected, ProtocolError
from aurigraph_stream.hub import Subscriber, Subscription, count_frames
from aurigraph_stream.server.auth import UNRESTRICTED
from aurigraph_stream.server.httpproto import (
    GuardedHttpProtocol,
    request_timeout,
    whole_upgrade_head,
)
from aurigraph_stream.server.ratelimit import TokenBucket
from aurigraph_stream.server.subscribe import MUX_ENDPOINT, handle_command
from aurigraph_stream.server.upgrade import route_upgrade
from aurigraph_stream.wire.deflate import negotiate
from aurigraph_stream.wire.frames import Opcode, close_frame, encode_frame, parse_close
from aurigraph_stream.wire.handshake import (
    check_upgrade,
    http_error,
    parse_request,
    switching_protocols,
)
from aurigraph_stream.wire.reader import Reader

if TYPE_CHECKING:
    from aurigraph_stream.server.runtime import Runtime

__all__ = ["Accept", "Connection"]

logger = logging.getLogger("aurigraph_stream.connection")

_PING = encode_frame(Opcode.PING, b"keepalive")


class State(enum.IntEnum):
    HANDSHAKE, OPEN, CLOSING, CLOSED = range(4)


class Connection(asyncio.Protocol, Subscriber):
    __slots__ = (
        "awaiting_pong",
        "client",
        "close_code",
        "close_handle",
        "deflate_bits",
        "expiry_handle",
        "fallback",
        "format",
        "inbound",
        "mux",
        "opened_at",
        "peer",
        "principal",
        "reader",
        "runtime",
        "server_state",
        "state",
        "transport",
    )

    def __init__(
        self,
        runtime: Runtime,
        config: Any = None,
        server_state: Any = None,
        app_state: Any = None,
        fallback: Callable[[], GuardedHttpProtocol] | None = None,
    ) -> None:
        Subscriber.__init__(self)
        self.runtime = runtime
        self.server_state = server_state
        self.transport: asyncio.Transport | None = None
        self.state = State.HANDSHAKE
        self.reader: Reader | None = None
        self.deflate_bits = 0
        self.peer = ""
        self.opened_at = 0.0
        self.awaiting_pong = 0.0  # loop time of the unanswered ping, 0 if none
        self.close_code = 1006
        self.close_handle: asyncio.TimerHandle | None = None
        self.principal = UNRESTRICTED  # who the client is: set from the Route at the handshake
        self.client = ""  # the client address key the per-address connection count uses
        self.expiry_handle: asyncio.TimerHandle | None = None  # closes at the token's exp
        self.inbound: TokenBucket | None = None  # inbound message rate; made on first message
        self.format = "json"  # codec of every frame sent (codecs.CODECS)
        self.mux: dict[str, Subscription] | None = None  # on /ws: subscriptions by id
        # The HTTP protocol to hand the socket to if its first read is not a whole
        # upgrade head; None once read, or when uvicorn already parsed the head.
        self.fallback = fallback

    # -- asyncio.Protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        if self.server_state is not None:
            self.server_state.connections.add(self)
        if self.fallback is not None:
            # The handshake deadline (slowloris); the abort timer's slot is free until closing.
            self.close_handle = asyncio.get_running_loop().call_later(
                self.runtime.settings.handshake_timeout, self._head_expired
            )

    def data_received(self, data: bytes) -> None:
        if self.state is State.HANDSHAKE:
            fallback = self.fallback
            if fallback is not None:
                self.fallback = None
                deadline = self.close_handle
                self.close_handle = None
                if deadline is not None:
                    deadline.cancel()
                if not whole_upgrade_head(data, self.runtime.settings.max_head_size):
                    self._to_http(fallback, data, deadline.when() if deadline else None)
                    return
            try:
                self._handshake(data)
            except Exception:
                # A bug costs this one client an answer, not a silently dropped socket.
                logger.exception("upgrade failed", extra={"client": self.peer})
                self._internal_error()
            return
        if self.state is State.CLOSED:
            return
        if self.reader is None and _is_lone_pong(data):
            # The common keepalive answer: no reader, no allocation, and it does
            # not count against the client's inbound message rate.
            self.awaiting_pong = 0.0
            return
        settings = self.runtime.settings
        if self.reader is None:
            self.reader = Reader(
                settings.max_frame_size, settings.max_message_size, self.deflate_bits > 0
            )
        try:
            messages = self.reader.feed(data)
        except ProtocolError as exc:
            # Count the connection's failure once: what follows a bad frame (its
            # payload, say) may not parse either, and is not another error.
            if self.state is State.OPEN:
                self.runtime.stats.endpoints[self.stream].protocol_errors += 1
                self.close(exc.code, exc.reason)
            self.reader = None
            self._fail()
            return
        if messages and settings.inbound_message_rate > 0 and self.state is State.OPEN:
            if self.inbound is None:
                self.inbound = TokenBucket(
                    settings.inbound_message_rate, settings.inbound_message_burst, time.monotonic()
                )
            if self.inbound.take(time.monotonic(), len(messages)):
                self.close(CloseCode.TOO_MANY_MESSAGES)
                self.reader = None
                return
        for opcode, payload in messages:
            if opcode == Opcode.PING and self.state is State.OPEN:
                assert isinstance(payload, bytes)
                self._write(encode_frame(Opcode.PONG, payload))
            elif opcode == Opcode.PONG:
                self.awaiting_pong = 0.0
            elif opcode == Opcode.CLOSE:
                assert isinstance(payload, bytes)
                self._on_close_frame(payload)
                return
            elif self.mux is not None and self.state is State.OPEN:
                self._command(payload)
            # Data messages on a stream endpoint carry no meaning: ignored.

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self.state in (State.OPEN, State.CLOSING)
        self.state = State.CLOSED
        if self.close_handle is not None:
            self.close_handle.cancel()
            self.close_handle = None
        if self.expiry_handle is not None:
            self.expiry_handle.cancel()
            self.expiry_handle = None
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        if was_open:
            self.runtime.guard.closed(self.client)
            self.runtime.connection_closed(self)
            # Fields as extra=: key=value in text logs, keys in JSON logs (server/logs.py).
            logger.info(
                "close",
                extra={
                    "endpoint": self.stream,
                    "client": self.peer,
                    "duration_s": round(time.monotonic() - self.opened_at, 3),
                    "code": self.close_code,
                },
            )
        # Break this connection's reference cycles (transport <-> protocol,
        # subscriptions <-> subscriber) so reference counting alone frees it:
        # the runtime freezes long-lived objects out of the cyclic collector.
        self.transport = None
        self.mux = None
        self.reader = None

    def pause_writing(self) -> None:
        # The transport's buffer passed its high-water mark: latest-wins
        # subscriptions now keep only their newest frame (Hub.publish).
        self.paused = True

    def resume_writing(self) -> None:
        if self.state is State.OPEN:
            self.runtime.hub.resume(self)
        else:
            self.paused = False

    # -- /ws commands -----------------------------------------------------------
    def _command(self, payload: bytes | str) -> None:
        assert self.mux is not None
        handle_command(
            self.runtime,
            self,
            self.mux,
            self.principal.can_read,
            self.format,
            self.deflate_bits,
            payload,
        )

    # -- uvicorn --------------------------------------------------------------
    def shutdown(self) -> None:
        """Called by uvicorn on SIGTERM/SIGINT: close 1001 and let the client go."""
        if self.state is State.OPEN:
            self.close(CloseCode.GOING_AWAY)
        elif self.state is State.HANDSHAKE and self.transport is not None:
            self.transport.close()

    # -- Subscriber (called by the hub) ---------------------------------------
    def write_frames(self, frames: bytes | list[bytes]) -> None:
        transport = self.transport
        if self.state is not State.OPEN or transport is None:
            self.runtime.stats.endpoints[self.stream].failed_sends += count_frames(frames)
            return
        if isinstance(frames, bytes):
            transport.write(frames)
        else:
            transport.writelines(frames)

    def buffered_size(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def overflow(self) -> None:
        self.runtime.stats.endpoints[self.stream].slow_disconnects += 1
        self.close(CloseCode.SLOW_CONSUMER)

    # -- keepalive (called by the runtime's sweep) ----------------------------
    def ping(self, now: float) -> bool:
        """Send a keepalive ping unless one is outstanding; True if sent."""
        if self.state is not State.OPEN or self.awaiting_pong:
            return False
        self.awaiting_pong = now
        self._write(_PING)
        return True

    def check_pong(self, deadline: float) -> None:
        """Close if a ping sent at or before ``deadline`` is still unanswered."""
        if self.state is State.OPEN and 0 < self.awaiting_pong <= deadline:
            self.runtime.stats.endpoints[self.stream].keepalive_disconnects += 1
            self.close(CloseCode.KEEPALIVE_TIMEOUT)

    # -- closing --------------------------------------------------------------
    def close(self, code: CloseCode, reason: str | None = None) -> None:
        """Start the closing handshake: stop deliveries, send close, await the reply."""
        if self.state is not State.OPEN or self.transport is None:
            return
        self.state = State.CLOSING
        self.close_code = int(code)
        self.runtime.hub.unsubscribe(self)
        self.transport.write(close_frame(code, reason or code.reason))
        loop = asyncio.get_running_loop()
        self.close_handle = loop.call_later(self.runtime.settings.close_timeout, self._abort)

    def _on_close_frame(self, payload: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.state is State.OPEN:
            try:
                code, _ = parse_close(payload)
            except ProtocolError as exc:
                self.runtime.stats.endpoints[self.stream].protocol_errors += 1
                self.close(exc.code, exc.reason)
                self._fail()
                return
            self.close_code = code
            self.state = State.CLOSING
            self.runtime.hub.unsubscribe(self)
            # Echo the code (RFC 6455 5.5.1); an empty close is echoed empty.
            transport.write(encode_frame(Opcode.CLOSE, payload[:2]))
        transport.close()

    def _fail(self) -> None:
        """After a protocol error: send what is queued (the close frame), then drop the socket.

        RFC 6455 7.1.7: once it fails the connection, the server must not read the
        client's data any more, not even a close reply.
        """
        if self.transport is not None:
            self.transport.close()

    def _expire(self) -> None:
        """The token's exp (+ grace) has passed: access ends now, not at the next reconnect."""
        self.expiry_handle = None
        self.close(CloseCode.TOKEN_EXPIRED)

    def _abort(self) -> None:
        self.close_handle = None
        if self.transport is not None and self.state is not State.CLOSED:
            self.transport.abort()

    def _write(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)

    # -- handshake ------------------------------------------------------------
    def _to_http(
        self, fallback: Callable[[], GuardedHttpProtocol], data: bytes, deadline: float | None
    ) -> None:
        """Give the socket to uvicorn's HTTP protocol, as if it had been there from the start.

        The request keeps the deadline that started when the socket was accepted.
        """
        transport = self.transport
        assert transport is not None
        self.state = State.CLOSED
        self.transport = None
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        protocol = fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if deadline is not None:
            protocol.keep_deadline(deadline)
        protocol.data_received(data)

    def _internal_error(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.state is State.HANDSHAKE:
            self.state = State.CLOSED
            failure = HandshakeRejected(500, "internal_error", "the server failed the upgrade")
            transport.write(http_error(failure))
            transport.close()
        elif self.state is State.OPEN:  # the 101 went out: close as a WebSocket
            self.close(CloseCode.INTERNAL_ERROR)
        else:
            transport.abort()

    def _head_expired(self) -> None:
        self.close_handle = None
        transport = self.transport
        if self.state is State.HANDSHAKE and transport is not None:
            transport.write(request_timeout(self.runtime.settings.handshake_timeout))
            transport.close()

    def _handshake(self, raw: bytes) -> None:
        transport = self.transport
        assert transport is not None
        runtime = self.runtime
        try:
            request = parse_request(raw)
            key = check_upgrade(request)
            route = route_upgrade(runtime, request, self.peer)
        except HandshakeRejected as exc:
            runtime.stats.refused[exc.error] += 1
            logger.info(
                "refused", extra={"client": self.peer, "status": exc.status, "reason": exc.error}
            )
            transport.write(http_error(exc))
            transport.close()
            self.state = State.CLOSED
            return
        settings = runtime.settings
        negotiated = (
            negotiate(request.header("sec-websocket-extensions"))
            if (settings.compression)
            else None
        )
        self.deflate_bits = negotiated[0] if negotiated else 0
        transport.write(
            switching_protocols(key, negotiated[1] if negotiated else None, route.subprotocol)
        )
        self.state = State.OPEN
        # The hub checks the exact backlog only once the transport pauses writing,
        # so pausing must start at or below the slow-consumer cap.
        transport.set_write_buffer_limits(high=min(65536, settings.max_buffered_bytes))
        self.stream = route.endpoint  # its stats entry and log label; the hub's too
        self.format = route.format
        if route.endpoint == MUX_ENDPOINT:
            self.mux = {}
        self.opened_at = time.monotonic()
        self.principal = route.principal
        self.client = route.client
        runtime.guard.opened(route.client)
        if route.principal.expires_at is not None:
            delay = route.principal.expires_at + settings.auth_expiry_grace - time.time()
            self.expiry_handle = asyncio.get_running_loop().call_later(
                max(0.0, delay), self._expire
            )
        runtime.connection_opened(
            self, route.endpoint, (route.format, self.deflate_bits), route.subscription
        )
        logger.info(
            "open",
            extra={
                "endpoint": route.endpoint,
                "client": self.peer,
                "deflate": bool(self.deflate_bits),
                "format": route.format,
            },
        )


def _is_lone_pong(data: bytes) -> bool:
    """Whether ``data`` is exactly one masked, final pong frame (payload under 126 bytes)."""
    return (
        len(data) >= 6
        and data[0] == 0x8A  # FIN, no reserved bits, PONG
        and data[1] & 0x80 != 0  # masked
        and len(data) == 6 + (data[1] & 0x7F)
        and data[1] & 0x7F < 126
    )


class Accept:
    """The protocol factory uvicorn calls for every accepted socket (``Config(http=...)``).

    Each socket gets a :class:`Connection`, able to fall back to ``http_class``
    (uvicorn's HTTP protocol, bound once to uvicorn's shared state).
    """

    __slots__ = ("_fallback", "_state", "http_class", "runtime")

    def __init__(self, runtime: Runtime, http_class: type[GuardedHttpProtocol]) -> None:
        self.runtime = runtime
        self.http_class = http_class
        self._fallback: Callable[[], GuardedHttpProtocol] | None = None
        self._state: Any = None  # the uvicorn server state the fallback is bound to

    def __call__(
        self, config: Any, server_state: Any, app_state: Any, _loop: Any = None
    ) -> Connection:
        fallback = self._fallback
        # uvicorn passes the same state for every socket of one server run.
        if fallback is None or server_state is not self._state:
            self._state = server_state
            fallback = self._fallback = functools.partial(
                self.http_class,
                config=config,
                server_state=server_state,
                app_state=app_state,
                _loop=_loop,
            )
        return Connection(self.runtime, server_state=server_state, fallback=fallback)
