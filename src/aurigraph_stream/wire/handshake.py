"""The HTTP side of a WebSocket upgrade (RFC 6455 section 4.2), without I/O.

:func:`whole_upgrade_head` tells whether a first read is one complete upgrade
head; :func:`parse_request` reads a head, :func:`check_upgrade` validates it,
and :func:`switching_protocols` / :func:`http_error` build the bytes to write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

import orjson

from aurigraph_stream.errors import HandshakeRejected

__all__ = [
    "Request",
    "accept_key",
    "check_upgrade",
    "http_error",
    "parse_request",
    "request_timeout",
    "switching_protocols",
    "whole_upgrade_head",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True, slots=True)
class Request:
    """An upgrade request. Header names are lower case; repeats are joined by ", "."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def parse_request(raw: bytes) -> Request:
    """Parse a request head (request line and headers, CRLF separated).

    Raises:
        HandshakeRejected: 400 when the head is not HTTP.
    """
    try:
        text = raw.decode("latin-1")
        head, *lines = text.split("\r\n")
        method, target, version = head.split(" ")
    except ValueError:
        raise HandshakeRejected(400, "bad_request", "malformed request line") from None
    if not version.startswith("HTTP/"):
        raise HandshakeRejected(400, "bad_request", "malformed request line")
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeRejected(400, "bad_request", f"malformed header line {line[:40]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path, _, query = target.partition("?")
    return Request(method, path, dict(parse_qsl(query)) if query else {}, headers)


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def check_upgrade(request: Request) -> str:
    """Validate the upgrade headers and return the client's key.

    Raises:
        HandshakeRejected: 405 for a method other than GET, 426 for a version
            other than 13 (with ``Sec-WebSocket-Version: 13``), 400 otherwise.
    """
    if request.method != "GET":
        raise HandshakeRejected(
            405, "method_not_allowed", "a WebSocket upgrade must use GET", (("Allow", "GET"),)
        )
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if "upgrade" not in tokens or request.headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeRejected(
            400, "bad_upgrade", "expected Connection: Upgrade, Upgrade: websocket"
        )
    if request.headers.get("sec-websocket-version") != "13":
        raise HandshakeRejected(
            426,
            "unsupported_version",
            "only WebSocket version 13 is supported",
            (("Sec-WebSocket-Version", "13"),),
        )
    key = request.headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeRejected(
            400, "bad_key", "Sec-WebSocket-Key must be 16 bytes, base64-encoded"
        ) from None
    return key


def switching_protocols(key: str, extensions: str | None, subprotocol: str | None) -> bytes:
    """The 101 response that completes the handshake."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def http_error(rejected: HandshakeRejected) -> bytes:
    """A complete HTTP error response with a JSON body; the connection closes after it."""
    body = orjson.dumps({"error": rejected.error, "detail": rejected.detail})
    lines = [
        f"HTTP/1.1 {rejected.status} {_reason(rejected.status)}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in rejected.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def request_timeout(seconds: float) -> bytes:
    """The 408 for a request that did not arrive within ``seconds``."""
    return http_error(
        HandshakeRejected(
            408, "request_timeout", f"the request did not arrive within {seconds:g} s"
        )
    )


_CONNECTION_UPGRADE = re.compile(rb"\r\nconnection:[^\r\n]*\bupgrade\b")


def whole_upgrade_head(data: bytes, max_head: int) -> bool:
    """Whether ``data`` is exactly one HTTP/1.1 WebSocket upgrade head, and nothing more.

    Anything else (a plain GET, a head split over reads, pipelined bytes, HTTP/1.0)
    takes uvicorn's ordinary path, which answers it as before.
    """
    if not data.startswith(b"GET ") or not data.endswith(b"\r\n\r\n") or len(data) > max_head:
        return False
    line_end = data.find(b"\r\n")
    if not data[:line_end].endswith(b" HTTP/1.1") or data.find(b"\r\n\r\n") != len(data) - 4:
        return False
    head = data.lower()
    return b"\r\nupgrade: websocket\r\n" in head and _CONNECTION_UPGRADE.search(head) is not None
