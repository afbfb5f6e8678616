"""Unit tests of wire/handshake.py: the HTTP side of the upgrade."""

from __future__ import annotations

import base64
import binascii
import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.utils import accept_key as websockets_accept_key

from aurigraph_stream.errors import HandshakeRejected
from aurigraph_stream.wire.handshake import (
    Request,
    accept_key,
    check_upgrade,
    http_error,
    parse_request,
    read_upgrade_head,
    switching_protocols,
)
from tests.support.rawws import upgrade_head

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _request(**headers: str) -> Request:
    base = {
        "upgrade": "websocket",
        "connection": "keep-alive, Upgrade",
        "sec-websocket-version": "13",
        "sec-websocket-key": KEY,
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return Request("GET", "/ws/metrics", {}, {k: v for k, v in base.items() if v})


def test_accept_key_matches_rfc6455_example() -> None:
    """RFC 6455 section 1.3: the sample nonce gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_agrees_with_the_websockets_library() -> None:
    """For random keys, the accept value equals the one the websockets client checks."""
    for _ in range(20):
        key = base64.b64encode(os.urandom(16)).decode()
        assert accept_key(key) == websockets_accept_key(key)


def test_parse_request_reads_path_query_and_headers() -> None:
    """Header names are lower-cased, repeats joined with ', ', the query string parsed."""
    raw = (
        b"GET /ws/transactions?since=12&x=a%20b HTTP/1.1\r\n"
        b"Host: localhost\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        b"sec-websocket-extensions: x-other\r\n\r\n"
    )
    request = parse_request(raw)
    assert request.method == "GET"
    assert request.path == "/ws/transactions"
    assert request.query == {"since": "12", "x": "a b"}
    assert request.header("upgrade") == "websocket"
    assert request.header("sec-websocket-extensions") == "permessage-deflate, x-other"


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /ws/metrics\r\n\r\n", b"GET / FTP/1.0\r\n", b"GET / HTTP/1.1\r\nNo"],
)
def test_parse_request_refuses_what_is_not_http(raw: bytes) -> None:
    """A malformed request line or header line is a 400."""
    with pytest.raises(HandshakeRejected) as info:
        parse_request(raw)
    assert info.value.status == 400


def test_check_upgrade_returns_the_key() -> None:
    """A valid upgrade request gives back the client's key."""
    assert check_upgrade(_request()) == KEY


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        (Request("POST", "/ws/metrics", {}, _request().headers), 405, "method_not_allowed"),
        (_request(upgrade=""), 400, "bad_upgrade"),
        (_request(connection="keep-alive"), 400, "bad_upgrade"),
        (_request(sec_websocket_version="8"), 426, "unsupported_version"),
        (_request(sec_websocket_version=""), 426, "unsupported_version"),
        (_request(sec_websocket_key=""), 400, "bad_key"),
        (_request(sec_websocket_key="not base64!"), 400, "bad_key"),
        (_request(sec_websocket_key="c2hvcnQ="), 400, "bad_key"),
    ],
    ids=[
        "post",
        "no-upgrade",
        "no-connection-upgrade",
        "v8",
        "no-version",
        "no-key",
        "bad-b64",
        "short-key",
    ],
)
def test_check_upgrade_refusals(request_: Request, status: int, error: str) -> None:
    """Each invalid upgrade is refused with its status and slug."""
    with pytest.raises(HandshakeRejected) as info:
        check_upgrade(request_)
    assert (info.value.status, info.value.error) == (status, error)
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in info.value.headers
    if status == 405:
        assert ("Allow", "GET") in info.value.headers


def _decodes_to_16_bytes(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(min_size=0, max_size=20).map(lambda b: base64.b64encode(b).decode()),
        st.text(alphabet=_B64 + "= -_\x00é", min_size=20, max_size=28),
        st.text(max_size=30),
    )
)
def test_a_key_is_accepted_exactly_when_it_decodes_to_16_bytes(key: str) -> None:
    """The key check reads keys as base64.b64decode(validate=True) and a length of 16 do."""
    try:
        check_upgrade(_request(sec_websocket_key=key))
        accepted = True
    except HandshakeRejected:
        accepted = False
    assert accepted is _decodes_to_16_bytes(key)


def test_switching_protocols_response() -> None:
    """The 101 carries the accept key and, when negotiated, the extension answer."""
    plain = switching_protocols(KEY, None, None).decode()
    assert plain.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in plain
    assert "Sec-WebSocket-Extensions" not in plain
    assert plain.endswith("\r\n\r\n")
    deflate = switching_protocols(KEY, "permessage-deflate", None).decode()
    assert "Sec-WebSocket-Extensions: permessage-deflate\r\n" in deflate


def test_http_error_is_a_complete_json_response() -> None:
    """An error response has the status line, headers, an exact Content-Length and JSON body."""
    raw = http_error(
        HandshakeRejected(503, "too_many_connections", "full", (("Retry-After", "5"),))
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    assert "Retry-After: 5" in lines
    assert "Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert orjson.loads(body) == {"error": "too_many_connections", "detail": "full"}


_HEAD = upgrade_head("/ws/metrics?replay=2", connection="keep-alive, Upgrade")


@pytest.mark.parametrize(
    "data",
    [
        _HEAD[:-2],  # not the whole head yet
        _HEAD + b"\x81\x80abcd",  # bytes after the head
        _HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
        _HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        _HEAD.replace(b"keep-alive, Upgrade", b"keep-alive"),
        _HEAD.replace(b"keep-alive, Upgrade", b"keep-alive upgrade"),
        _HEAD.replace(b"GET ", b"POST "),
        # What uvicorn's parser refuses, or reads otherwise, is left to it:
        _HEAD.replace(b"Host:", b"Host :"),  # a space before the colon
        _HEAD.replace(b"Host:", b"Ho\x00st:"),  # NUL, controls, spaces in a name
        _HEAD.replace(b"Host:", b"Ho\x01st:"),
        _HEAD.replace(b"Host:", b"Ho st:"),
        _HEAD.replace(b"Host:", b":"),  # an empty name
        _HEAD.replace(b"127.0.0.1", b"127.0.0.1\r\n x"),  # obs-fold
        _HEAD.replace(b"\r\nHost", b"\nHost"),  # a bare LF
        _HEAD.replace(b"127.0.0.1", b"127.0\x00.0.1"),  # a control character in a value
        _HEAD.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),
        _HEAD.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
        _HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),  # uvicorn: the last
        _HEAD.replace(b"/ws/metrics", b"/ws/met rics"),
        _HEAD.replace(b"/ws/metrics", b"/ws/metrics#x"),
        _HEAD.replace(b"Upgrade: websocket", b"Upgrade: websocket "),  # uvicorn: no upgrade
    ],
    ids=[
        "incomplete",
        "bytes-after",
        "http-1.0",
        "upgrade-to-h2c",
        "no-connection-upgrade",
        "connection-not-a-list",
        "post",
        "space-before-colon",
        "nul-in-name",
        "control-in-name",
        "space-in-name",
        "empty-name",
        "obs-fold",
        "bare-lf",
        "nul-in-value",
        "content-length",
        "transfer-encoding",
        "two-connection-headers",
        "space-in-target",
        "fragment",
        "upgrade-trailing-space",
    ],
)
def test_read_upgrade_head_leaves_every_other_head_to_uvicorn(data: bytes) -> None:
    """Only one complete, strictly formed HTTP/1.1 WebSocket upgrade head, alone, is read."""
    assert read_upgrade_head(data, 16384) is None


def test_read_upgrade_head_reads_what_parse_request_reads() -> None:
    """A head it takes reads the same as parse_request reads it."""
    head = _HEAD.replace(b"\r\n\r\n", b"\r\nX-Twice: a\r\nx-twice:\t b \r\n\r\n")
    request = read_upgrade_head(head, 16384)
    assert request == parse_request(head)
    assert request is not None
    assert (request.path, request.query, request.header("x-twice")) == (
        "/ws/metrics",
        {"replay": "2"},
        "a, b",
    )
    assert read_upgrade_head(head, len(head) - 1) is None  # over max_head


@pytest.mark.parametrize("space", [b"\xa0", b"\x85"], ids=["nbsp", "nel"])
@pytest.mark.parametrize(
    ("old", "new", "status", "error"),
    [
        (b"keep-alive, Upgrade", b"keep-alive, Upgrade%s", 400, "bad_upgrade"),
        (b"Version: 13", b"Version: 13%s", 426, "unsupported_version"),
        (b"==\r\n", b"==%s\r\n", 400, "bad_key"),
    ],
    ids=["connection", "version", "key"],
)
def test_latin1_spaces_are_not_http_whitespace(
    space: bytes, old: bytes, new: bytes, status: int, error: str
) -> None:
    """\\xa0 and \\x85 are whitespace to str.strip(), not to HTTP. uvicorn's parser compares
    bytes: b"Upgrade\\xa0" lists no upgrade (a plain request, 426 from the app), and the
    head it hands over keeps b"13\\xa0", no version 13. The fast path must decline the
    first and both paths refuse the others, or one head gets 101 one way only."""
    head = _HEAD.replace(old, new % space)
    assert head != _HEAD
    with pytest.raises(HandshakeRejected) as info:
        check_upgrade(parse_request(head))  # a head uvicorn handed over
    assert (info.value.status, info.value.error) == (status, error)
    fast = read_upgrade_head(head, 16384)
    if error == "bad_upgrade":
        assert fast is None  # not an upgrade to uvicorn: its answer, not ours
    else:
        assert fast is not None
        with pytest.raises(HandshakeRejected) as again:
            check_upgrade(fast)
        assert (again.value.status, again.value.error) == (status, error)
