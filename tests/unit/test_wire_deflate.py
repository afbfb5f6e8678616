"""Unit tests of wire/deflate.py: negotiation and the shared compressor."""

from __future__ import annotations

import os
import zlib

import pytest

from aurigraph_stream.errors import MessageTooBig, ProtocolError
from aurigraph_stream.wire.deflate import compress, decompress, envelope, inflate_head, negotiate

BASE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("x-webkit-deflate-frame", None),
        ("permessage-deflate", (15, BASE)),
        ("PerMessage-Deflate", (15, BASE)),
        ("permessage-deflate; server_no_context_takeover", (15, BASE)),
        ("permessage-deflate; client_no_context_takeover", (15, BASE)),
        ("permessage-deflate; client_max_window_bits", (15, BASE)),
        ("permessage-deflate; client_max_window_bits=10", (15, BASE)),
        ("permessage-deflate; server_max_window_bits=9", (9, BASE + "; server_max_window_bits=9")),
        (
            'permessage-deflate; server_max_window_bits="12"',
            (12, BASE + "; server_max_window_bits=12"),
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            (15, BASE + "; server_max_window_bits=15"),
        ),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=ten", None),
        ("permessage-deflate; server_max_window_bits=\u00b2", None),  # isdigit(), not int()
        ("permessage-deflate; client_max_window_bits=\u0661\u0660", None),  # Arabic 10
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; client_max_window_bits=16", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; client_no_context_takeover=yes", None),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("x-webkit-deflate-frame, permessage-deflate", (15, BASE)),
        (
            "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=11",
            (11, BASE + "; server_max_window_bits=11"),
        ),
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            (10, BASE + "; server_max_window_bits=10"),
        ),
    ],
)
def test_negotiate_truth_table(header: str | None, expected: tuple[int, str] | None) -> None:
    """Each offer is answered per the docstring's table; the first acceptable offer wins."""
    assert negotiate(header) == expected


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_compress_inflates_back_with_zlib(level: int, bits: int) -> None:
    """compress() output plus the RFC 7692 tail inflates with a fresh zlib to the input."""
    payload = b'{"tps": 123.45, "cpu": 7.5}' * 100 + os.urandom(64)
    data = compress(payload, level, bits)
    assert not data.endswith(b"\x00\x00\xff\xff")
    assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == payload
    assert decompress(data, len(payload)) == payload


def test_compress_has_no_context_takeover() -> None:
    """The same message compresses to the same bytes every time: no state carries over."""
    first = compress(b"hello hello hello", 6)
    compress(b"something else entirely" * 50, 6)
    assert compress(b"hello hello hello", 6) == first


def test_compress_of_an_empty_message_inflates_to_empty() -> None:
    """An empty message round-trips."""
    assert zlib.decompressobj(-15).decompress(compress(b"", 6) + b"\x00\x00\xff\xff") == b""


def test_decompress_limits_and_errors() -> None:
    """decompress refuses output past max_size (1009) and data that is not deflate (1002)."""
    data = compress(b"a" * 1001, 6)
    assert decompress(data, 1001) == b"a" * 1001
    with pytest.raises(MessageTooBig):
        decompress(data, 1000)
    with pytest.raises(ProtocolError, match="invalid deflate"):
        decompress(b"\xff\xfe\xfd\xfc", 1000)


@pytest.mark.parametrize("bits", [9, 12, 15])
@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        (b"", b""),
        (b'{"id":"1","type":"next","payload":', b"}}"),
        (b'{"id":"1","type":"next","payload":', b',"extensions":{"stream":{}}}}'),
        (b"[", b""),
        (b"", b"]"),
        (b"p" * 70_000, b"s" * 140_000),  # more than one stored block each
    ],
)
@pytest.mark.parametrize("size", [0, 1, 300, 100_000])
def test_an_envelope_around_a_compressed_payload_inflates_to_the_whole_message(
    bits: int, prefix: bytes, suffix: bytes, size: int
) -> None:
    """head + compress(payload) + tail is prefix + payload + suffix for a receiver that
    inflates with the negotiated window, and for one that keeps its window between
    messages (the payload refers to nothing before it)."""
    payload = (b'{"data":{"seq":1234,"value":"1000000000000000000"}' * 3000)[: size // 2]
    payload += os.urandom(size - len(payload))
    head, tail = envelope(prefix, suffix)
    message = head + compress(payload, 6, bits) + tail
    assert zlib.decompressobj(-bits).decompress(message + b"\x00\x00\xff\xff") == (
        prefix + payload + suffix
    )
    kept = zlib.decompressobj(-15)
    for _ in range(2):
        assert kept.decompress(message + b"\x00\x00\xff\xff") == prefix + payload + suffix
    assert inflate_head(message, 40) == (prefix + payload + suffix)[:40]


def test_an_envelope_costs_its_bytes_and_a_few_headers() -> None:
    """The envelope is stored, not compressed: five bytes per stored block around it, and
    one for the receiver to complete."""
    head, tail = envelope(b"x" * 36, b"}}")
    assert (len(head), len(tail)) == (5 + 36, 4 + 2 + 1)
    assert envelope(b"", b"") == (b"", b"")
