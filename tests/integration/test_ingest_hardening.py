"""Ingest against a publisher that errs or an attacker that tries: numbers the formats cannot
carry, foreign pages, duplicate keys, lost answers, retries, and a shutdown mid-request."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from aurigraph_stream.proto import aurigraph_v11_pb2 as pb
from tests.support.server import ServerProcess, run_server
from tests.support.streamtools import OPEN_ARGS, example_event

_hashes = itertools.count(10_000)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(*OPEN_ARGS, tmp_path=tmp_path_factory.mktemp("hardening")) as server:
        yield server


def tx(**changes: Any) -> dict[str, Any]:
    event = {**example_event("transactions"), "txHash": f"0x{next(_hashes):064x}"}
    return {**event, **changes}


def _url(server: ServerProcess, stream: str = "transactions") -> str:
    return f"{server.http}/api/v11/streams/{stream}/events"


def _with_literal(event: dict[str, Any], name: str, literal: bytes) -> bytes:
    """``event`` as JSON text with ``name`` written as ``literal`` (2^70, 21000.0...)."""
    rest = {k: v for k, v in event.items() if k != name}
    return orjson.dumps(rest)[:-1] + b',"' + name.encode() + b'":' + literal + b"}"


def _next_seq(server: ServerProcess, stream: str = "transactions") -> int:
    """Publish a marker event; its seq shows whether anything was published before it."""
    event = tx() if stream == "transactions" else example_event(stream)
    response = httpx.post(_url(server, stream), json=event)
    assert response.status_code == 200, response.text
    seq: int = response.json()["seqs"][0]
    return seq


# -- numbers -------------------------------------------------------------------------
_NUMBERS = [
    ("transactions", "gasUsed", str(2**63).encode()),
    ("transactions", "gasUsed", str(2**64 - 1).encode()),
    ("transactions", "gasUsed", str(2**70).encode()),
    ("transactions", "gasUsed", str(2**53).encode()),
    ("validators", "votingPower", str(2**63).encode()),
    ("metrics", "connections", str(2**64 - 1).encode()),
    ("consensus", "epoch", b"1e300"),
    ("network", "latency", str(2**64).encode()),
]


@pytest.mark.parametrize(
    ("stream", "name", "literal"), _NUMBERS, ids=[f"{n}={v.decode()}" for _, n, v in _NUMBERS]
)
def test_numbers_the_formats_cannot_carry_are_422_naming_the_field(
    server: ServerProcess, stream: str, name: str, literal: bytes
) -> None:
    """Integers past 2^53-1 (inside int64/uint64 and exact in every JSON reader) and numbers
    past it: 422 naming the field, nothing published."""
    before = _next_seq(server, stream)
    body = _with_literal(example_event(stream), name, literal)
    response = httpx.post(_url(server, stream), content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert (response.json()["error"], response.json()["field"]) == (
        "validation_failed",
        f"$.{name}",
    )
    assert _next_seq(server, stream) == before + 1


@pytest.mark.parametrize("literal", [b"21000.0", b"2.1e4"])
def test_an_integer_written_as_a_float_is_published_as_an_integer(
    server: ServerProcess, literal: bytes
) -> None:
    """JSON Schema counts 21000.0 as an integer: it is accepted, and goes out as 21000."""

    async def main() -> None:
        async with websockets.connect(server.ws("/ws/transactions")) as ws:
            body = _with_literal(tx(), "gasUsed", literal)
            response = await asyncio.to_thread(httpx.post, _url(server), content=body, headers=JSON)
            assert response.status_code == 200, response.text
            text = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(text, str)
            assert '"gasUsed":21000,' in text

    asyncio.run(main())


def test_the_largest_safe_integer_reaches_every_format_exactly(server: ServerProcess) -> None:
    """gasUsed 2^53-1 is accepted and read back equal in JSON, MessagePack and Protocol
    Buffers by subscribers of each."""
    big = 2**53 - 1
    event = tx(gasUsed=big)

    async def main() -> None:
        async with (
            websockets.connect(server.ws("/ws/transactions")) as as_json,
            websockets.connect(server.ws("/ws/transactions?format=protobuf")) as as_proto,
        ):
            response = await asyncio.to_thread(httpx.post, _url(server), json=event)
            assert response.status_code == 200, response.text
            got = orjson.loads(await asyncio.wait_for(as_json.recv(), 10))
            assert (got["gasUsed"], type(got["gasUsed"])) == (big, int)
            raw = await asyncio.wait_for(as_proto.recv(), 10)
            assert isinstance(raw, bytes)
            assert pb.ServerMessage.FromString(raw).transactions.gasUsed == big

    asyncio.run(main())


def test_a_validator_past_int64_never_closes_protobuf_snapshots(server: ServerProcess) -> None:
    """votingPower 2^63 is refused, so snapshot=true&format=protobuf still gets its subscribed
    and snapshot frames, not a close 1011."""
    validator = {**example_event("validators"), "validator": "0x" + "7e" * 20}
    body = _with_literal(validator, "votingPower", str(2**63).encode())
    published = httpx.post(_url(server, "validators"), content=body, headers=JSON)

    async def main() -> None:
        url = server.ws("/ws/validators?snapshot=true&format=protobuf")
        async with websockets.connect(url) as ws:
            frames = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]
            binary = [f for f in frames if isinstance(f, bytes)]
            assert len(binary) == 2
            first, second = (pb.ServerMessage.FromString(f) for f in binary)
            assert (first.WhichOneof("body"), second.WhichOneof("body")) == (
                "subscribed",
                "snapshot",
            )
            addresses = {v.validator for v in second.snapshot.validators}
            assert validator["validator"] not in addresses

    asyncio.run(main())
    assert published.status_code == 422


# -- cross-site forgery: JSON only, and the Origin allow-list ---------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonx",
    ],
)
def test_bodies_that_are_not_declared_json_are_415(
    server: ServerProcess, content_type: str | None
) -> None:
    """What a browser sends cross-site without a preflight (text/plain, forms) is 415 with
    the JSON error body, and nothing is published."""
    before = _next_seq(server)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = httpx.post(_url(server), content=orjson.dumps(tx()), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert _next_seq(server) == before + 1


def test_json_with_utf8_charset_is_accepted(server: ServerProcess) -> None:
    """application/json; charset=utf-8 is JSON."""
    headers = {"Content-Type": "application/json; charset=UTF-8"}
    response = httpx.post(_url(server), content=orjson.dumps(tx()), headers=headers)
    assert response.status_code == 200, response.text


def test_a_foreign_origin_cannot_publish(server: ServerProcess) -> None:
    """A page from a site not on the allow-list: 403 origin_not_allowed, nothing published;
    the listed origin, the server's own origin and no Origin at all may publish."""
    before = _next_seq(server)
    foreign = httpx.post(_url(server), json=tx(), headers={"Origin": "https://evil.example"})
    assert (foreign.status_code, foreign.json()["error"]) == (403, "origin_not_allowed")
    assert _next_seq(server) == before + 1
    host = f"127.0.0.1:{server.port}"
    for origin in ("https://dlt.aurigraph.io", f"http://{host}"):
        allowed = httpx.post(_url(server), json=tx(), headers={"Origin": origin})
        assert allowed.status_code == 200, (origin, allowed.text)


# -- duplicate keys ---------------------------------------------------------------------
def test_duplicate_keys_are_422_naming_the_key_and_the_event(server: ServerProcess) -> None:
    """{"gasUsed": 1, "gasUsed": 2}: 422 naming gasUsed and the event's index; a colon in a
    value, or a key spelled with an escaped colon, is no false alarm."""
    before = _next_seq(server)
    event = tx()
    twice = orjson.dumps(event)[:-1] + b',"gasUsed":1}'
    batch = b"[" + orjson.dumps(tx()) + b"," + twice + b"]"
    response = httpx.post(_url(server), content=batch, headers=JSON)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["field"], body["index"]) == ("validation_failed", "$.gasUsed", 1)
    assert _next_seq(server) == before + 1
    # Colons in strings (the timestamp has two) and an escaped colon in a key are not keys.
    escaped = orjson.dumps(tx())[:-1] + b',"x\\u003a":1}'
    response = httpx.post(_url(server), content=escaped, headers=JSON)
    assert (response.status_code, response.json()["field"]) == (422, "$.x:")  # unknown field


# -- pipelined requests: each gets its answer -------------------------------------------
def _read_responses(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    """Read ``count`` HTTP responses with Content-Length bodies (bounded)."""
    sock.settimeout(timeout)
    data = b""
    responses: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(responses) < count and time.monotonic() < deadline:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = next(
                int(line.split(":", 1)[1])
                for line in head.split("\r\n")
                if line.lower().startswith("content-length:")
            )
            end = head_end + 4 + length
            if len(data) >= end:
                responses.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return responses


def test_a_request_pipelined_before_a_malformed_one_gets_its_seqs(server: ServerProcess) -> None:
    """A valid ingest request and a malformed one in one write: the first is answered with its
    seqs (it was published), then the second gets 400, then the connection closes."""
    event = tx()
    body = orjson.dumps(event)
    valid = (
        f"POST /api/v11/streams/transactions/events HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(valid + b"GARBAGE \x00\r\n\r\n")
        first, second = _read_responses(sock, 2)
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed after the refusal
    assert first.startswith(b"HTTP/1.1 200"), first
    (seq,) = orjson.loads(first.split(b"\r\n\r\n", 1)[1])["seqs"]
    assert second.startswith(b"HTTP/1.1 400"), second
    assert orjson.loads(second.split(b"\r\n\r\n", 1)[1])["error"] == "bad_request"
    assert _next_seq(server) == seq + 1


def test_pipelined_requests_that_end_a_read_mid_head_are_not_a_large_head(
    server: ServerProcess,
) -> None:
    """A publisher of single events pipelines many small requests: one read holds more than
    max_head_size of whole requests and then the start of the next head. Only that head's
    bytes count against the limit: every request is answered 200, the split one too."""
    requests = []
    for _ in range(80):  # about 32 KB of whole requests, over the 16 KB head limit
        body = orjson.dumps(tx())
        requests.append(
            f"POST /api/v11/streams/transactions/events HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    whole, last = b"".join(requests[:-1]), requests[-1]
    assert len(whole) > 16384
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(whole + last[:40])  # ends inside the last request's head
        answered = _read_responses(sock, len(requests) - 1)
        assert [r[:12] for r in answered] == [b"HTTP/1.1 200"] * (len(requests) - 1), answered[-1]
        sock.sendall(last[40:])
        (final,) = _read_responses(sock, 1)
    assert final.startswith(b"HTTP/1.1 200"), final


# -- Idempotency-Key ------------------------------------------------------------------
def test_a_retry_with_the_same_idempotency_key_publishes_nothing_new(
    server: ServerProcess,
) -> None:
    """Same key, same body: the original seqs again (Idempotent-Replayed), one delivery each.
    Same key, other body: 422. Malformed key: 400."""
    batch = [tx(), tx()]
    key = {"Idempotency-Key": f"retry-{time.time_ns()}"}

    async def main() -> None:
        async with websockets.connect(server.ws("/ws/transactions")) as ws:
            post = httpx.post
            first = await asyncio.to_thread(post, _url(server), json=batch, headers=key)
            again = await asyncio.to_thread(post, _url(server), json=batch, headers=key)
            assert first.status_code == again.status_code == 200, again.text
            assert again.json() == first.json()
            assert again.headers["idempotent-replayed"] == "true"
            assert "idempotent-replayed" not in first.headers
            marker = await asyncio.to_thread(_next_seq, server)
            seqs = []
            for _ in range(3):
                seqs.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10))["seq"])
            assert seqs == [*first.json()["seqs"], marker]

    asyncio.run(main())
    other = httpx.post(_url(server), json=[tx()], headers=key)
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    for bad in ("", "a b", "k" * 256):
        response = httpx.post(_url(server), json=tx(), headers={"Idempotency-Key": bad})
        assert (response.status_code, response.json()["error"]) == (400, "invalid_idempotency_key")


def test_a_refused_request_does_not_use_up_its_key(server: ServerProcess) -> None:
    """A request refused with 422 published nothing, so its key stays free: the corrected
    request may use it."""
    key = {"Idempotency-Key": f"refused-{time.time_ns()}"}
    bad = tx(gasUsed=-1)
    assert httpx.post(_url(server), json=bad, headers=key).status_code == 422
    assert httpx.post(_url(server), json=bad, headers=key).status_code == 422
    good = httpx.post(_url(server), json=tx(), headers=key)
    assert good.status_code == 200, good.text


# -- shutting down -------------------------------------------------------------------
def test_ingest_while_draining_is_503_and_publishes_nothing(tmp_path: Path) -> None:
    """After SIGTERM, a request whose body completes late gets 503 shutting_down with
    Retry-After, as does a new one; the subscriber gets 1001 and none of those events.
    (The shutdown delay only has to outlast the test's requests on a loaded machine.)"""
    with run_server(*OPEN_ARGS, "--shutdown-delay", "8", tmp_path=tmp_path) as server:
        body = orjson.dumps(tx())
        head = (
            f"POST /api/v11/streams/transactions/events HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()

        async def main() -> None:
            async with websockets.connect(server.ws("/ws/transactions")) as ws:
                marker = await asyncio.to_thread(_next_seq, server)
                assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["seq"] == marker
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    sock.sendall(head + body[:10])  # in flight when SIGTERM comes
                    server.proc.send_signal(signal.SIGTERM)
                    for _ in range(100):  # readiness goes DOWN: the drain has begun
                        ready = await asyncio.to_thread(
                            httpx.get, f"{server.http}/q/health/ready", timeout=5
                        )
                        if ready.status_code == 503:
                            break
                        await asyncio.sleep(0.05)
                    else:
                        raise AssertionError("readiness never went DOWN after SIGTERM")
                    late = await asyncio.to_thread(httpx.post, _url(server), json=tx())
                    assert (late.status_code, late.json()["error"]) == (503, "shutting_down")
                    assert late.headers["retry-after"] == "5"
                    sock.sendall(body[10:])
                    (answer,) = await asyncio.to_thread(_read_responses, sock, 1)
                assert answer.startswith(b"HTTP/1.1 503"), answer
                assert b"retry-after: 5" in answer.lower()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 30)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1001

        asyncio.run(main())
        assert server.stop() == 0
