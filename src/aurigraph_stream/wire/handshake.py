"""The HTTP side of a WebSocket upgrade (RFC 6455 section 4.2), without I/O.

:func:`read_upgrade_head` reads a first read that is one strict, complete upgrade
head, and declines any other (uvicorn's parser takes those); :func:`parse_request`
reads a head uvicorn's parser already took; :func:`check_upgrade` validates a head,
and :func:`switching_protocols` / :func:`http_error` build the bytes to write.
"""

from __future__ import annotations

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
    "read_upgrade_head",
    "request_timeout",
    "switching_protocols",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# 16 bytes in base64 (RFC 6455 4.2.1): 22 characters and "==", as base64.b64decode(validate=True)
# reads them; one regular expression instead of the decode.
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")
# The whitespace HTTP allows around a value or a list element (RFC 9110 5.6.3 OWS). Not
# str.strip()'s: read as latin-1, a head's bytes \x85 and \xa0 are whitespace to Python,
# and to no HTTP parser (uvicorn's strips bytes, which have no such characters).
_OWS = " \t"


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
        key = name.strip(_OWS).lower()
        value = value.strip(_OWS)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path, _, query = target.partition("?")
    return Request(method, path, dict(parse_qsl(query)) if query else {}, headers)


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    return binascii.b2a_base64(hashlib.sha1(key.encode() + _GUID).digest(), newline=False).decode()


def _lists_upgrade(connection: str) -> bool:
    """Whether a ``Connection`` value lists ``upgrade``, as uvicorn reads it."""
    return "upgrade" in {t.strip(_OWS).lower() for t in connection.split(",")}


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
    if (
        not _lists_upgrade(request.headers.get("connection", ""))
        or request.headers.get("upgrade", "").lower() != "websocket"
    ):
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
    if _KEY.fullmatch(key) is None:
        raise HandshakeRejected(
            400, "bad_key", "Sec-WebSocket-Key must be 16 bytes, base64-encoded"
        )
    return key


_SWITCHING = (
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: "
)


def switching_protocols(key: str, extensions: str | None, subprotocol: str | None) -> bytes:
    """The 101 response that completes the handshake."""
    head = _SWITCHING + accept_key(key)
    if extensions:
        head += f"\r\nSec-WebSocket-Extensions: {extensions}"
    if subprotocol:
        head += f"\r\nSec-WebSocket-Protocol: {subprotocol}"
    return (head + "\r\n\r\n").encode()


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


# The heads the fast path reads: RFC 9112's grammar at its strictest, so that it takes
# no head uvicorn's parser would refuse or read otherwise. A GET of HTTP/1.1 whose
# target is visible ASCII but "#" and '"', then header lines "token:value", the value
# of visible characters, spaces and tabs (so no control character, no bare CR or LF, no
# obs-fold, no space before the colon, no empty name), then the empty line.
_STRICT_HEAD = re.compile(
    rb"GET [!$-~]+ HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)+\r\n"
)
# uvicorn reads the last of these when there are several, and this parser would join
# them; a body's framing is for uvicorn's parser to judge (Content-Length with
# Transfer-Encoding, two lengths): such heads go its way.
_ONCE = frozenset(("connection", "upgrade"))
_BODY = frozenset(("content-length", "transfer-encoding"))


def read_upgrade_head(data: bytes, max_head: int) -> Request | None:
    """The request in ``data`` when it is exactly one strict HTTP/1.1 WebSocket upgrade head.

    ``None`` for anything else: a plain GET, a head split over reads, pipelined bytes,
    HTTP/1.0, a head outside the strict grammar above. Those take uvicorn's ordinary
    path, which answers them as before, so that the two paths never answer one head
    differently; the checks a head passes here are the ones uvicorn makes before it
    hands an upgrade over (``Connection`` lists ``upgrade``, ``Upgrade`` is
    ``websocket``).
    """
    if len(data) > max_head or _STRICT_HEAD.fullmatch(data) is None:
        return None
    request_line, *lines = data.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[:-2]:  # the empty line ends the head: "...\r\n\r\n" splits to "", ""
        name, _, raw = line.partition(":")
        key = name.lower()
        value = raw.strip(_OWS)
        if key in headers:
            if key in _ONCE:
                return None
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
        if key == "upgrade" and raw.endswith((" ", "\t")):
            return None  # uvicorn compares the value with its trailing space: no upgrade
    if (
        headers.get("upgrade", "").lower() != "websocket"
        or not _lists_upgrade(headers.get("connection", ""))
        or not _BODY.isdisjoint(headers)
    ):
        return None
    path, _, query = request_line[4:-9].partition("?")
    return Request("GET", path, dict(parse_qsl(query)) if query else {}, headers)
