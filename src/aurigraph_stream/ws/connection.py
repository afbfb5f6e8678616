"""One WebSocket connection: the asyncio glue around a sans-I/O :class:`Session`.

uvicorn accepts each socket and asks :class:`Accept` (``uvicorn.Config(http=...)``)
for its protocol: a :class:`Connection`. When the first read is one whole upgrade
head, the connection answers it itself; anything else (plain HTTP for the FastAPI
app on the same port, a head split over reads) goes to uvicorn's HTTP protocol,
which hands a WebSocket upgrade back to a new :class:`Connection`
(``uvicorn.Config(ws=...)``). So the common connect builds no HTTP parser and
parses its head once (docs/benchmarks.md, finding 4).

The connection only moves bytes between the socket and its session, arms the
session's timer, and acts on the session's events: it routes an upgrade
(:mod:`.upgrade`), subscribes the connection to the hub, hands messages to
its handler (``/ws`` commands, :mod:`.commands`; on ``/graphql`` the
graphql-transport-ws protocol, :mod:`aurigraph_stream.gql.transport`), takes
a ``refresh`` command's new token on ``/ws`` and every ``/ws/{stream}``, and
leaves the hub when the session closes.
There is no task and no queue per connection: the hub writes frames straight
to the transport. With ``__slots__`` an idle connection is a few hundred
bytes of Python objects plus the transport.

Input is taken one bounded turn at a time. When a read holds more than the
session parses in one call, the connection stops reading the socket and gives
the rest a turn of its own on a later pass of the event loop (``call_soon``),
so every other connection and timer runs in between; while the client does not
read what it is sent (writing paused), its input waits. Once the session has
failed the connection (a protocol error, the inbound budgets), nothing more is
read; after a close it started otherwise, the socket is read until the client's
close reply (up to ``close_timeout``), its data messages dropped unhandled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from aurigraph_stream.access.tokens import UNRESTRICTED, Principal
from aurigraph_stream.contract import GRAPHQL_ENDPOINT, MUX_ENDPOINT, CloseCode
from aurigraph_stream.errors import AuthError, HandshakeRejected, SubscriptionError
from aurigraph_stream.gql.transport import GraphqlSocket
from aurigraph_stream.hub import Subscriber, count_frames, subscription_bytes
from aurigraph_stream.wire.deflate import negotiate
from aurigraph_stream.wire.handshake import read_upgrade_head, switching_protocols
from aurigraph_stream.ws.commands import Mux, parse_stream_command, refreshed_frame
from aurigraph_stream.ws.context import WsContext
from aurigraph_stream.ws.session import (
    Action,
    Closing,
    Event,
    HandshakeFailed,
    MessageReceived,
    Session,
    State,
    UpgradeRequest,
)
from aurigraph_stream.ws.subscribe import attach, reply
from aurigraph_stream.ws.upgrade import route_upgrade

__all__ = ["Accept", "Connection", "HttpFallback"]

logger = logging.getLogger("aurigraph_stream.connection")

_CONNECTING, _OPEN, _CLOSING, _CLOSED = State  # globals: faster to read than enum members
_NONE, _CLOSE_TRANSPORT, _ABORT = Action


class Handler(Protocol):
    """What a connection hands its messages to: /ws commands, or graphql-transport-ws."""

    def handle(self, data: str | bytes) -> None: ...

    def stop(self) -> None:
        """The connection is closing: release what the handler holds beyond the hub."""
        ...


class HttpFallback(Protocol):
    """The HTTP protocol a socket is handed to when its first read is not an upgrade head."""

    def connection_made(self, transport: asyncio.Transport) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def keep_deadline(self, when: float) -> None:
        """Carry over the request deadline (loop time) started at the accept."""
        ...


class Connection(asyncio.Protocol, Subscriber):
    __slots__ = (
        "client",
        "ctx",
        "endpoint",
        "expiry_handle",
        "fallback",
        "mux",
        "opened_at",
        "peer",
        "principal",
        "pumping",
        "server_state",
        "session",
        "timer",
        "timer_at",
        "transport",
        "turn",
        "variant",
    )

    def __init__(
        self,
        ctx: WsContext,
        config: Any = None,
        server_state: Any = None,
        app_state: Any = None,
        fallback: Callable[[], HttpFallback] | None = None,
    ) -> None:
        Subscriber.__init__(self)
        self.ctx = ctx
        self.server_state = server_state
        self.transport: asyncio.Transport | None = None
        # A fallback means the head has yet to arrive: the session keeps its deadline.
        self.session = Session(ctx.limits, head_deadline=fallback is not None)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None  # the session deadline the timer is armed for
        self.endpoint = ""  # the stream name, or "ws": its stats entry and log label
        self.peer = ""
        self.client = ""  # the client address key the per-address connection count uses
        self.opened_at = 0.0
        self.expiry_handle: asyncio.TimerHandle | None = None  # closes at the token's exp
        self.principal: Principal = UNRESTRICTED  # who the token says the client is
        self.variant: tuple[str, int] = ("json", 0)  # format and deflate window, once open
        # On /ws: the subscriptions and their commands; on /graphql, the protocol's state.
        self.mux: Handler | None = None
        self.pumping = False  # in _pump: a close from a handler leaves the pump to it
        self.turn: asyncio.Handle | None = None  # the next turn of input already read
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
        if self.session.deadline is not None:  # the head's deadline (slowloris)
            self.timer_at = self.session.deadline
            self.timer = asyncio.get_running_loop().call_later(
                self.ctx.limits.handshake_timeout, self._fire
            )

    def data_received(self, data: bytes) -> None:
        session = self.session
        fallback = self.fallback
        request = None
        if fallback is not None:  # the first read: a strict, whole upgrade head, or uvicorn's
            self.fallback = None
            request = read_upgrade_head(data, self.ctx.settings.max_head_size)
            if request is None:
                self._to_http(fallback, data, session.deadline)
                return
        try:
            if request is None:
                session.receive_data(data)
            else:
                session.receive_head(request)
        except Exception:
            self._failed()
        self._pump()
        if session.input_pending:
            self._hold_input()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.receive_eof()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.turn is not None:
            self.turn.cancel()
            self.turn = None
        if self.expiry_handle is not None:
            self.expiry_handle.cancel()
            self.expiry_handle = None
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        if self.mux is not None:
            self.mux.stop()
        ctx = self.ctx
        if self in ctx.open:  # it was opened
            ctx.open.discard(self)
            ctx.guard.closed(self.client)
            ctx.node.hub.unsubscribe(self)  # idempotent: a close took it out already
            self.counters.connections -= 1
            ctx.node.stats.closes[self.session.close_code] += 1
            # Fields as extra=: key=value in text logs, keys in JSON logs (ops/logs.py).
            logger.info(
                "close",
                extra={
                    "endpoint": self.endpoint,
                    "client": self._client_label(),
                    "duration_s": round(time.monotonic() - self.opened_at, 3),
                    "code": self.session.close_code,
                },
            )
        # Break this connection's reference cycles (transport <-> protocol,
        # subscriptions <-> subscriber) so reference counting alone frees it:
        # the node freezes long-lived objects out of the cyclic collector.
        self.transport = None
        self.mux = None

    def pause_writing(self) -> None:
        # The transport's buffer passed its high-water mark: latest-wins
        # subscriptions now keep only their newest frame (Hub.publish).
        self.paused = True

    def resume_writing(self) -> None:
        if self.session.state is _OPEN:
            self.ctx.node.hub.resume(self)
        else:
            self.paused = False
        if self.session.input_pending:  # its input waited for the client to read
            self._hold_input()

    # -- uvicorn --------------------------------------------------------------
    def shutdown(self) -> None:
        """Called by uvicorn on SIGTERM/SIGINT: close 1001 and let the client go."""
        if self.session.state is _OPEN:
            self.close(CloseCode.GOING_AWAY)
        elif self.session.state is _CONNECTING and self.transport is not None:
            self.transport.close()

    # -- Subscriber (called by the hub) ---------------------------------------
    def write_frames(self, frames: bytes | list[bytes]) -> None:
        transport = self.transport
        if self.session.state is not _OPEN or transport is None:
            self.counters.failed_sends += count_frames(frames)
            return
        if isinstance(frames, bytes):
            transport.write(frames)
        else:
            transport.writelines(frames)

    def buffered_size(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def overflow(self) -> None:
        self.counters.slow_disconnects += 1
        self.close(CloseCode.SLOW_CONSUMER)

    def _slow(self) -> None:
        """Over ``max_buffered_bytes`` unsent: closed as the hub closes a slow subscriber."""
        self.ctx.node.hub.unsubscribe(self)  # drops its pending frames, counted as failed
        self.overflow()

    # -- keepalive (ws/keepalive.py) -------------------------------------------
    def ping(self) -> bool:
        sent = self.session.ping()
        if sent:
            self._pump()
        return sent

    def check_pong(self, sent_by: float) -> None:
        if self.session.check_pong(sent_by):
            self.counters.keepalive_disconnects += 1
            self._pump()

    # -- closing --------------------------------------------------------------
    def close(self, code: CloseCode, reason: str | None = None) -> None:
        """Start the closing handshake: stop deliveries, send close, await the reply.

        Frames the hub queued for this tick go out first: a reply queued just before a
        close (a pong before a protocol's close, say) is not lost behind it.
        """
        pending = self.pending
        if pending is not None and self.session.state is _OPEN:
            self.pending = None
            self.write_frames(pending)
        self.session.close(code, reason)
        self._pump()

    def _unavailable(self, exc: SubscriptionError) -> None:
        """The starting point could not be loaded: the broker did not answer, and the client
        retries later (1013), or the server failed to load it (1011)."""
        internal = exc.error == "internal_error"
        self.close(CloseCode.INTERNAL_ERROR if internal else CloseCode.TRY_AGAIN_LATER)

    def _client_label(self) -> str:
        """The client as logs name it: the address the limits count (behind a trusted
        proxy, the one in X-Forwarded-For), and the TCP peer when that differs."""
        client = self.client
        if not client or self.peer.startswith(client + ":") or self.peer == client:
            return self.peer
        return client

    def _expire(self) -> None:
        """The token's exp (+ grace) has passed: access ends now, not at the next reconnect."""
        self.expiry_handle = None
        self.close(CloseCode.TOKEN_EXPIRED)

    def _authorized(self, principal: Principal) -> None:
        """Act as ``principal`` from now on; close when its token expires (plus the grace).

        A token without exp never closes the connection.
        """
        self.principal = principal
        if self.expiry_handle is not None:
            self.expiry_handle.cancel()
            self.expiry_handle = None
        if principal.expires_at is not None:
            delay = principal.expires_at + self.ctx.settings.auth_expiry_grace - time.time()
            self.expiry_handle = asyncio.get_running_loop().call_later(
                max(0.0, delay), self._expire
            )

    # -- refresh ----------------------------------------------------------------
    def _stream_command(self, data: str | bytes) -> None:
        """A data message on /ws/{stream}: a refresh command, or nothing to act on."""
        try:
            command = parse_stream_command(data)
        except SubscriptionError:
            self._refused_refresh("invalid_command")
            return
        if command is not None:
            self._refresh(*command)

    def _refresh(self, token: str, ref: str | None) -> None:
        """Take a new token for the same subject: a new expiry, and the new token's streams.

        On /ws a subscription to a stream it no longer grants ends (unsubscribed,
        reason forbidden); on /ws/{stream} the connection closes with 4003.
        """
        try:
            principal = self.ctx.guard.refresh(self.principal, token)
        except AuthError as exc:
            self._refused_refresh(exc.error)
            return
        self._authorized(principal)
        if isinstance(self.mux, Mux):
            self.mux.revoke(principal.can_read)
            self.mux.refreshed(principal.expires_at, ref)
        elif principal.can_read(self.endpoint):
            codec, bits = self.variant
            reply(self.ctx.node, self, codec, bits, refreshed_frame(principal.expires_at, ref))
        else:
            self.close(CloseCode.FORBIDDEN)

    def _refused_refresh(self, error: str) -> None:
        # An audit line, as for a refused handshake; the token itself is never logged.
        logger.info("refresh refused", extra={"client": self.peer, "error": error})
        self.close(CloseCode.TOKEN_EXPIRED, "invalid token on refresh")

    # -- driving the session ----------------------------------------------------
    def _pump(self) -> None:
        """Act on what the session produced: events, bytes to write, the transport, its timer.

        A handler that closes the connection while its message is handled calls
        back in here: that call returns at once, and this one acts on the close.
        """
        if self.pumping:
            return
        session = self.session
        self.pumping = True
        try:
            events = session.events_received()
            while events:  # handling an event may produce more (a handler's close)
                for event in events:
                    self._handle(event)
                events = session.events_received()
        except Exception:
            self._failed()
            for event in session.events_received():
                self._handle(event)
        finally:
            self.pumping = False
        transport = self.transport
        if transport is None:
            return
        out = session.data_to_send()
        if out:
            if (
                self.paused
                and session.state is _OPEN
                and transport.get_write_buffer_size() > self.ctx.settings.max_buffered_bytes
            ):
                # Pongs (and pings) to a client that reads nothing: the bound the hub's
                # flush keeps for frames, kept for the session's own output too.
                self._slow()
                return
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
        if session.deadline != self.timer_at:  # the session wants its timer moved
            self._arm()
        action = session.transport_action
        if action:
            if action is _ABORT:
                transport.abort()
            elif not transport.is_closing():
                self._close_transport(transport)

    def _close_transport(self, transport: asyncio.Transport) -> None:
        """Read nothing more, close once the close frame is out, and abort if it never is."""
        transport.pause_reading()
        transport.close()
        if transport.get_write_buffer_size():
            # A client that reads nothing would keep the socket, and its buffer, for ever.
            self.timer = asyncio.get_running_loop().call_later(
                self.ctx.limits.close_timeout, transport.abort
            )

    def _failed(self) -> None:
        """A bug while serving this connection (call it from an ``except`` block): logged,
        it costs this one client an answer, not a silently dropped socket."""
        logger.exception("connection failed", extra={"client": self.peer})
        self.session.fail_internal()

    def _hold_input(self) -> None:
        """Stop reading the socket; input already read gets a turn of its own, later."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.pause_reading()
        if self.turn is None and not self.paused:
            self.turn = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self.turn = None
        session = self.session
        try:
            session.resume_input()
        except Exception:
            self._failed()
        self._pump()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if session.input_pending:
            self._hold_input()
        else:
            transport.resume_reading()

    def _handle(self, event: Event) -> None:
        if type(event) is MessageReceived:
            if self.session.state is not _OPEN:
                return  # a command that arrived with (or after) a close we sent
            if self.mux is not None:
                self.mux.handle(event.data)
            else:  # on a stream endpoint only refresh means something
                self._stream_command(event.data)
        elif type(event) is Closing:
            self.ctx.node.hub.unsubscribe(self)
            if self.mux is not None:
                self.mux.stop()
            if event.cause == "protocol_error":
                self.counters.protocol_errors += 1
        elif type(event) is UpgradeRequest:
            self._upgrade(event)
        elif type(event) is HandshakeFailed:
            self._refused(event.rejected)

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.timer_at = self.session.deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            # The session's clock is time.monotonic, the loop's may differ by an offset.
            self.timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.timer_at = None
        self.session.tick()
        self._pump()  # re-arms if the deadline is still ahead (a timer that fired early)

    # -- the opening handshake ------------------------------------------------
    def _to_http(
        self, fallback: Callable[[], HttpFallback], data: bytes, deadline: float | None
    ) -> None:
        """Give the socket to uvicorn's HTTP protocol, as if it had been there from the start.

        The request keeps the deadline that started when the socket was accepted.
        """
        transport = self.transport
        assert transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.session.receive_eof()  # done: this protocol is no longer the socket's
        self.transport = None
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        protocol = fallback()
        transport.set_protocol(cast(asyncio.BaseProtocol, protocol))
        protocol.connection_made(transport)
        if deadline is not None:
            protocol.keep_deadline(asyncio.get_running_loop().time() + deadline - time.monotonic())
        protocol.data_received(data)

    def _refused(self, exc: HandshakeRejected) -> None:
        self.ctx.node.stats.refused[exc.error] += 1
        logger.info(
            "refused", extra={"client": self.peer, "status": exc.status, "reason": exc.error}
        )

    def _upgrade(self, event: UpgradeRequest) -> None:
        ctx = self.ctx
        session = self.session
        request = event.request
        settings = ctx.settings
        try:
            route = route_upgrade(ctx.guard, request, self.peer, ctx.admit)
            wanted = route.subscription
            if wanted is not None:
                cost = subscription_bytes(wanted.filter)
                if cost > settings.max_connection_memory:  # a query string as long as a head
                    raise HandshakeRejected(
                        400,
                        "memory_budget_exceeded",
                        f"this subscription would hold about {cost} bytes; a connection's "
                        f"subscriptions may hold {settings.max_connection_memory}",
                    )
        except HandshakeRejected as exc:
            session.reject(exc)
            self._refused(exc)
            return
        offer = request.header("sec-websocket-extensions")
        negotiated = negotiate(offer) if settings.compression else None
        bits = negotiated[0] if negotiated else 0
        session.accept(
            switching_protocols(
                event.key, negotiated[1] if negotiated else None, route.subprotocol
            ),
            deflate=bits > 0,
        )
        node = ctx.node
        transport = self.transport
        assert transport is not None
        # The hub checks the exact backlog only once the transport pauses writing,
        # so pausing must start at or below the slow-consumer cap.
        transport.set_write_buffer_limits(high=min(65536, settings.max_buffered_bytes))
        self.endpoint = route.endpoint
        self.counters = counters = node.stats.endpoints[route.endpoint]
        self.opened_at = time.monotonic()
        self.client = route.client
        ctx.guard.opened(route.client)
        ctx.open.add(self)
        counters.connections += 1
        counters.connects += 1
        principal = route.principal
        self.variant = (route.format, bits)
        self._authorized(principal)
        if route.endpoint == MUX_ENDPOINT:
            self.mux = Mux(
                node,
                self,
                principal.can_read,
                route.format,
                bits,
                settings.max_subscriptions,
                budget=settings.max_connection_memory,
                refresh=self._refresh,
            )
        elif route.endpoint == GRAPHQL_ENDPOINT:
            self.mux = GraphqlSocket(
                ctx.graphql,
                self,
                bits,
                principal,
                request.headers,
                close=self.close,
                authorized=self._authorized,
            )
        elif route.subscription is None:
            node.hub.subscribe(self, route.endpoint, (route.format, bits))
        else:
            attach(node, self, route.subscription, route.format, bits, failed=self._unavailable)
        logger.info(
            "open",
            extra={
                "endpoint": route.endpoint,
                "client": self._client_label(),
                "deflate": bool(bits),
                "format": route.format,
            },
        )


class Accept:
    """The protocol factory uvicorn calls for every accepted socket (``Config(http=...)``).

    Each socket gets a :class:`Connection`, able to fall back to ``http_class``
    (uvicorn's HTTP protocol, bound once to uvicorn's shared state).
    """

    __slots__ = ("_fallback", "_state", "ctx", "http_class")

    def __init__(self, ctx: WsContext, http_class: Callable[..., HttpFallback]) -> None:
        self.ctx = ctx
        self.http_class = http_class
        self._fallback: Callable[[], HttpFallback] | None = None
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
        return Connection(self.ctx, server_state=server_state, fallback=fallback)
