"""Unit tests of wire/reader.py: reassembling client frames into messages."""

from __future__ import annotations

import zlib

import pytest

from aurigraph_stream.contract import CloseCode
from aurigraph_stream.errors import InvalidPayload, MessageTooBig, ProtocolError
from aurigraph_stream.wire.frames import Opcode
from aurigraph_stream.wire.reader import Message, Reader
from tests.support.rawws import frame_bytes

FRAME_LIMIT = 65536
MESSAGE_LIMIT = 1048576


def _deflate(data: bytes) -> bytes:
    """What a permessage-deflate client sends: raw deflate without the sync tail."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_fragmented_text_is_reassembled() -> None:
    """TEXT + CONT + CONT(fin) becomes one text message."""
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=False)
    raw = (
        frame_bytes(Opcode.TEXT, b"hel", fin=False)
        + frame_bytes(Opcode.CONT, b"lo ", fin=False)
        + frame_bytes(Opcode.CONT, b"world")
    )
    assert reader.feed(raw) == [Message(Opcode.TEXT, "hello world")]


def test_bytes_fed_one_at_a_time_give_the_same_messages() -> None:
    """Parsing does not depend on how TCP splits the stream."""
    raw = frame_bytes(Opcode.BINARY, b"\x00\x01", fin=False) + frame_bytes(Opcode.CONT, b"\x02")
    raw += frame_bytes(Opcode.TEXT, "ünïcode".encode())
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=False)
    out: list[Message] = []
    for i in range(len(raw)):
        out += reader.feed(raw[i : i + 1])
    assert out == [Message(Opcode.BINARY, b"\x00\x01\x02"), Message(Opcode.TEXT, "ünïcode")]


def test_control_frames_interleave_with_a_fragmented_message() -> None:
    """A PING and a PONG between fragments come out first; the message is still whole."""
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=False)
    raw = (
        frame_bytes(Opcode.TEXT, b"a", fin=False)
        + frame_bytes(Opcode.PING, b"p1")
        + frame_bytes(Opcode.CONT, b"b", fin=False)
        + frame_bytes(Opcode.PONG, b"p2")
        + frame_bytes(Opcode.CONT, b"c")
    )
    assert reader.feed(raw) == [
        Message(Opcode.PING, b"p1"),
        Message(Opcode.PONG, b"p2"),
        Message(Opcode.TEXT, "abc"),
    ]


def test_utf8_split_across_fragments_is_accepted() -> None:
    """UTF-8 is checked on the whole message, so a character split between frames is fine."""
    encoded = "é".encode()
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=False)
    raw = frame_bytes(Opcode.TEXT, encoded[:1], fin=False) + frame_bytes(Opcode.CONT, encoded[1:])
    assert reader.feed(raw) == [Message(Opcode.TEXT, "é")]


def test_invalid_utf8_text_closes_with_1007() -> None:
    """A text message that is not UTF-8 raises InvalidPayload, close code 1007."""
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=False)
    with pytest.raises(InvalidPayload) as info:
        reader.feed(frame_bytes(Opcode.TEXT, b"ok \xc3\x28"))
    assert int(info.value.code) == 1007


def test_compressed_message_round_trip() -> None:
    """A permessage-deflate message (RSV1 on the first frame only) inflates to the text."""
    text = '{"hello": "world"}' * 200
    data = _deflate(text.encode())
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=True)
    assert reader.feed(frame_bytes(Opcode.TEXT, data, rsv1=True)) == [Message(Opcode.TEXT, text)]
    half = len(data) // 2
    raw = frame_bytes(Opcode.TEXT, data[:half], fin=False, rsv1=True) + frame_bytes(
        Opcode.CONT, data[half:]
    )
    assert reader.feed(raw) == [Message(Opcode.TEXT, text)]


def test_decompression_bomb_closes_with_1009() -> None:
    """A small compressed frame that inflates past the message limit raises MessageTooBig."""
    bomb = _deflate(b"\x00" * (MESSAGE_LIMIT * 8))
    assert len(bomb) < FRAME_LIMIT
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=True)
    with pytest.raises(MessageTooBig) as info:
        reader.feed(frame_bytes(Opcode.BINARY, bomb, rsv1=True))
    assert int(info.value.code) == 1009


def test_invalid_deflate_data_is_a_protocol_error() -> None:
    """Bytes that are not deflate, sent with RSV1, close with 1002."""
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=True)
    with pytest.raises(ProtocolError, match="deflate") as info:
        reader.feed(frame_bytes(Opcode.TEXT, b"\xff\xff\xff\xff not deflate", rsv1=True))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_message_over_the_limit_in_fragments_closes_with_1009() -> None:
    """Fragments each under the frame limit but over the message limit together: 1009."""
    reader = Reader(1000, 2500, deflate=False)
    assert reader.feed(frame_bytes(Opcode.TEXT, b"a" * 1000, fin=False)) == []
    assert reader.feed(frame_bytes(Opcode.CONT, b"a" * 1000, fin=False)) == []
    assert reader.feed(frame_bytes(Opcode.CONT, b"a" * 500)) == [Message(Opcode.TEXT, "a" * 2500)]
    reader.feed(frame_bytes(Opcode.TEXT, b"a" * 1000, fin=False))
    reader.feed(frame_bytes(Opcode.CONT, b"a" * 1000, fin=False))
    with pytest.raises(MessageTooBig):
        reader.feed(frame_bytes(Opcode.CONT, b"a" * 501))


@pytest.mark.parametrize(
    ("raw", "deflate", "message"),
    [
        (frame_bytes(Opcode.CONT, b"x"), False, "continuation frame without"),
        (
            frame_bytes(Opcode.TEXT, b"x", fin=False) + frame_bytes(Opcode.TEXT, b"y"),
            False,
            "before the fragmented message ended",
        ),
        (
            frame_bytes(Opcode.TEXT, b"x", fin=False) + frame_bytes(Opcode.CONT, b"y", rsv1=True),
            True,
            "RSV1 set on a continuation",
        ),
        (frame_bytes(Opcode.TEXT, b"x", rsv1=True), False, "reserved bits"),
    ],
    ids=["orphan-continuation", "interrupted-message", "rsv1-continuation", "rsv1-no-deflate"],
)
def test_sequencing_violations(raw: bytes, deflate: bool, message: str) -> None:
    """Frames in an order RFC 6455 forbids raise ProtocolError (1002)."""
    reader = Reader(FRAME_LIMIT, MESSAGE_LIMIT, deflate=deflate)
    with pytest.raises(ProtocolError, match=message):
        reader.feed(raw)
