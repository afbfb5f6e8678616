"""Reference server ``floor``: the bare uvloop loop a Python fan-out is measured against.

This is the design the product's hub follows, stripped to what a broadcast
cannot do without: one :class:`asyncio.Protocol` with ``__slots__`` per
connection, no task and no queue per connection, no compression
(permessage-deflate is declined even when offered), and for each published
message one unmasked text frame built once and handed to ``transport.write``
of every subscriber in a plain loop. There is nothing else: no keepalive
pings, no slow-consumer cap, no validation, no history. What it measures in a
run is what the event loop and the kernel cost on that machine at that moment,
so the gap between it and our server is what our server adds.

Messages that arrive in one read of the publisher's socket go out as one
buffer per subscriber (one ``write``, one ``send()``), as our hub writes once
per tick. At a low rate every read holds one message, so this changes nothing;
once the loop falls behind, messages queue in the socket and the next read
takes them together. Without it, 10 msg/s to 10,000 subscribers needs 100,000
``send()`` calls a second, more than this machine's cores can make at 10-20 us
each, and the loop falls further behind for as long as the publisher runs.

Subscribers connect to ``/ws/{stream}``; a publisher connects to
``/publish/{stream}`` and every text message it sends goes, unchanged, to that
stream's subscribers (as with :mod:`bench.refserver`). ``GET /`` answers 200
(the harness's readiness probe); other requests get a JSON error.

Address routing, for the throughput scenario: a subscriber of
``/ws/{stream}?address=A`` gets only the messages whose ``from`` or ``to`` is
``A`` (as written: no case folding). When a stream has such subscribers, each
message is parsed (orjson) and looked up by both fields, and each subscriber's
frames of one read still go out in one write. That is the least a server can
do per event when subscribers filter: parse, two dict lookups, the writes.

Run: ``python -m bench.floorserver --port PORT``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from urllib.parse import parse_qs

import orjson

from bench.procstat import run_reference

__all__ = ["FloorConnection", "build_frame", "main"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
MAX_HEAD = 8192  # bytes of upgrade request head
MAX_MESSAGE = 1 << 20  # like bench.refserver's max_size
HANDSHAKE, OPEN, CLOSED = 0, 1, 2
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 426: "Upgrade Required"}
Subscribers = dict["FloorConnection", asyncio.Transport]
# stream -> address -> the subscribers of that address
Routes = dict[str, dict[str, Subscribers]]


def build_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, unmasked server frame (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class FloorConnection(asyncio.Protocol):
    """One connection: the handshake, then masked client frames parsed in place."""

    __slots__ = (
        "address",
        "buf",
        "fragments",
        "outgoing",
        "publisher",
        "routed",
        "routes",
        "state",
        "streams",
        "subscribers",
        "transport",
    )

    def __init__(self, streams: dict[str, Subscribers], routes: Routes | None = None) -> None:
        self.streams = streams
        self.routes: Routes = {} if routes is None else routes
        self.routed: dict[str, Subscribers] | None = None  # a publisher's stream's routes
        self.address = ""  # a routed subscriber's address
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.state = HANDSHAKE
        self.publisher = False
        self.subscribers: Subscribers | None = None  # the stream's: a publisher's audience
        self.fragments: list[bytes] | None = None  # a fragmented text message so far
        self.outgoing: list[bytes] = []  # a publisher's frames from the current read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        self.state = CLOSED
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if self.state == HANDSHAKE:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HEAD:
                    self._http_error(400, "request head too large")
                else:
                    self.buf = data
                return
            self._upgrade(data[:end])
            data = data[end + 4 :]
        n = len(data)
        pos = 0
        while self.state == OPEN and n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if n - start < 2:
                    break
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            elif length == 127:
                if n - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            if not b1 & 0x80:
                self._close(1002, "client frames must be masked")
                return
            if length > MAX_MESSAGE:
                self._close(1009, "message too big")
                return
            end = start + 4 + length
            if end > n:
                break
            pos = end
            self._frame(b0, _unmask(data[start + 4 : end], data[start : start + 4]))
        if self.state == OPEN and pos < n:
            self.buf = data[pos:]
        if self.outgoing:
            self._broadcast()

    # -- frames ---------------------------------------------------------------------------
    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        if b0 & 0x70:
            self._close(1002, "no extension negotiated: RSV bits must be 0")
        elif opcode == 0x1:
            if self.fragments is not None:
                self._close(1002, "new message inside a fragmented one")
            elif fin:
                self._message(payload)
            else:
                self.fragments = [payload]
        elif opcode == 0x0:
            if self.fragments is None:
                self._close(1002, "continuation without a message")
                return
            self.fragments.append(payload)
            if sum(map(len, self.fragments)) > MAX_MESSAGE:
                self._close(1009, "message too big")
            elif fin:
                message = b"".join(self.fragments)
                self.fragments = None
                self._message(message)
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
            self._close(code, "")
        elif opcode == 0x9:
            if self.transport is not None:
                self.transport.write(build_frame(payload, 0xA))
        elif opcode != 0xA:
            self._close(1003 if opcode == 0x2 else 1002, f"unsupported opcode {opcode}")

    def _message(self, payload: bytes) -> None:
        if self.publisher:  # what subscribers send is read and dropped
            self.outgoing.append(build_frame(payload))

    def _broadcast(self) -> None:
        """The fan-out: one buffer, built once, written to every subscriber in a plain loop."""
        outgoing = self.outgoing
        if self.routed:
            self._route(outgoing)
        data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
        outgoing.clear()
        if self.subscribers is None:
            return
        # connection_lost is always scheduled by the loop, never called from write(),
        # so the dict cannot change while this loop runs.
        for transport in self.subscribers.values():
            transport.write(data)

    def _route(self, frames: list[bytes]) -> None:
        """Each frame to the subscribers of its ``from`` and ``to``: one write each per read."""
        routed = self.routed
        assert routed is not None
        out: dict[asyncio.Transport, list[bytes]] = {}
        for frame in frames:
            length = frame[1]  # server frames: unmasked, so the payload follows the length
            message = orjson.loads(frame[2 if length < 126 else 4 if length == 126 else 10 :])
            for field in ("from", "to"):
                subscribers = routed.get(message.get(field, ""))
                if subscribers:
                    for transport in subscribers.values():
                        out.setdefault(transport, []).append(frame)
        for transport, mine in out.items():
            transport.write(mine[0] if len(mine) == 1 else b"".join(mine))

    def _close(self, code: int, reason: str) -> None:
        """Answer (or start) the closing handshake, then close the TCP connection."""
        if self.outgoing:
            self._broadcast()  # what was published before the close still goes out
        transport = self.transport
        self._leave()
        self.state = CLOSED
        if transport is not None:
            transport.write(build_frame(code.to_bytes(2, "big") + reason.encode()[:120], 0x8))
            transport.close()

    def _leave(self) -> None:
        if self.subscribers is not None and not self.publisher:
            self.subscribers.pop(self, None)
        if self.routed is not None and not self.publisher:
            mine = self.routed.get(self.address)
            if mine is not None:
                mine.pop(self, None)
                if not mine:
                    del self.routed[self.address]
        self.subscribers = None
        self.routed = None

    # -- handshake ------------------------------------------------------------------------
    def _upgrade(self, head: bytes) -> None:
        request, *lines = head.decode("latin-1").split("\r\n")
        parts = request.split(" ")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        path, _, query = parts[1].partition("?") if len(parts) == 3 else ("", "", "")
        kind, _, stream = path.strip("/").partition("/")
        if len(parts) != 3 or parts[0] != "GET":
            self._http_error(400, "only GET requests are served")
            return
        if headers.get("upgrade", "").lower() != "websocket":
            if path == "/":
                self._http_response(200, {"server": "floor"})
            else:
                self._http_error(426, "this server speaks only WebSocket")
            return
        if kind not in ("ws", "publish") or not stream or "/" in stream:
            self._http_error(404, f"no WebSocket endpoint at {path}")
            return
        key = headers.get("sec-websocket-key", "")
        if headers.get("sec-websocket-version") != "13" or not key:
            self._http_error(400, "Sec-WebSocket-Version: 13 and a key are required")
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert self.transport is not None
        # No Sec-WebSocket-Extensions in the answer: permessage-deflate is declined.
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self.state = OPEN
        address = parse_qs(query).get("address", [""])[-1]
        if kind == "publish":
            self.publisher = True
            self.subscribers = self.streams.setdefault(stream, {})
            self.routed = self.routes.setdefault(stream, {})
        elif address:  # routed: only the messages from or to this address
            self.address = address
            self.routed = self.routes.setdefault(stream, {})
            self.routed.setdefault(address, {})[self] = self.transport
        else:
            self.subscribers = self.streams.setdefault(stream, {})
            self.subscribers[self] = self.transport

    def _http_error(self, status: int, detail: str) -> None:
        slug = REASONS[status].lower().replace(" ", "_")
        self._http_response(status, {"error": slug, "detail": detail})

    def _http_response(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.state = CLOSED
        if self.transport is not None:
            self.transport.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            self.transport.close()


async def _serve(host: str, port: int) -> None:
    streams: dict[str, Subscribers] = {}
    routes: Routes = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FloorConnection(streams, routes), host, port, backlog=4096
    )
    print(f"ready on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    run_reference(__doc__ or "", _serve)


if __name__ == "__main__":
    main()
