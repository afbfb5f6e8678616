"""Unit tests of wire/frames.py: building server frames, parsing client frames."""

from __future__ import annotations

import os
import struct

import pytest

from aurigraph_stream.contract import CloseCode
from aurigraph_stream.errors import InvalidPayload, MessageTooBig, ProtocolError
from aurigraph_stream.wire.frames import (
    Frame,
    Opcode,
    close_frame,
    encode_frame,
    parse_close,
    parse_frame,
    unmask,
)
from tests.support.rawws import frame_bytes

LIMIT = 65536


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, bytes((0x81, 0))),
        (125, bytes((0x81, 125))),
        (126, bytes((0x81, 126)) + struct.pack("!H", 126)),
        (65535, bytes((0x81, 126)) + struct.pack("!H", 65535)),
        (65536, bytes((0x81, 127)) + struct.pack("!Q", 65536)),
    ],
)
def test_encode_frame_uses_the_shortest_length_form(length: int, header: bytes) -> None:
    """Lengths 0/125 fit the first byte, 126/65535 take 16 bits, 65536 takes 64 bits."""
    payload = os.urandom(length)
    frame = encode_frame(Opcode.TEXT, payload)
    assert frame == header + payload


def test_encode_frame_sets_rsv1_and_opcode() -> None:
    """A compressed binary frame has FIN, RSV1 and opcode 2 in its first byte, and no mask."""
    frame = encode_frame(Opcode.BINARY, b"abc", rsv1=True)
    assert frame[0] == 0x80 | 0x40 | 0x2
    assert frame[1] == 3  # mask bit clear: server frames are not masked


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536])
def test_parse_frame_unmasks_client_frames(length: int) -> None:
    """A masked client frame parses back to its payload and reports the bytes it used."""
    payload = os.urandom(length)
    raw = frame_bytes(Opcode.BINARY, payload) + b"next"
    parsed = parse_frame(raw, 70000, allow_rsv1=False)
    assert parsed is not None
    frame, used = parsed
    assert frame == Frame(True, False, Opcode.BINARY, payload)
    assert raw[used:] == b"next"


def test_parse_frame_waits_for_a_whole_frame() -> None:
    """Every proper prefix of a frame asks for more bytes (None) instead of failing."""
    raw = frame_bytes(Opcode.TEXT, b"x" * 300)
    for cut in range(len(raw)):
        assert parse_frame(raw[:cut], LIMIT, allow_rsv1=False) is None
    assert parse_frame(raw, LIMIT, allow_rsv1=False) is not None


def test_parse_frame_keeps_fin_and_rsv1() -> None:
    """A non-final compressed frame keeps FIN clear and RSV1 set when deflate is on."""
    parsed = parse_frame(
        frame_bytes(Opcode.TEXT, b"abc", fin=False, rsv1=True), LIMIT, allow_rsv1=True
    )
    assert parsed is not None
    assert parsed[0] == Frame(False, True, Opcode.TEXT, b"abc")


def _raw(first: int, second: int, rest: bytes = b"") -> bytes:
    return bytes((first, second)) + rest


@pytest.mark.parametrize(
    ("raw", "allow_rsv1", "message"),
    [
        (_raw(0x80 | 0x20 | 0x1, 0x80), False, "reserved bits"),
        (_raw(0x80 | 0x10 | 0x1, 0x80), True, "reserved bits"),
        (_raw(0x80 | 0x40 | 0x1, 0x80), False, "reserved bits"),
        (_raw(0x80 | 0x3, 0x80), False, "reserved opcode"),
        (_raw(0x80 | 0xB, 0x80), False, "reserved opcode"),
        (_raw(0x81, 0x05, b"hello"), False, "masked"),
        (_raw(0x09, 0x80), False, "fragmented"),
        (_raw(0x89, 0x80 | 126, struct.pack("!H", 126)), False, "125"),
        (_raw(0x80 | 0x40 | 0x9, 0x80), True, "compressed"),
        (_raw(0x82, 0x80 | 127, struct.pack("!Q", 1 << 63)), False, "top bit"),
    ],
    ids=[
        "rsv2",
        "rsv3",
        "rsv1-without-deflate",
        "opcode-3",
        "opcode-B",
        "unmasked",
        "fragmented-ping",
        "long-ping",
        "compressed-ping",
        "64-bit-top-bit",
    ],
)
def test_parse_frame_protocol_violations(raw: bytes, allow_rsv1: bool, message: str) -> None:
    """Each RFC 6455 violation raises ProtocolError (close 1002) naming the rule."""
    with pytest.raises(ProtocolError, match=message) as info:
        parse_frame(raw, LIMIT, allow_rsv1=allow_rsv1)
    assert type(info.value) is ProtocolError
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_parse_frame_refuses_an_oversized_frame_from_its_header() -> None:
    """A frame over the limit raises MessageTooBig (1009) before its payload arrives."""
    header = _raw(0x82, 0x80 | 127, struct.pack("!Q", LIMIT + 1))
    with pytest.raises(MessageTooBig) as info:
        parse_frame(header, LIMIT, allow_rsv1=False)
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert parse_frame(frame_bytes(Opcode.BINARY, b"x" * LIMIT), LIMIT, allow_rsv1=False)


def test_unmask_is_an_involution_and_matches_bytewise_xor() -> None:
    """unmask XORs byte i with mask[i % 4]; applying it twice gives the input back."""
    mask = os.urandom(4)
    for length in (0, 1, 3, 4, 5, 1000):
        data = os.urandom(length)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert unmask(data, mask) == expected
        assert unmask(unmask(data, mask), mask) == data


def test_close_frame_round_trips_through_parse_close() -> None:
    """close_frame(code, reason) is a CLOSE frame whose payload parse_close reads back."""
    frame = close_frame(CloseCode.SLOW_CONSUMER, "slow consumer")
    assert frame[0] == 0x88
    assert parse_close(frame[2:]) == (4008, "slow consumer")


def test_close_frame_cuts_a_long_reason_to_valid_utf8() -> None:
    """A long reason is cut so the payload fits 125 bytes and stays valid UTF-8."""
    frame = close_frame(CloseCode.POLICY_VIOLATION, "é" * 100)
    payload = frame[2:]
    assert frame[1] == len(payload) <= 125
    code, reason = parse_close(payload)
    assert code == 1008
    assert reason
    assert set(reason) == {"é"}


def test_parse_close_accepts_the_codes_a_peer_may_send() -> None:
    """An empty close is 1005; 1000 and the 3000-4999 range are accepted with their reason."""
    assert parse_close(b"") == (1005, "")
    assert parse_close(struct.pack("!H", 1000) + b"bye") == (1000, "bye")
    assert parse_close(struct.pack("!H", 3000)) == (3000, "")
    assert parse_close(struct.pack("!H", 4999)) == (4999, "")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000])
def test_parse_close_refuses_codes_a_peer_may_not_send(code: int) -> None:
    """Reserved and out-of-range close codes are protocol errors."""
    with pytest.raises(ProtocolError, match="invalid close code"):
        parse_close(struct.pack("!H", code))


def test_parse_close_refuses_a_one_byte_payload_and_bad_utf8() -> None:
    """A 1-byte close payload is a protocol error; a non-UTF-8 reason is 1007."""
    with pytest.raises(ProtocolError, match="1 byte"):
        parse_close(b"\x03")
    with pytest.raises(InvalidPayload) as info:
        parse_close(struct.pack("!H", 1000) + b"\xff\xfe")
    assert info.value.code == CloseCode.INVALID_PAYLOAD
