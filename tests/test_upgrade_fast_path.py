"""Upgrade heads take the fast path to the WebSocket layer, and everything else uvicorn's."""

from __future__ import annotations

import base64
import os
import socket

import pytest

from aurigraph_stream.wire.handshake import whole_upgrade_head
from tests.rawws import read_http_response
from tests.server import ServerProcess

KEY = base64.b64encode(os.urandom(16)).decode()
HEAD = (
    "GET /ws/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
).encode()


@pytest.mark.parametrize(
    ("data", "fast"),
    [
        (HEAD, True),
        (HEAD[:-2], False),  # not the whole head yet
        (HEAD + b"\x81\x80abcd", False),  # bytes after the head
        (HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"), False),
        (HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"), False),
        (HEAD.replace(b"keep-alive, Upgrade", b"keep-alive"), False),
        (HEAD.replace(b"GET ", b"POST "), False),
    ],
)
def testwhole_upgrade_head(data: bytes, fast: bool) -> None:
    """Only one complete HTTP/1.1 WebSocket upgrade head, alone, is recognised."""
    assert whole_upgrade_head(data, 16384) is fast


def _exchange(port: int, chunks: list[bytes]) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
        return read_http_response(sock, bytearray()).status


def test_split_head_still_upgrades(quiet_server: ServerProcess) -> None:
    """A head that arrives in two reads goes through uvicorn's parser and still gets 101."""
    whole = _exchange(quiet_server.port, [HEAD])
    split = _exchange(quiet_server.port, [HEAD[:40], HEAD[40:]])
    assert (whole, split) == (101, 101)


def test_plain_get_on_a_stream_path_is_not_taken_for_an_upgrade(
    quiet_server: ServerProcess,
) -> None:
    """Without Upgrade headers, GET /ws/metrics still reaches the HTTP app: 426."""
    plain = b"GET /ws/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert _exchange(quiet_server.port, [plain]) == 426


def test_upgrade_after_a_request_on_the_same_connection(quiet_server: ServerProcess) -> None:
    """A kept-alive HTTP connection that asks for an upgrade later still gets its 101."""
    with socket.create_connection(("127.0.0.1", quiet_server.port), timeout=5) as sock:
        buf = bytearray()
        sock.sendall(b"GET /q/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_http_response(sock, buf)
        sock.sendall(HEAD)
        second = read_http_response(sock, buf)
    assert (first.status, b'"UP"' in first.body, second.status) == (200, True, 101)


def test_head_with_a_frame_behind_it_upgrades(quiet_server: ServerProcess) -> None:
    """An upgrade head sent together with more bytes takes uvicorn's path and still gets 101."""
    ping = bytes((0x89, 0x80)) + os.urandom(4)  # a masked, empty ping
    assert _exchange(quiet_server.port, [HEAD + ping]) == 101


def test_odd_digits_in_an_extension_offer_get_plain_frames(quiet_server: ServerProcess) -> None:
    """An offer with a superscript digit (a latin-1 byte) is declined; the upgrade succeeds."""
    head = HEAD.replace(
        b"\r\n\r\n",
        b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\xb2\r\n\r\n",
    )
    with socket.create_connection(("127.0.0.1", quiet_server.port), timeout=5) as sock:
        sock.sendall(head)
        response = read_http_response(sock, bytearray())
    assert (response.status, "sec-websocket-extensions" in response.headers) == (101, False)
