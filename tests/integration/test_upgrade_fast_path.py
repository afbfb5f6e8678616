"""Upgrade heads take the fast path to the WebSocket layer, and everything else uvicorn's."""

from __future__ import annotations

import socket

import pytest

from tests.support.attack import wait_until_read
from tests.support.rawws import (
    OP_PING,
    OP_PONG,
    RawWebSocket,
    frame_bytes,
    read_http_response,
    upgrade_head,
)
from tests.support.server import ServerProcess

HEAD = upgrade_head("/ws/metrics", connection="keep-alive, Upgrade")


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


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "head-split"])
def test_head_with_a_frame_behind_it_upgrades(quiet_server: ServerProcess, split: bool) -> None:
    """An upgrade head sent together with a frame takes uvicorn's path, gets 101, and the frame
    is read: its ping is answered. (uvicorn hands the head on, not what followed it in the
    same read: the frame used to be lost.)"""
    ping = frame_bytes(OP_PING, b"behind the head")
    with RawWebSocket(quiet_server.port) as ws:
        if split:  # the head in two reads, the frame with the second
            ws.sock.sendall(HEAD[:40])
            wait_until_read(ws.sock)
            ws.sock.sendall(HEAD[40:] + ping)
        else:
            ws.sock.sendall(HEAD + ping)
        assert ws.read_response().status == 101
        assert ws.recv_until(OP_PONG).payload == b"behind the head"


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
