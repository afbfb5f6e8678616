"""The WebSocket session without a socket: bytes and clock readings in, events and frames out."""

from __future__ import annotations

import struct

import pytest

from aurigraph_stream.contract import CloseCode
from aurigraph_stream.errors import HandshakeRejected
from aurigraph_stream.wire.handshake import accept_key, switching_protocols
from aurigraph_stream.ws.session import (
    TURN_FRAMES,
    Action,
    Closing,
    Event,
    HandshakeFailed,
    MessageReceived,
    Session,
    SessionLimits,
    State,
    UpgradeRequest,
)
from tests.support.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawFrame,
    frame_bytes,
    server_frames,
    upgrade_head,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
LIMITS = SessionLimits(
    max_frame=1024,
    max_message=4096,
    inbound_rate=10.0,
    inbound_burst=3,
    close_timeout=2.0,
    handshake_timeout=5.0,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def sent_frames(session: Session) -> list[RawFrame]:
    return server_frames(b"".join(session.data_to_send()))


def drain(session: Session, turns: int = 1000) -> list[Event]:
    """The events of the input already received, over as many turns as it takes (bounded)."""
    events = list(session.events_received())
    for _ in range(turns):
        if not session.input_pending:
            return events
        session.resume_input()
        events += session.events_received()
    raise AssertionError(f"input still pending after {turns} turns")


def status(session: Session) -> tuple[State, Action, float | None]:
    """State, transport action and deadline, read afresh (mypy keeps earlier narrowings)."""
    return session.state, session.transport_action, session.deadline


def opened(clock: Clock | None = None, limits: SessionLimits = LIMITS) -> Session:
    """A session past its 101, with nothing pending."""
    session = Session(limits, clock=clock or Clock())
    session.receive_data(upgrade_head("/ws/metrics", key=KEY))
    (event,) = session.events_received()
    assert isinstance(event, UpgradeRequest)
    session.accept(switching_protocols(event.key, None, None), deflate=False)
    session.data_to_send()
    return session


# -- the opening -----------------------------------------------------------------


def test_a_valid_head_is_an_upgrade_request_and_accept_writes_the_101() -> None:
    """The head comes out as an UpgradeRequest with the client's key; accept() opens."""
    session = Session(LIMITS, clock=Clock())
    assert status(session) == (State.CONNECTING, Action.NONE, None)
    session.receive_data(upgrade_head("/ws/metrics?replay=1", key=KEY))
    (event,) = session.events_received()
    assert isinstance(event, UpgradeRequest)
    assert (event.key, event.request.path, event.request.query) == (
        KEY,
        "/ws/metrics",
        {"replay": "1"},
    )
    assert session.data_to_send() == ()
    session.accept(switching_protocols(event.key, None, None), deflate=False)
    (response,) = session.data_to_send()
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {accept_key(KEY)}".encode() in response
    assert status(session) == (State.OPEN, Action.NONE, None)


def test_reject_answers_with_the_json_refusal_and_closes() -> None:
    """A refused upgrade gets its HTTP status and JSON body, then the transport closes."""
    session = Session(LIMITS, clock=Clock())
    session.receive_data(upgrade_head("/ws/nope", key=KEY))
    session.events_received()
    session.reject(HandshakeRejected(404, "unknown_stream", "no such stream"))
    (response,) = session.data_to_send()
    assert response.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert response.endswith(b'{"error":"unknown_stream","detail":"no such stream"}')
    assert (session.state, session.transport_action) == (State.CLOSED, Action.CLOSE)


@pytest.mark.parametrize(
    ("head", "status", "error"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (upgrade_head("/ws/metrics", version="8"), 426, "unsupported_version"),
        (upgrade_head("/ws/metrics", key="short"), 400, "bad_key"),
        (upgrade_head("/ws/metrics").replace(b"GET", b"PUT", 1), 405, "method_not_allowed"),
    ],
)
def test_a_bad_head_is_answered_by_the_session(head: bytes, status: int, error: str) -> None:
    """What is not a WebSocket upgrade is refused without asking the caller."""
    session = Session(LIMITS, clock=Clock())
    session.receive_data(head)
    (event,) = session.events_received()
    assert isinstance(event, HandshakeFailed)
    assert (event.rejected.status, event.rejected.error) == (status, error)
    (response,) = session.data_to_send()
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    assert session.transport_action is Action.CLOSE


def test_a_head_that_never_completes_gets_408_at_its_deadline() -> None:
    """With a head deadline, tick() at handshake_timeout answers 408 and closes."""
    clock = Clock()
    session = Session(LIMITS, head_deadline=True, clock=clock)
    assert session.deadline == clock.now + LIMITS.handshake_timeout
    clock.now += LIMITS.handshake_timeout - 0.001
    session.tick()  # early: nothing yet
    assert (session.data_to_send(), session.state) == ((), State.CONNECTING)
    clock.now += 0.001
    session.tick()
    (response,) = session.data_to_send()
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert status(session) == (State.CLOSED, Action.CLOSE, None)


def test_a_head_in_time_cancels_its_deadline() -> None:
    session = Session(LIMITS, head_deadline=True, clock=Clock())
    session.receive_data(upgrade_head("/ws/metrics"))
    assert session.deadline is None


# -- messages, ping and pong ---------------------------------------------------------


def test_data_messages_come_out_whole_text_as_str_binary_as_bytes() -> None:
    """A fragmented text message is one event; a binary message stays bytes."""
    session = opened()
    session.receive_data(
        frame_bytes(OP_TEXT, b'{"op":', fin=False)
        + frame_bytes(OP_CONT, b'"x"}')
        + frame_bytes(OP_BINARY, b"\x00\x01")
    )
    assert drain(session) == [
        MessageReceived('{"op":"x"}'),
        MessageReceived(b"\x00\x01"),
    ]
    assert session.data_to_send() == ()


def test_a_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    session = opened()
    session.receive_data(frame_bytes(OP_PING, b"are you there"))
    (pong,) = sent_frames(session)
    assert (pong.opcode, pong.payload, pong.fin) == (OP_PONG, b"are you there", True)
    assert session.events_received() == ()


def test_keepalive_ping_then_pong_clears_it() -> None:
    """ping() sends one ping until answered; a pong answers it."""
    clock = Clock()
    session = opened(clock)
    assert session.ping() is True
    assert session.ping() is False  # one outstanding at a time
    (ping,) = sent_frames(session)
    assert ping.opcode == OP_PING
    sent_at = clock.now
    clock.now += 1
    session.receive_data(frame_bytes(OP_PONG, ping.payload))  # the lone-pong fast path
    assert session.check_pong(sent_at) is False
    assert session.state is State.OPEN
    assert session.ping() is True


def test_an_unanswered_ping_closes_with_4009() -> None:
    clock = Clock()
    session = opened(clock)
    session.ping()
    session.data_to_send()
    assert session.check_pong(clock.now) is True
    (close,) = sent_frames(session)
    assert close.close_code() == CloseCode.KEEPALIVE_TIMEOUT
    assert session.events_received() == [Closing(4009, "server")]
    assert session.state is State.CLOSING


def test_a_ping_sent_after_the_checked_instant_is_not_judged() -> None:
    """check_pong only judges pings sent at or before the instant it is given."""
    clock = Clock()
    session = opened(clock)
    checked = clock.now
    clock.now += 1
    session.ping()
    assert session.check_pong(checked) is False
    assert session.state is State.OPEN


# -- the closing handshake ----------------------------------------------------------


def test_the_client_closes_and_the_server_echoes_its_code_then_closes_tcp() -> None:
    session = opened()
    session.receive_data(frame_bytes(OP_CLOSE, close_payload(1000, b"bye")))
    assert session.events_received() == [Closing(1000, "peer")]
    (echo,) = sent_frames(session)
    assert (echo.opcode, echo.payload) == (OP_CLOSE, close_payload(1000))
    assert (session.state, session.transport_action, session.close_code) == (
        State.CLOSED,
        Action.CLOSE,
        1000,
    )


def test_an_empty_close_is_echoed_empty() -> None:
    session = opened()
    session.receive_data(frame_bytes(OP_CLOSE, b""))
    (echo,) = sent_frames(session)
    assert echo.payload == b""
    assert session.close_code == 1005


def test_the_server_closes_and_the_clients_reply_ends_it() -> None:
    """close() sends the code and reason, waits for the reply, then closes TCP."""
    clock = Clock()
    session = opened(clock)
    session.close(CloseCode.GOING_AWAY)
    (close,) = sent_frames(session)
    assert (close.close_code(), close.payload[2:]) == (1001, b"server shutting down")
    assert session.events_received() == [Closing(1001, "server")]
    assert (session.state, session.deadline) == (State.CLOSING, clock.now + 2.0)
    session.close(CloseCode.NORMAL)  # already closing: nothing more
    assert session.data_to_send() == ()
    session.receive_data(frame_bytes(OP_TEXT, b"late") + frame_bytes(OP_CLOSE, close_payload(1001)))
    assert session.events_received() == ()  # data after our close is discarded
    assert session.data_to_send() == ()  # the reply is not echoed again
    assert (session.state, session.transport_action) == (State.CLOSED, Action.CLOSE)


def test_a_close_reply_that_never_comes_aborts_at_close_timeout() -> None:
    clock = Clock()
    session = opened(clock)
    session.close(CloseCode.SLOW_CONSUMER, "slow consumer")
    session.data_to_send()
    clock.now += 1.99
    session.tick()
    assert session.transport_action is Action.NONE
    clock.now += 0.01
    session.tick()
    assert (session.state, session.transport_action) == (State.CLOSED, Action.ABORT)


def test_a_long_reason_is_cut_to_fit_a_control_frame() -> None:
    session = opened()
    session.close(CloseCode.POLICY_VIOLATION, "é" * 200)
    (close,) = sent_frames(session)
    assert len(close.payload) <= 125
    close.payload[2:].decode()  # still UTF-8: cut on a character boundary


def test_eof_ends_the_session_silently() -> None:
    session = opened()
    session.receive_eof()
    assert (session.state, session.deadline) == (State.CLOSED, None)
    assert session.events_received() == ()
    session.receive_data(frame_bytes(OP_TEXT, b"after the end"))
    assert session.events_received() == ()


# -- protocol errors, each with its close code ---------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x81\x05hello", 1002),  # unmasked
        (bytes([0xB1]) + frame_bytes(OP_TEXT, b"x")[1:], 1002),  # RSV2 and RSV3
        (bytes([0xC1]) + frame_bytes(OP_TEXT, b"x")[1:], 1002),  # RSV1 without deflate
        (bytes([0x83]) + frame_bytes(OP_TEXT, b"x")[1:], 1002),  # reserved opcode
        (frame_bytes(OP_PING, b"x", fin=False), 1002),  # fragmented control frame
        (frame_bytes(OP_PING, b"x" * 126), 1002),  # control frame over 125 bytes
        (frame_bytes(OP_CONT, b"x"), 1002),  # continuation of nothing
        (frame_bytes(OP_TEXT, b"a", fin=False) + frame_bytes(OP_TEXT, b"b"), 1002),
        (frame_bytes(OP_TEXT, b"\xff\xfe"), 1007),  # not UTF-8
        (frame_bytes(OP_CLOSE, close_payload(1000, b"\xff")), 1007),  # close reason not UTF-8
        (frame_bytes(OP_CLOSE, b"\x03"), 1002),  # 1-byte close payload
        (frame_bytes(OP_CLOSE, close_payload(1005)), 1002),  # a code a peer may not send
        (frame_bytes(OP_TEXT, b"x" * 1025), 1009),  # frame over max_frame
        (
            b"".join(
                frame_bytes(OP_TEXT if i == 0 else OP_CONT, b"x" * 1000, fin=i == 4)
                for i in range(5)
            ),
            1009,
        ),
    ],
    ids=[
        "unmasked",
        "rsv2-rsv3",
        "rsv1-without-deflate",
        "reserved-opcode",
        "fragmented-ping",
        "long-ping",
        "orphan-continuation",
        "interleaved-data",
        "text-not-utf8",
        "close-reason-not-utf8",
        "one-byte-close",
        "close-code-1005",
        "frame-too-big",
        "message-too-big",
    ],
)
def test_each_protocol_error_fails_the_connection_with_its_code(data: bytes, code: int) -> None:
    """The close frame carries the RFC's code, the transport closes, and what follows the
    error is never read (RFC 6455 7.1.7)."""
    session = opened()
    session.receive_data(data)
    (close,) = sent_frames(session)
    assert close.close_code() == code
    assert session.events_received() == [Closing(code, "protocol_error")]
    assert (session.state, session.transport_action) == (State.CLOSED, Action.CLOSE)
    session.receive_data(frame_bytes(OP_PING, b"ignored"))
    assert session.data_to_send() == ()


# -- the inbound rate cap --------------------------------------------------------------


def test_messages_over_the_inbound_rate_close_with_4029() -> None:
    """A burst of inbound_burst messages passes; the next one at once closes 4029."""
    clock = Clock()
    session = opened(clock)
    session.receive_data(b"".join(frame_bytes(OP_TEXT, b"m") for _ in range(3)))
    assert len(drain(session)) == 3
    session.receive_data(frame_bytes(OP_TEXT, b"one too many"))
    assert session.events_received() == [Closing(4029, "rate")]
    (close,) = sent_frames(session)
    assert close.close_code() == CloseCode.TOO_MANY_MESSAGES
    assert session.transport_action is Action.CLOSE


def test_the_inbound_rate_refills_with_time() -> None:
    clock = Clock()
    session = opened(clock)
    session.receive_data(b"".join(frame_bytes(OP_TEXT, b"m") for _ in range(3)))
    drain(session)
    clock.now += 0.2  # two tokens back at 10 per second
    session.receive_data(frame_bytes(OP_TEXT, b"again"))
    assert session.events_received()[-1] == MessageReceived("again")
    assert session.state is State.OPEN


def test_no_inbound_rate_when_it_is_zero() -> None:
    session = opened(limits=SessionLimits(inbound_rate=0, inbound_burst=1))
    session.receive_data(b"".join(frame_bytes(OP_TEXT, b"m") for _ in range(50)))
    assert len(drain(session)) == 50
    assert session.state is State.OPEN


def test_fail_internal_closes_an_open_connection_with_1011() -> None:
    session = opened()
    session.fail_internal()
    (close,) = sent_frames(session)
    assert close.close_code() == 1011
    assert close.payload[2:] == b"internal error"


# -- the inbound frame budget and the work of one turn ----------------------------------

FRAMES = SessionLimits(
    max_frame=1024,
    max_message=4096,
    max_fragments=8,
    inbound_rate=0,  # the message budget is tested above
    frame_rate=10.0,
    frame_burst=5,
    close_timeout=2.0,
)
EMPTY_CONT = frame_bytes(OP_CONT, b"", fin=False)


def test_every_frame_takes_from_the_frame_budget_pongs_too() -> None:
    """Frames that complete no message (unasked pongs) still count: the 6th of a burst of 5
    closes with 4029."""
    clock = Clock()
    session = opened(clock, FRAMES)
    for _ in range(5):
        session.receive_data(frame_bytes(OP_PONG, b""))
    assert session.state is State.OPEN
    session.receive_data(frame_bytes(OP_PONG, b""))
    assert session.events_received() == [Closing(4029, "rate")]
    (close,) = sent_frames(session)
    assert (close.close_code(), close.payload[2:]) == (4029, b"too many frames")
    assert session.transport_action is Action.CLOSE


def test_the_frame_budget_refills_with_time() -> None:
    clock = Clock()
    session = opened(clock, FRAMES)
    for _ in range(50):  # 10 per second, at 10 per second: never over
        session.receive_data(frame_bytes(OP_PONG, b""))
        clock.now += 0.1
    assert session.state is State.OPEN


def test_empty_continuations_end_at_max_fragments_with_1009() -> None:
    """A message that grows by nothing still has a bounded number of fragments."""
    session = opened(limits=SessionLimits(max_fragments=8, frame_rate=0))
    session.receive_data(frame_bytes(OP_TEXT, b"{", fin=False) + EMPTY_CONT * 7)
    assert drain(session) == []
    session.receive_data(EMPTY_CONT)
    assert session.events_received() == [Closing(1009, "protocol_error")]
    (close,) = sent_frames(session)
    assert close.payload[2:] == b"message in more than 8 fragments"


def test_a_message_of_max_fragments_frames_is_whole() -> None:
    session = opened(limits=SessionLimits(max_fragments=8, frame_rate=0))
    frames = [frame_bytes(OP_TEXT, b"a", fin=False), *[frame_bytes(OP_CONT, b"b", fin=False)] * 6]
    session.receive_data(b"".join(frames) + frame_bytes(OP_CONT, b"c"))
    assert drain(session) == [MessageReceived("abbbbbbc")]


def test_a_flood_costs_its_burst_not_its_read() -> None:
    """100,000 pings in one read: closed with 4029 after parsing the burst and one more.

    The session parses no more frames than the budget has tokens for, plus the one that
    shows it spent, so the rest of the read is never looked at; the frames of a turn over
    the budget are not acted on (no pong for them).
    """
    session = opened(Clock(), FRAMES)
    session.receive_data(frame_bytes(OP_PING, b"p") * 100_000)
    assert session.events_received() == [Closing(4029, "rate")]
    assert [f.opcode for f in sent_frames(session)] == [OP_CLOSE]
    assert not session.input_pending


def test_one_turn_parses_at_most_turn_frames() -> None:
    """Without budgets, a read of many frames is still parsed TURN_FRAMES at a time."""
    session = opened(limits=SessionLimits(frame_rate=0, inbound_rate=0))
    session.receive_data(frame_bytes(OP_PING, b"p") * (TURN_FRAMES * 2 + 1))
    assert len(sent_frames(session)) == TURN_FRAMES
    assert session.input_pending
    session.resume_input()
    assert len(sent_frames(session)) == TURN_FRAMES
    session.resume_input()
    assert len(sent_frames(session)) == 1
    assert not session.input_pending


def test_one_turn_hands_over_one_data_message() -> None:
    """Commands cost their handling: one per turn, the next ones on later turns."""
    session = opened()
    session.receive_data(frame_bytes(OP_TEXT, b"a") + frame_bytes(OP_TEXT, b"b"))
    assert session.events_received() == [MessageReceived("a")]
    assert session.input_pending
    session.resume_input()
    assert session.events_received() == [MessageReceived("b")]
    assert not session.input_pending


def test_only_the_pong_to_our_ping_skips_the_budget() -> None:
    """The lone pong that answers our keepalive costs nothing; with frame_burst 1 it may come
    every time, while a second, unasked one is a frame like any other."""
    clock = Clock()
    session = opened(clock, SessionLimits(frame_rate=0.001, frame_burst=1))
    pong = frame_bytes(OP_PONG, b"keepalive")
    for _ in range(20):
        assert session.ping()
        session.receive_data(pong)
        assert not session.awaiting_pong
    assert session.state is State.OPEN
    session.receive_data(pong)  # unasked: the one token
    session.receive_data(pong)  # unasked: over
    assert session.events_received() == [Closing(4029, "rate")]


def test_the_pong_to_our_ping_is_free_after_commands_too() -> None:
    """Once a client has sent a command (its frame reader exists), the pong that answers our
    ping still costs neither budget, alone in its read or behind other frames: with bursts
    of one, a command a second and an answered ping each second never reach 4029."""
    clock = Clock()
    limits = SessionLimits(frame_rate=1.0, frame_burst=1, inbound_rate=1.0, inbound_burst=1)
    session = opened(clock, limits)
    pong = frame_bytes(OP_PONG, b"keepalive")
    for _ in range(10):
        session.receive_data(frame_bytes(OP_TEXT, b"cmd"))  # the second's one token each
        assert session.events_received() == [MessageReceived("cmd")]
        assert session.ping()
        session.data_to_send()
        session.receive_data(pong)
        assert not session.awaiting_pong
        assert session.state is State.OPEN
        clock.now += 1.0
    assert session.ping()
    session.receive_data(frame_bytes(OP_TEXT, b"cmd") + pong)  # the answer behind a command
    assert drain(session) == [MessageReceived("cmd")]
    assert (session.state, session.awaiting_pong) == (State.OPEN, 0.0)
    session.receive_data(pong)  # unasked: a frame like any other, over the spent budget
    assert session.events_received() == [Closing(4029, "rate")]


def test_while_closing_the_frame_budget_still_holds() -> None:
    """Waiting for the client's close reply, a flood of frames ends the wait at once."""
    clock = Clock()
    session = opened(clock, FRAMES)
    session.close(CloseCode.SLOW_CONSUMER)
    session.data_to_send()
    session.events_received()
    session.receive_data(frame_bytes(OP_PING, b"p") * 1000)
    drain(session)
    assert session.data_to_send() == ()  # no pong while closing, no second close frame
    assert (session.state, session.transport_action) == (State.CLOSED, Action.CLOSE)


def test_nothing_is_read_after_the_close_decision() -> None:
    """After 4029 the rest of the read, and anything later, is discarded unread."""
    session = opened(Clock(), FRAMES)
    session.receive_data(frame_bytes(OP_PONG, b"") * 6 + frame_bytes(OP_TEXT, b"after"))
    assert drain(session) == [Closing(4029, "rate")]
    session.data_to_send()
    assert not session.input_pending
    session.receive_data(frame_bytes(OP_PING, b"later"))
    session.resume_input()
    assert (session.events_received(), session.data_to_send()) == ((), ())
