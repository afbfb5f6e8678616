"""permessage-deflate (RFC 7692), shaped so one compression serves everyone.

The server always answers with ``server_no_context_takeover``: every message
is compressed from an empty window, so the compressed bytes do not depend on
what a connection received before and one result can be written to every
subscriber. It also asks for ``client_no_context_takeover`` (RFC 7692 7.1.1.2
lets the server add it unasked), so inbound messages inflate with a fresh,
short-lived decompressor. Either way no connection keeps zlib state, which is
what makes compressed connections cost no more memory than plain ones.

Negotiation, per offer, first acceptable wins::

    offer parameter               answer
    server_no_context_takeover    echoed (we always send it anyway)
    client_no_context_takeover    echoed (we always send it anyway)
    server_max_window_bits=N      9 <= N <= 15: echoed, compress with N; else decline
    client_max_window_bits[=N]    ignored: we inflate with 15, which reads any window
    anything else or a repeat     decline the offer
"""

from __future__ import annotations

import functools
import struct
import zlib

from aurigraph_stream.errors import MessageTooBig, ProtocolError

__all__ = ["compress", "decompress", "envelope", "inflate_head", "negotiate"]

_TAIL = b"\x00\x00\xff\xff"
_DEFAULT_BITS = 15
_STORED_MAX = 65535  # bytes one stored block holds
_LENGTHS = struct.Struct("<HH")  # a stored block's LEN and NLEN


# Clients of one kind send the same header every time (a browser's is always
# "permessage-deflate; client_max_window_bits"): each connect would parse it again.
@functools.lru_cache(maxsize=256)
def negotiate(header: str | None) -> tuple[int, str] | None:
    """Choose from a ``Sec-WebSocket-Extensions`` request header.

    Returns ``(window_bits, response header value)`` or ``None`` when there is
    no acceptable permessage-deflate offer (the connection then gets plain
    frames).
    """
    if not header:
        return None
    for offer in header.split(","):
        name, *params = (part.strip() for part in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        accepted = _accept(params)
        if accepted is not None:
            return accepted
    return None


def _is_number(value: str) -> bool:
    # ASCII only: str.isdigit() is also true for "²", which int() refuses.
    return value.isascii() and value.isdigit()


def _accept(params: list[str]) -> tuple[int, str] | None:
    seen: set[str] = set()
    bits = _DEFAULT_BITS
    for param in params:
        key, _, value = (s.strip() for s in param.partition("="))
        key = key.lower()
        value = value.strip('"')
        if key in seen:
            return None
        seen.add(key)
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value:
                return None
        elif key == "server_max_window_bits":
            if not _is_number(value) or not 9 <= int(value) <= 15:
                return None
            bits = int(value)
        elif key == "client_max_window_bits":
            if value and (not _is_number(value) or not 8 <= int(value) <= 15):
                return None
        else:
            return None
    answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    if "server_max_window_bits" in seen:
        answer += f"; server_max_window_bits={bits}"
    return bits, answer


def compress(payload: bytes, level: int, window_bits: int = _DEFAULT_BITS) -> bytes:
    """Compress one whole message from an empty window, as RFC 7692 7.2.1 frames it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(_TAIL) else data


def envelope(prefix: bytes, suffix: bytes) -> tuple[bytes, bytes]:
    """``(head, tail)`` such that ``head + compress(payload) + tail`` is a message of
    ``prefix + payload + suffix``, compressed as :func:`compress` would take it.

    So a payload shared by subscribers with envelopes of their own (GraphQL
    operation ids, ``/ws`` subscription ids) is compressed once, and each
    envelope is joined around it as deflate *stored* blocks (RFC 1951 3.2.4:
    bytes as they are, behind a 5-byte header). The compressed payload
    refers to nothing before it (it was compressed from an empty window), so
    the message inflates whatever the blocks around it hold:

        head  00 LEN NLEN prefix                 a stored block, at the message's start
        body  compress(payload)                  ends with the header of an empty stored
                                                 block (the sync flush) whose LEN NLEN
                                                 (00 00 ff ff) compress() cut off
        tail  LEN NLEN suffix 00                 that block, now holding the suffix, then
                                                 the header of another, for the receiver
                                                 to complete with 00 00 ff ff (RFC 7692 7.2.2)
    """
    head = b"".join(_stored(prefix, first=True)) if prefix else b""
    tail = b"".join(_stored(suffix, first=False)) + b"\x00" if suffix else b""
    return head, tail


def _stored(data: bytes, *, first: bool) -> list[bytes]:
    """``data`` as stored blocks; ``first``: with the first block's header byte (else it
    continues a block whose header is already written)."""
    parts = []
    for start in range(0, len(data), _STORED_MAX):
        chunk = data[start : start + _STORED_MAX]
        if start or first:
            parts.append(b"\x00")  # BFINAL 0, BTYPE 00 (stored), padded to the byte
        parts.append(_LENGTHS.pack(len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
    return parts


def inflate_head(data: bytes | memoryview, size: int) -> bytes:
    """The first ``size`` bytes a compressed message inflates to (fewer if it is shorter)."""
    try:
        return zlib.decompressobj(-15).decompress(data, size)
    except zlib.error:
        return b""


def decompress(data: bytes, max_size: int) -> bytes:
    """Inflate one client message, refusing to produce more than ``max_size`` bytes.

    Raises:
        MessageTooBig: the message inflates past ``max_size`` (a zip bomb).
        ProtocolError: the data is not valid deflate.
    """
    decompressor = zlib.decompressobj(-15)
    try:
        out = decompressor.decompress(data + _TAIL, max_size + 1)
    except zlib.error as exc:
        raise ProtocolError(f"invalid deflate data: {exc}") from None
    if len(out) > max_size or decompressor.unconsumed_tail:
        raise MessageTooBig(f"message inflates past the {max_size} byte limit")
    return out
