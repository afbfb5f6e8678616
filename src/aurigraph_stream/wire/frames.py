"""RFC 6455 frames: building server frames once, parsing client frames.

Server frames are unmasked, so one ``bytes`` object can be written to every
subscriber. Client frames must be masked (RFC 6455 section 5.1).
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from aurigraph_stream.errors import InvalidPayload, MessageTooBig, ProtocolError

__all__ = [
    "Frame",
    "Opcode",
    "close_frame",
    "encode_frame",
    "encode_frame_parts",
    "parse_close",
    "parse_frame",
    "server_payload",
    "unmask",
]


class Opcode(enum.IntEnum):
    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


CONTROL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
_KNOWN = frozenset(int(op) for op in Opcode)
_H16 = struct.Struct("!BBH")
_H64 = struct.Struct("!BBQ")
_U16 = struct.Struct("!H")

# Codes a peer may send in a close frame (RFC 6455 7.4.1, 7.4.2).
_VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


class Frame(NamedTuple):
    fin: bool
    rsv1: bool
    opcode: Opcode
    payload: bytes


def encode_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """Build one unmasked, final frame. The result is shared by all subscribers."""
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _H16.pack(first, 126, n) + payload
    return _H64.pack(first, 127, n) + payload


def encode_frame_parts(
    opcode: int, prefix: bytes, payload: bytes, suffix: bytes, *, rsv1: bool = False
) -> bytes:
    """:func:`encode_frame` of ``prefix + payload + suffix``, copying each part once.

    An envelope around a shared payload (``/ws``, GraphQL) is built per
    subscriber: one join instead of two concatenations and a third for the header.
    """
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(prefix) + len(payload) + len(suffix)
    if n < 126:
        head = bytes((first, n))
    elif n < 65536:
        head = _H16.pack(first, 126, n)
    else:
        head = _H64.pack(first, 127, n)
    return b"".join((head, prefix, payload, suffix))


def server_payload(frame: bytes) -> memoryview:
    """The payload of a whole unmasked frame as :func:`encode_frame` builds it (no copy)."""
    size = frame[1] & 0x7F
    return memoryview(frame)[2 if size < 126 else 4 if size == 126 else 10 :]


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut so the payload stays within 125 bytes.

    The cut falls on a character boundary: a reason that is not UTF-8 would
    make the client fail the connection with 1007 instead of reading ``code``.
    """
    body = _U16.pack(code) + reason.encode()[:123].decode(errors="ignore").encode()
    return encode_frame(Opcode.CLOSE, body)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` as one big integer (fast in CPython)."""
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def parse_frame(
    buf: bytes | bytearray | memoryview, max_frame_size: int, *, allow_rsv1: bool
) -> tuple[Frame, int] | None:
    """Parse one client frame at the start of ``buf``.

    Returns ``(frame, bytes consumed)``, or ``None`` when more bytes are needed.
    The length is checked from the header alone, so an oversized frame is
    refused before its payload is buffered.

    Raises:
        ProtocolError: unmasked frame, reserved bits or opcode, bad control frame.
        MessageTooBig: payload longer than ``max_frame_size``.
    """
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    fin = bool(b0 & 0x80)
    rsv1 = bool(b0 & 0x40)
    if b0 & 0x30 or (rsv1 and not allow_rsv1):
        raise ProtocolError("reserved bits must be 0")
    op = b0 & 0x0F
    if op not in _KNOWN:
        raise ProtocolError(f"reserved opcode {op:#x}")
    opcode = Opcode(op)
    if not b1 & 0x80:
        raise ProtocolError("client frames must be masked")
    length = b1 & 0x7F
    pos = 2
    if length == 126:
        if len(buf) < 4:
            return None
        length = _U16.unpack_from(buf, 2)[0]
        pos = 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length = struct.unpack_from("!Q", buf, 2)[0]
        if length >> 63:
            raise ProtocolError("64-bit length must have its top bit clear")
        pos = 10
    if opcode in CONTROL_OPCODES:
        if not fin:
            raise ProtocolError("control frames must not be fragmented")
        if length > 125:
            raise ProtocolError("control frame payload over 125 bytes")
        if rsv1:
            raise ProtocolError("control frames must not be compressed")
    if length > max_frame_size:
        raise MessageTooBig(f"frame of {length} bytes over the {max_frame_size} byte limit")
    end = pos + 4 + length
    if len(buf) < end:
        return None
    mask = bytes(buf[pos : pos + 4])
    payload = unmask(bytes(buf[pos + 4 : end]), mask)
    return Frame(fin, rsv1, opcode, payload), end


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a close frame's payload into (code, reason); 1005 when empty.

    Raises:
        ProtocolError: a 1-byte payload or a code a peer may not send.
        InvalidPayload: a reason that is not UTF-8.
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte")
    code = _U16.unpack_from(payload)[0]
    if code not in _VALID_CLOSE and not 3000 <= code <= 4999:
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise InvalidPayload("close reason is not UTF-8") from None
    return code, reason
