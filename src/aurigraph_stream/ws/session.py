"""One WebSocket connection's protocol state machine, without I/O.

Bytes and clock readings go in; events and bytes to send come out. The
asyncio glue (:mod:`.connection`) only moves bytes, arms one timer at
:attr:`Session.deadline`, and reacts to the events, as python-websockets'
``protocol.py`` is driven by its ``asyncio`` layer. So every rule below is
unit-tested by feeding bytes and reading frames, with no socket.

States::

    CONNECTING --accept()--> OPEN --close()/peer close--> CLOSING --EOF/abort--> CLOSED
        |                      |                             ^
        +--reject()------------+--fail(): protocol error ----+ (input discarded from here)

After each call, the caller must:

1. write :meth:`data_to_send` to the transport;
2. act on :meth:`events_received`;
3. close the transport when :attr:`transport_action` says ``CLOSE`` (after
   writing), abort it on ``ABORT``; in both cases read nothing more from it;
4. arm its timer for :attr:`deadline`, and call :meth:`tick` when it fires;
5. while :attr:`input_pending`, stop reading the transport and call
   :meth:`resume_input` on a later turn of its event loop.

Inbound work is budgeted. Every frame, data or control, takes a token from the
frame budget (``frame_rate``/``frame_burst``) and every message one from the
message budget; over either, the connection is closed with 4029. The pong that
answers our keepalive ping is the exception: it costs neither. One call parses
at most :data:`TURN_FRAMES` frames and :data:`TURN_MESSAGES` data messages and
keeps the rest for :meth:`resume_input`, so one client's read, however full of
tiny frames or commands, costs the event loop a bounded slice of time.

The hub writes fan-out frames straight to the transport, bypassing the
session: they are shared bytes, and the session only decides whether the
connection is :attr:`_OPEN` to receive them.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from aurigraph_stream.access.ratelimit import TokenBucket
from aurigraph_stream.config import Settings
from aurigraph_stream.contract import CloseCode
from aurigraph_stream.errors import HandshakeRejected, ProtocolError
from aurigraph_stream.wire.frames import Opcode, close_frame, encode_frame, parse_close
from aurigraph_stream.wire.handshake import (
    Request,
    check_upgrade,
    http_error,
    parse_request,
    request_timeout,
)
from aurigraph_stream.wire.reader import Message, Reader

__all__ = [
    "Action",
    "Closing",
    "Event",
    "HandshakeFailed",
    "MessageReceived",
    "Session",
    "SessionLimits",
    "State",
    "UpgradeRequest",
]

PING = encode_frame(Opcode.PING, b"keepalive")

# What one call may parse: at most this many frames and data messages. The rest
# waits for resume_input, a later turn of the caller's event loop.
TURN_FRAMES = 64
TURN_MESSAGES = 1
_NO_LIMIT = sys.maxsize


class State(enum.IntEnum):
    CONNECTING, OPEN, CLOSING, CLOSED = range(4)


class Action(enum.IntEnum):
    """What the caller must do with the transport."""

    NONE = 0
    CLOSE = 1  # close it once what was written is sent
    ABORT = 2  # drop it now


# Module constants: reading an enum member off its class costs ten times a global here,
# and these are read on every connect and every frame.
_CONNECTING, _OPEN, _CLOSING, _CLOSED = State
_NONE, _CLOSE_TRANSPORT, _ABORT = Action


_DEFAULTS = Settings()


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The limits one session enforces: :meth:`from_settings`; unset, the settings' defaults."""

    max_frame: int = _DEFAULTS.max_frame_size
    max_message: int = _DEFAULTS.max_message_size
    max_fragments: int = _DEFAULTS.max_fragments  # frames in one message
    inbound_rate: float = _DEFAULTS.inbound_message_rate  # messages per second; 0: no limit
    inbound_burst: int = _DEFAULTS.inbound_message_burst
    frame_rate: float = _DEFAULTS.inbound_frame_rate  # frames (data, control) per second; 0: none
    frame_burst: int = _DEFAULTS.inbound_frame_burst
    close_timeout: float = _DEFAULTS.close_timeout  # seconds to wait for the peer's close reply
    handshake_timeout: float = _DEFAULTS.handshake_timeout  # seconds for the whole head

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        return cls(
            max_frame=settings.max_frame_size,
            max_message=settings.max_message_size,
            max_fragments=settings.max_fragments,
            inbound_rate=settings.inbound_message_rate,
            inbound_burst=settings.inbound_message_burst,
            frame_rate=settings.inbound_frame_rate,
            frame_burst=settings.inbound_frame_burst,
            close_timeout=settings.close_timeout,
            handshake_timeout=settings.handshake_timeout,
        )


# -- events (tuples: one is made per connect and per command) -------------------------
class UpgradeRequest(NamedTuple):
    """A valid upgrade head: the caller decides, then calls accept() or reject()."""

    request: Request
    key: str


class HandshakeFailed(NamedTuple):
    """The head was refused (malformed, or not an upgrade); the refusal is already written."""

    rejected: HandshakeRejected


class MessageReceived(NamedTuple):
    """A complete data message from the client: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


class Closing(NamedTuple):
    """The connection stopped being OPEN: stop delivering to it.

    ``code`` is the close code sent or received; ``cause`` says why:
    ``"peer"`` (the client closed), ``"server"`` (:meth:`Session.close`),
    ``"protocol_error"`` (the client broke RFC 6455/7692) or ``"rate"``
    (over the inbound frame or message budget).
    """

    code: int
    cause: str


Event = UpgradeRequest | HandshakeFailed | MessageReceived | Closing


class _Inbound:
    """The budgets of what a client sends: frames and messages (token buckets; None: off).

    Made with the frame reader, when the client first sends more than a pong.
    """

    __slots__ = ("frames", "messages")

    def __init__(self, limits: SessionLimits, now: float) -> None:
        self.frames = (
            TokenBucket(limits.frame_rate, limits.frame_burst, now)
            if limits.frame_rate > 0
            else None
        )
        self.messages = (
            TokenBucket(limits.inbound_rate, limits.inbound_burst, now)
            if limits.inbound_rate > 0
            else None
        )


class Session:
    """The protocol state of one server-side WebSocket connection."""

    __slots__ = (
        "_events",
        "_inbound",
        "_outgoing",
        "_reader",
        "awaiting_pong",
        "clock",
        "close_code",
        "deadline",
        "deflate",
        "limits",
        "state",
        "transport_action",
    )

    def __init__(
        self,
        limits: SessionLimits,
        *,
        head_deadline: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Args:
        head_deadline: the head has yet to arrive: refuse it with 408 if it
            is not complete by ``handshake_timeout`` (slowloris).
        clock: monotonic seconds; the caller's timers use the same clock.
        """
        self.limits = limits
        self.clock = clock
        self.state = _CONNECTING
        self.deflate = False
        self.close_code = 1006  # until a close frame is sent or received
        self.awaiting_pong = 0.0  # clock reading of the unanswered ping; 0 if none
        self.transport_action = _NONE
        self.deadline: float | None = clock() + limits.handshake_timeout if head_deadline else None
        self._reader: Reader | None = None  # made when the client first sends a frame
        self._inbound: _Inbound | None = None  # made with the reader
        # Lists only once there is something to hold: an idle connection allocates none.
        self._events: list[Event] | None = None
        self._outgoing: list[bytes] | None = None

    # -- output ---------------------------------------------------------------------
    def events_received(self) -> Sequence[Event]:
        """The events since the last call, oldest first."""
        events = self._events
        if events is None:
            return ()
        self._events = None
        return events

    def data_to_send(self) -> Sequence[bytes]:
        """The bytes to write since the last call, in order."""
        out = self._outgoing
        if out is None:
            return ()
        self._outgoing = None
        return out

    def _emit(self, event: Event) -> None:
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def _send(self, data: bytes) -> None:
        if self._outgoing is None:
            self._outgoing = [data]
        else:
            self._outgoing.append(data)

    # -- input ----------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Take bytes read from the socket."""
        state = self.state
        if state is _OPEN or state is _CLOSING:
            if self._reader is None and self.awaiting_pong and _is_lone_pong(data):
                # The answer to our keepalive ping: no reader, no allocation, no budget.
                # A pong nobody asked for takes the reader's path and its budget.
                self.awaiting_pong = 0.0
                return
            self._receive_frames(data)
        elif state is _CONNECTING:
            self._receive_head(data)
        # CLOSED: input after the end is discarded unread.

    @property
    def input_pending(self) -> bool:
        """Whether input already received waits for :meth:`resume_input` (a turn's cap was hit)."""
        reader = self._reader
        return reader is not None and reader.stopped

    def resume_input(self) -> None:
        """Parse the next turn's share of the input already received."""
        state = self.state
        if state is _OPEN or state is _CLOSING:
            self._receive_frames(b"")

    def receive_eof(self) -> None:
        """The socket was closed or lost: the session is over, and emits nothing more.

        The caller takes the connection out of the hub (if it was open); there is
        no event for it, since the caller is the one who saw the end.
        """
        self.state = _CLOSED
        self.deadline = None
        self._reader = None

    def tick(self) -> None:
        """The caller's timer fired at :attr:`deadline`."""
        if self.deadline is None or self.clock() < self.deadline:
            return
        self.deadline = None
        if self.state is _CONNECTING:
            self._send(request_timeout(self.limits.handshake_timeout))
            self._end(_CLOSE_TRANSPORT)
        elif self.state is _CLOSING:  # the client never answered our close
            self._end(_ABORT)

    # -- the opening handshake ------------------------------------------------------
    def _receive_head(self, data: bytes) -> None:
        try:
            request = parse_request(data)
        except HandshakeRejected as exc:
            self._refuse(exc)
            return
        self.receive_head(request)

    def receive_head(self, request: Request) -> None:
        """Take a head the caller has read itself (:func:`read_upgrade_head`), as one received."""
        if self.state is not _CONNECTING:
            return
        self.deadline = None
        try:
            key = check_upgrade(request)
        except HandshakeRejected as exc:
            self._refuse(exc)
            return
        self._emit(UpgradeRequest(request, key))

    def _refuse(self, rejected: HandshakeRejected) -> None:
        """The head itself is refused: answer it, close, and tell the caller."""
        self.reject(rejected)  # its deadline ends with it
        self._emit(HandshakeFailed(rejected))

    def accept(self, response: bytes, *, deflate: bool) -> None:
        """Send the 101 ``response``: the connection is OPEN."""
        if self.state is not _CONNECTING:
            return
        self._send(response)
        self.deflate = deflate
        self.state = _OPEN

    def reject(self, rejected: HandshakeRejected) -> None:
        """Answer the upgrade with an HTTP error and close."""
        if self.state is not _CONNECTING:
            return
        self._send(http_error(rejected))
        self._end(_CLOSE_TRANSPORT)

    def fail_internal(self) -> None:
        """A bug while serving this connection: tell the client, without details."""
        if self.state is _CONNECTING:
            self.reject(HandshakeRejected(500, "internal_error", "the server failed the upgrade"))
        elif self.state is _OPEN:  # the 101 went out: close as a WebSocket
            self.close(CloseCode.INTERNAL_ERROR)
        elif self.state is _CLOSING:
            self._end(_ABORT)

    # -- frames -----------------------------------------------------------------------
    def _receive_frames(self, data: bytes) -> None:
        limits = self.limits
        now = self.clock()
        reader = self._reader
        inbound = self._inbound
        if reader is None or inbound is None:
            reader = self._reader = Reader(
                limits.max_frame, limits.max_message, self.deflate, limits.max_fragments
            )
            inbound = self._inbound = _Inbound(limits, now)
        frames = inbound.frames
        # Parse no more frames than the budget has tokens for, plus the one that
        # shows it is spent: a flood costs its burst, not its whole read.
        allowance = (
            TURN_FRAMES if frames is None else min(TURN_FRAMES, int(frames.available(now)) + 1)
        )
        # Data messages cost their handling only while OPEN (later they are dropped).
        turn_messages = TURN_MESSAGES if self.state is _OPEN else _NO_LIMIT
        try:
            messages = reader.feed(data, allowance, turn_messages)
        except ProtocolError as exc:
            self.fail(exc.code, exc.reason, "protocol_error")
            return
        # The pong that answers our keepalive ping costs nothing here either, wherever it
        # is in the read; another pong is a frame and a message like any other.
        answered = 1 if self.awaiting_pong and _answers(messages) else 0
        charged = reader.frames - answered
        if frames is not None and charged and frames.take(now, charged):
            self.fail(CloseCode.TOO_MANY_MESSAGES, "too many frames", "rate")
            return
        budget = inbound.messages
        if (
            len(messages) > answered
            and budget is not None
            and self.state is _OPEN
            and budget.take(now, len(messages) - answered)
        ):
            self.fail(CloseCode.TOO_MANY_MESSAGES, None, "rate")
            return
        for opcode, payload in messages:
            if opcode == Opcode.PING:
                if self.state is _OPEN:
                    assert isinstance(payload, bytes)
                    self._send(encode_frame(Opcode.PONG, payload))
            elif opcode == Opcode.PONG:
                self.awaiting_pong = 0.0
            elif opcode == Opcode.CLOSE:
                assert isinstance(payload, bytes)
                self._receive_close(payload)
                return
            elif self.state is _OPEN:
                self._emit(MessageReceived(payload))
            # Data after our close frame is discarded (RFC 6455 1.4).

    def _receive_close(self, payload: bytes) -> None:
        if self.state is _OPEN:
            try:
                code, _ = parse_close(payload)
            except ProtocolError as exc:
                self.fail(exc.code, exc.reason, "protocol_error")
                return
            self.close_code = code
            self.state = _CLOSING
            self._emit(Closing(code, "peer"))
            # Echo the code (RFC 6455 5.5.1); an empty close is echoed empty.
            self._send(encode_frame(Opcode.CLOSE, payload[:2]))
        # Either way the closing handshake is complete: the server closes TCP first.
        self._end(_CLOSE_TRANSPORT)

    # -- closing ------------------------------------------------------------------------
    def close(self, code: CloseCode, reason: str | None = None) -> None:
        """Start the closing handshake: send close and wait ``close_timeout`` for the reply."""
        if self.state is not _OPEN:
            return
        self._start_closing(code, reason, "server")
        self.deadline = self.clock() + self.limits.close_timeout

    def fail(self, code: CloseCode, reason: str | None, cause: str) -> None:
        """Fail the connection: send close, then stop reading and close the transport.

        RFC 6455 7.1.7: once it fails the connection, the server must not read
        the client's data any more, not even a close reply; what the client
        sends after this is discarded unread.
        """
        if self.state is _OPEN:
            self._start_closing(code, reason, cause)
        self._end(_CLOSE_TRANSPORT)

    def _start_closing(self, code: CloseCode, reason: str | None, cause: str) -> None:
        self.state = _CLOSING
        self.close_code = int(code)
        self._emit(Closing(int(code), cause))
        self._send(close_frame(code, reason or code.reason))

    def _end(self, action: Action) -> None:
        self.state = _CLOSED
        self.deadline = None
        self._reader = None
        if action > self.transport_action:
            self.transport_action = action

    # -- keepalive ------------------------------------------------------------------------
    def ping(self) -> bool:
        """Send a keepalive ping unless one is outstanding; True if sent."""
        if self.state is not _OPEN or self.awaiting_pong:
            return False
        self.awaiting_pong = self.clock()
        self._send(PING)
        return True

    def check_pong(self, sent_by: float) -> bool:
        """Close with 4009 if a ping sent at or before ``sent_by`` is unanswered; True if so."""
        if self.state is _OPEN and 0 < self.awaiting_pong <= sent_by:
            self.close(CloseCode.KEEPALIVE_TIMEOUT)
            return True
        return False


def _answers(messages: list[Message]) -> bool:
    """Whether ``messages`` hold a pong (the answer to the keepalive ping outstanding)."""
    return any(opcode == Opcode.PONG for opcode, _ in messages)


def _is_lone_pong(data: bytes) -> bool:
    """Whether ``data`` is exactly one masked, final pong frame (payload under 126 bytes)."""
    return (
        len(data) >= 6
        and data[0] == 0x8A  # FIN, no reserved bits, PONG
        and data[1] & 0x80 != 0  # masked
        and len(data) == 6 + (data[1] & 0x7F)
        and data[1] & 0x7F < 126
    )
