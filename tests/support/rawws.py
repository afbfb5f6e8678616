"""A minimal WebSocket client on a plain socket, for tests that must misbehave.

Library clients answer pings, fragment politely and read eagerly; the tests of
limits, keepalive and slow consumers need a client that does none of that, and
that shows the raw bytes the server sends (RSV1, close payloads, HTTP errors).
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "HttpResponse",
    "RawFrame",
    "RawWebSocket",
    "frame_bytes",
    "read_http_response",
    "server_frames",
    "upgrade_head",
]

_MAX_HEAD = 65536  # bytes of response head a test will wait for
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lower case
    body: bytes

    def json(self) -> dict[str, Any]:
        data = orjson.loads(self.body)
        assert isinstance(data, dict), f"not a JSON object: {self.body!r}"
        return data


@dataclass(frozen=True)
class RawFrame:
    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes

    def close_code(self) -> int:
        assert self.opcode == OP_CLOSE, f"not a close frame: opcode {self.opcode}"
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    def inflate(self) -> bytes:
        """The payload of a permessage-deflate message (RFC 7692 7.2.2)."""
        return zlib.decompressobj(-15).decompress(self.payload + b"\x00\x00\xff\xff")


def _recv_exact(sock: socket.socket, n: int, buf: bytearray, deadline: float) -> bytes:
    for _ in range(n + 1):  # each pass reads at least one byte or raises
        if len(buf) >= n:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"wanted {n} bytes, have {len(buf)}")
        sock.settimeout(remaining)
        chunk = sock.recv(max(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError(f"connection closed; wanted {n} bytes, have {len(buf)}")
        buf += chunk
    else:
        raise AssertionError("unreachable: every pass reads a byte")
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_http_response(sock: socket.socket, buf: bytearray, timeout: float = 5.0) -> HttpResponse:
    """Read one HTTP response head, and its body when it has a Content-Length."""
    deadline = time.monotonic() + timeout
    for _ in range(_MAX_HEAD):  # each pass reads at least one byte or raises
        if b"\r\n\r\n" in buf:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete HTTP response head")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head: {bytes(buf)!r}")
        buf += chunk
    else:
        raise AssertionError(f"response head over {_MAX_HEAD} bytes")
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    del buf[:]
    buf += rest
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = _recv_exact(sock, length, buf, deadline) if length else b""
    return HttpResponse(int(status_line.split(" ")[1]), headers, body)


def upgrade_head(
    path: str,
    *,
    extensions: str | None = None,
    version: str = "13",
    key: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    connection: str = "Upgrade",
) -> bytes:
    """The head of a WebSocket upgrade request (a random key unless given)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        f"Connection: {connection}",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
    ]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawWebSocket:
    """One client connection. Nothing happens unless the test calls a method."""

    def __init__(
        self,
        port: int,
        *,
        rcvbuf: int | None = None,
        host: str = "127.0.0.1",
        source: str | None = None,
    ) -> None:
        """``source``: the loopback address to connect from (127.0.0.0/8 is all local),
        so that one test can be several client addresses."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            self.sock.bind((source, 0))
        if rcvbuf is not None:
            # Before connect, so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5.0)
        self.sock.connect((host, port))
        self.buf = bytearray()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(
        self,
        path: str,
        *,
        extensions: str | None = None,
        version: str = "13",
        key: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> HttpResponse:
        """Send an upgrade request and read the response head (101 or an error)."""
        head = upgrade_head(path, extensions=extensions, version=version, key=key, extra=extra)
        self.sock.sendall(head)
        return self.read_response()

    def read_response(self, timeout: float = 5.0) -> HttpResponse:
        deadline = time.monotonic() + timeout
        for _ in range(_MAX_HEAD):  # each pass reads at least one byte or raises
            if b"\r\n\r\n" in self.buf:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete HTTP response head")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before the response: {bytes(self.buf)!r}")
            self.buf += chunk
        else:
            raise AssertionError(f"response head over {_MAX_HEAD} bytes")
        # A 101 has no Content-Length: what follows its head (the first frames) stays in buf.
        return read_http_response(self.sock, self.buf, timeout)

    def open(self, path: str, *, extensions: str | None = None) -> HttpResponse:
        """Complete a handshake; fail the test unless the server answers 101."""
        response = self.request(path, extensions=extensions)
        assert response.status == 101, f"handshake refused: {response}"
        return response

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False
    ) -> None:
        """Send one masked frame (clients must mask, RFC 6455 5.3)."""
        self.sock.sendall(frame_bytes(opcode, payload, fin=fin, rsv1=rsv1))

    def recv_frame(self, timeout: float = 5.0) -> RawFrame:
        deadline = time.monotonic() + timeout
        b0, b1 = _recv_exact(self.sock, 2, self.buf, deadline)
        assert not b1 & 0x80, "server frames must not be masked"
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", _recv_exact(self.sock, 2, self.buf, deadline))[0]
        elif length == 127:
            length = struct.unpack("!Q", _recv_exact(self.sock, 8, self.buf, deadline))[0]
        payload = _recv_exact(self.sock, length, self.buf, deadline)
        return RawFrame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload)

    def recv_until(self, opcode: int, timeout: float = 5.0, limit: int = 100_000) -> RawFrame:
        """Read frames (at most ``limit``) until one with ``opcode`` arrives."""
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == opcode:
                return frame
        raise AssertionError(f"no frame with opcode {opcode} in {limit} frames")


def frame_bytes(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = (
        int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    ).to_bytes(n, "big")
    return head + mask + masked


def server_frames(data: bytes) -> list[RawFrame]:
    """The (unmasked) server frames in ``data``, which must hold whole frames only."""
    frames: list[RawFrame] = []
    at = 0
    for _ in range(len(data)):  # each pass consumes at least two bytes
        if at >= len(data):
            break
        b0, b1 = data[at], data[at + 1]
        assert not b1 & 0x80, "server frames are not masked"
        length, at = b1 & 0x7F, at + 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, at)
            at += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, at)
            at += 8
        payload = data[at : at + length]
        assert len(payload) == length, "a frame cut short"
        frames.append(RawFrame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload))
        at += length
    return frames
