"""A minimal WebSocket subscriber: raw asyncio protocol, its own handshake and frame parser.

The load generator must cost far less per delivery than the servers it
measures, so this client does only what measuring needs: it sends the
upgrade request, parses server frames in place (no per-message objects
beyond the payload slice), answers pings and closes, and records each
message's latency and ``seq``. Parsing the JSON is done once per distinct
payload per process (:attr:`Recorder.parsed`): every subscriber of a
broadcast receives the same bytes, so the other copies cost a dict lookup.
Servers that keep a compression context per connection send different bytes
to each subscriber; those are inflated per connection, as a browser would.

A GraphQL subscriber (``graphql=``, a subscribe payload) offers the
``graphql-transport-ws`` subprotocol, sends ``connection_init`` and its
``subscribe`` in one write after the 101, and is ready at ``connection_ack``.
Its ``next`` messages are its own envelope around a result every subscriber of
the document shares: the envelope is cut off (its prefix is known) and the
result parsed once per process, like a JSON endpoint's message.

A resuming subscriber (``control=True``: its path asks for ``replay`` or
``since``) reads the ``subscribed`` control frame the server sends first: the
epoch it needs to resume, and whether the server recovered what it asked for
(:attr:`Recorder.unrecovered` counts the refusals). It is opened with the
last seq it had, so a gap across a reconnect counts like any other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson

from bench.histogram import SIZE, bucket_of

__all__ = ["DEFLATE_OFFER", "GRAPHQL_PROTOCOL", "Recorder", "Subscriber", "iso_us", "timestamp_us"]

GRAPHQL_PROTOCOL = "graphql-transport-ws"
_ACK = b'{"type":"connection_ack"}'

# What browsers send: permessage-deflate with client_max_window_bits, and nothing
# that forces the server's hand (no server_no_context_takeover request).
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
_TAIL = b"\x00\x00\xff\xff"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_PARSED_LIMIT = 50_000  # distinct payloads remembered per process before the cache resets
_LINGER_RST = struct.pack("ii", 1, 0)


def timestamp_us(text: str) -> int:
    """ISO-8601 (``...Z``) to integer microseconds since the epoch, exactly."""
    return (datetime.fromisoformat(text) - _EPOCH) // _US


def iso_us(wall_us: int) -> str:
    """Integer microseconds since the epoch to ISO-8601 UTC with 6 fraction digits and Z."""
    dt = _EPOCH + timedelta(microseconds=wall_us)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Recorder:
    """Everything one load-generator process measures, shared by its connections."""

    __slots__ = (
        "bad",
        "closes",
        "deliveries",
        "dropped",
        "first",
        "hist",
        "max_us",
        "parsed",
        "resumed",
        "stale",
        "unrecovered",
    )

    def __init__(self) -> None:
        self.hist = [0] * SIZE
        self.max_us = 0
        self.first = 0  # messages with a lower seq belong to an earlier phase
        self.stale = 0
        self.deliveries = 0
        self.bad = 0  # messages without a parseable seq/timestamp
        self.dropped = 0  # connections that ended without our asking
        self.closes: Counter[int] = Counter()  # close codes the servers sent
        self.parsed: dict[bytes, tuple[int, int]] = {}
        self.resumed = 0  # subscribed frames saying recovered: true
        self.unrecovered = 0  # subscribed frames saying recovered: false

    def reset(self, first: int) -> None:
        self.hist = [0] * SIZE
        self.max_us = 0
        self.first = first
        self.stale = 0
        self.deliveries = 0
        self.bad = 0
        self.dropped = 0
        self.closes.clear()
        self.resumed = 0
        self.unrecovered = 0

    def parse(self, payload: bytes, compressed: bool) -> tuple[int, int]:
        """``(seq, timestamp in us)`` of a message; ``(-1, 0)`` if it has none."""
        parsed = self.parsed
        if len(parsed) >= _PARSED_LIMIT:
            parsed.clear()
        try:
            raw = zlib.decompressobj(-15).decompress(payload + _TAIL) if compressed else payload
            message = orjson.loads(raw)
            if "data" in message and "seq" not in message:  # a GraphQL result: its one field
                message = next(iter(message["data"].values()))
            info = (int(message["seq"]), timestamp_us(message["timestamp"]))
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.bad += 1
            info = (-1, 0)
        parsed[payload] = info
        return info

    def buckets(self) -> dict[int, int]:
        return {i: n for i, n in enumerate(self.hist) if n}


def _mask(payload: bytes) -> bytes:
    """Prefix a random masking key and mask ``payload`` (client frames must be masked)."""
    key = os.urandom(4)
    n = len(payload)
    if not n:
        return key
    stream = (key * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return key + masked.to_bytes(n, "big")


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _mask(payload)


class Subscriber(asyncio.Protocol):
    """One subscriber connection. ``ready`` resolves when the 101 arrives (or fails)."""

    __slots__ = (
        "buf",
        "closing",
        "control",
        "count",
        "deflate",
        "epoch",
        "frag",
        "frag_rsv1",
        "gaps",
        "gql",
        "gql_start",
        "inflater",
        "max_seq",
        "ooo",
        "open",
        "path",
        "ready",
        "rec",
        "request",
        "stride",
        "transport",
    )

    def __init__(
        self,
        rec: Recorder,
        host: str,
        path: str,
        offer_deflate: bool,
        ready: asyncio.Future[int],
        graphql: str | None = None,
        op_id: str = "1",
        *,
        control: bool = False,
        max_seq: int = 0,
        stride: int = 1,
    ) -> None:
        self.rec = rec
        self.path = path
        self.control = control  # control frames come (replay, since): read them
        self.epoch = ""  # the stream's epoch, from the subscribed frame
        self.ready: asyncio.Future[int] | None = ready
        self.transport: asyncio.Transport | None = None
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if offer_deflate:
            lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}")
        # GraphQL: what to send after the 101, and the prefix of this subscriber's results.
        self.gql: bytes | None = None
        self.gql_start = b""
        if graphql is not None:
            lines.append(f"Sec-WebSocket-Protocol: {GRAPHQL_PROTOCOL}")
            ident = orjson.dumps(op_id)
            self.gql = b'{"id":' + ident + b',"type":"next","payload":'
            subscribe = b'{"id":' + ident + b',"type":"subscribe","payload":' + graphql.encode()
            self.gql_start = _client_frame(0x1, b'{"type":"connection_init"}') + _client_frame(
                0x1, subscribe + b"}"
            )
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.buf = b""
        self.open = False
        self.closing = False
        self.deflate = False  # permessage-deflate negotiated
        self.inflater: zlib._Decompress | None = None  # only with server context takeover
        self.frag: list[bytes] | None = None
        self.frag_rsv1 = 0
        self.max_seq = max_seq  # a resumed connection starts where its predecessor stopped
        # Seqs this connection gets are ``stride`` apart (a filter on one of ``stride``
        # addresses that the publisher takes in turn); 1 for a whole stream.
        self.stride = stride
        self.count = 0
        self.ooo = 0
        self.gaps = 0

    # -- asyncio.Protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the ignore.
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and not self.closing:
            self.rec.dropped += 1
        self.open = False
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(0)
        self.ready = None

    def data_received(self, data: bytes) -> None:
        if not self.open:
            data = self._handshake(data)
            if not data:
                return
        now_us = time.time_ns() // 1000  # one clock read for everything in this read
        if self.buf:
            data = self.buf + data
            self.buf = b""
        n = len(data)
        pos = 0
        while pos + 2 <= n:
            length = data[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if pos + 4 > n:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if pos + 10 > n:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > n:
                break
            b0 = data[pos]
            pos = end
            opcode = b0 & 0x0F
            if (opcode == 1 or opcode == 2) and b0 & 0x80:
                self._deliver(data[start:end], b0 & 0x40, now_us)
            else:
                self._other(b0, opcode, data[start:end], now_us)
        if pos < n:
            self.buf = data[pos:]

    # -- messages -------------------------------------------------------------
    def _deliver(self, payload: bytes, rsv1: int, now_us: int) -> None:
        rec = self.rec
        if rsv1 and self.inflater is not None:
            payload = self.inflater.decompress(payload + _TAIL)
            rsv1 = 0
        prefix = self.gql
        if prefix is not None:
            if not payload.startswith(prefix):
                self._graphql_control(payload)
                return
            payload = payload[len(prefix) : -1]  # the shared result, without the envelope
        elif self.control and payload.startswith(b'{"type":'):
            self._control(payload)
            return
        info = rec.parsed.get(payload)
        if info is None:
            info = rec.parse(payload, bool(rsv1))
        seq, ts = info
        if seq < rec.first:
            rec.stale += 1
            return
        latency = now_us - ts
        if 0 <= latency < 100_000:
            rec.hist[latency // 10] += 1
        else:
            rec.hist[bucket_of(latency)] += 1
        if latency > rec.max_us:
            rec.max_us = latency
        rec.deliveries += 1
        self.count += 1
        last = self.max_seq
        if seq > last:
            stride = self.stride
            if last and seq != last + stride:
                self.gaps += (seq - last) // stride - 1 if stride > 1 else seq - last - 1
            self.max_seq = seq
        else:
            self.ooo += 1

    def _other(self, b0: int, opcode: int, payload: bytes, now_us: int) -> None:
        transport = self.transport
        if opcode == 0x9 and transport is not None and not self.closing:
            transport.write(_client_frame(0xA, payload))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.rec.closes[code] += 1
            if transport is not None:
                if not self.closing:
                    transport.write(_client_frame(0x8, payload[:2]))
                transport.close()
            self.open = False
        elif opcode in (0x0, 0x1, 0x2):  # a fragment: rare, so kept off the fast path
            if opcode:
                self.frag = [payload]
                self.frag_rsv1 = b0 & 0x40  # RSV1 is set on the first frame only
            elif self.frag is not None:
                self.frag.append(payload)
            if b0 & 0x80 and self.frag is not None:
                message = b"".join(self.frag)
                self.frag = None
                self._deliver(message, self.frag_rsv1, now_us)

    def _control(self, payload: bytes) -> None:
        """A control frame on a stream endpoint: the subscribed reply says the epoch."""
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.rec.bad += 1
            return
        if frame.get("type") != "subscribed":
            return
        self.epoch = str(frame["position"]["epoch"])
        if frame.get("recovered", False):
            self.rec.resumed += 1
        else:
            self.rec.unrecovered += 1

    def _graphql_control(self, payload: bytes) -> None:
        """A graphql-transport-ws message that is not a result: the ack makes it ready."""
        if payload == _ACK:
            ready = self.ready
            self.ready = None
            if ready is not None and not ready.done():
                ready.set_result(1)
        else:  # an error message: the subscription was refused
            self.rec.bad += 1

    # -- handshake ------------------------------------------------------------
    def _handshake(self, data: bytes) -> bytes:
        """Consume the 101 response; returns bytes that follow it (frames)."""
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head = self.buf[:end].decode("latin-1")
        rest = self.buf[end + 4 :]
        self.buf = b""
        status_line, *headers = head.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        ready = self.ready
        self.ready = None
        if status != 101:
            if ready is not None and not ready.done():
                ready.set_result(-status)
            if self.transport is not None:
                self.transport.close()
            return b""
        for line in headers:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
                self.deflate = True
                if "server_no_context_takeover" not in value:
                    self.inflater = zlib.decompressobj(-15)
        self.open = True
        if self.gql is not None and self.transport is not None:
            self.ready = ready  # ready at connection_ack
            self.transport.write(self.gql_start)
        elif ready is not None and not ready.done():
            ready.set_result(1)
        return rest

    # -- control (called by the worker) ----------------------------------------
    def reset(self, first: int) -> None:
        self.count = 0
        self.ooo = 0
        self.gaps = 0
        if first > 0:
            # Strided: where its seqs start is the first one it gets (0: not known yet).
            self.max_seq = first - 1 if self.stride == 1 else 0

    def drop(self) -> None:
        """End the connection at once with a TCP reset: no TIME_WAIT left on either side."""
        self.closing = True
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.abort()
