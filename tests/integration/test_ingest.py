"""POST /api/v11/streams/{stream}/events: validated, all-or-nothing, broadcast in order."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.support.server import ServerProcess, run_server
from tests.support.streamtools import example_event

_hashes = itertools.count(1)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server fed by ingest only."""
    with run_server(
        "--no-simulate", "--log-level", "INFO", tmp_path=tmp_path_factory.mktemp("ingest")
    ) as server:
        yield server


def tx(**changes: Any) -> dict[str, Any]:
    """A valid transactions event with a fresh txHash."""
    event = {
        "timestamp": "2025-10-25T09:35:02Z",
        "txHash": f"0x{next(_hashes):064x}",
        "from": "0x" + "11" * 20,
        "to": "0x" + "22" * 20,
        "value": "1000000000000000000",
        "status": "PENDING",
        "gasUsed": 21000,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def _url(server: ServerProcess, stream: str = "transactions") -> str:
    return f"{server.http}/api/v11/streams/{stream}/events"


async def _recv(ws: websockets.ClientConnection, n: int) -> list[dict[str, Any]]:
    return [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(n)]


def test_valid_batch_is_broadcast_in_order_with_the_returned_seqs(server: ServerProcess) -> None:
    """A valid batch reaches a subscriber in order, each event with exactly its returned seq."""
    events = [tx(gasUsed=21000 + i) for i in range(5)]

    async def main() -> None:
        async with (
            websockets.connect(server.ws("/ws/transactions")) as ws,
            httpx.AsyncClient() as http,
        ):
            response = await http.post(_url(server), json=events)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["stream"] == "transactions"
            assert body["accepted"] == 5
            seqs = body["seqs"]
            assert seqs == list(range(seqs[0], seqs[0] + 5))
            received = await _recv(ws, 5)
            assert received == [{**e, "seq": s} for e, s in zip(events, seqs, strict=True)]

            single = tx()
            response = await http.post(_url(server), json=single)
            assert response.json()["seqs"] == [seqs[-1] + 1]
            assert await _recv(ws, 1) == [{**single, "seq": seqs[-1] + 1}]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (tx(gasUsed="21000"), "$.gasUsed"),
        (tx(gasUsed=None), "$.gasUsed"),
        (tx(txHash="0x1234"), "$.txHash"),
        (tx(value="1e18"), "$.value"),
        (tx(value=1000), "$.value"),
        (tx(status="DONE"), "$.status"),
        (tx(**{"from": "0xZZ"}), "$.from"),
        (tx(timestamp="2025-10-25 09:35:02"), "$.timestamp"),
        (tx(timestamp="2025-13-25T09:35:02Z"), "$.timestamp"),
        (tx(timestamp="2025-10-25T09:35:02+02:00"), "$.timestamp"),
        (tx(extra=1), "$.extra"),
        ({**tx(), "seq": 5}, "$.seq"),
    ],
    ids=[
        "gasUsed-string",
        "gasUsed-missing",
        "short-hash",
        "value-exponent",
        "value-number",
        "status-enum",
        "bad-address",
        "timestamp-no-T",
        "timestamp-month-13",
        "timestamp-not-utc",
        "unknown-field",
        "seq-is-the-brokers",
    ],
)
def test_invalid_batch_gets_422_naming_the_field_and_nothing_is_broadcast(
    server: ServerProcess, bad: dict[str, Any], field: str
) -> None:
    """One bad event: 422 naming field and index; nothing broadcast, the next seq has no gap."""
    batch = [tx(), tx(), bad, tx()]
    follow = tx()

    async def main() -> None:
        async with (
            websockets.connect(server.ws("/ws/transactions")) as ws,
            httpx.AsyncClient() as http,
        ):
            before = (await http.post(_url(server), json=tx())).json()["seqs"][-1]
            await _recv(ws, 1)
            response = await http.post(_url(server), json=batch)
            assert response.status_code == 422
            body = response.json()
            assert body["error"] == "validation_failed"
            assert body["field"] == field
            assert body["index"] == 2
            assert field.removeprefix("$.") in body["detail"]
            after = (await http.post(_url(server), json=follow)).json()["seqs"]
            assert after == [before + 1]
            (message,) = await _recv(ws, 1)
            assert message == {**follow, "seq": before + 1}
            assert message["txHash"] not in {e.get("txHash") for e in batch}

    asyncio.run(main())


def test_http_errors_of_the_ingest_api(server: ServerProcess) -> None:
    """Unknown stream 404, body over 1 MB 413, bad JSON 400, non-event body 400: JSON errors."""
    with httpx.Client() as http:
        response = http.post(_url(server, "blocks"), json=tx())
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_stream"
        assert "transactions" in response.json()["detail"]

        big = b"[" + b" " * (1048576 - 1) + b"]"  # 1,048,577 bytes
        response = http.post(_url(server), content=big, headers=JSON)
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(17):
                yield b" " * 65536

        response = http.post(_url(server), content=chunks(), headers=JSON)  # no Content-Length
        assert response.status_code == 413

        response = http.post(_url(server), content=b'{"timestamp": ', headers=JSON)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_json"

        for body in (b"[]", b"42", b'"text"', b"null"):
            response = http.post(_url(server), content=body, headers=JSON)
            assert response.status_code == 400, body
            assert response.json()["error"] == "invalid_body"
            assert response.json()["detail"]


def test_body_of_exactly_1mb_is_accepted(server: ServerProcess) -> None:
    """A body of exactly max_message_size bytes is within the limit."""
    body = orjson.dumps(tx())
    padded = body + b" " * (1048576 - len(body))
    response = httpx.post(_url(server), content=padded, headers=JSON)
    assert response.status_code == 200, response.text


def test_publisher_key_is_required_when_set(tmp_path: Path) -> None:
    """With --publisher-key: 401 without the header or with a wrong one, 200 with the key."""
    with run_server("--no-simulate", "--publisher-key", "s3cret", tmp_path=tmp_path) as server:
        missing = httpx.post(_url(server), json=tx())
        assert missing.status_code == 401
        assert missing.json()["error"] == "unauthorized"
        wrong = httpx.post(_url(server), json=tx(), headers={"X-Publisher-Key": "guess"})
        assert wrong.status_code == 401
        right = httpx.post(_url(server), json=tx(), headers={"X-Publisher-Key": "s3cret"})
        assert right.status_code == 200
        assert right.json()["seqs"] == [1]
        assert "s3cret" not in server.log()


def test_ingest_answers_the_dialect_case_with_422(quiet_server: ServerProcess) -> None:
    """Through the HTTP API, a timestamp with a trailing newline gets 422 naming the field."""
    event = {**example_event("transactions"), "timestamp": "2026-11-25T10:00:00Z\n"}
    response = httpx.post(
        f"{quiet_server.http}/api/v11/streams/transactions/events", json=event, timeout=10
    )
    body = response.json()
    assert (response.status_code, body["error"], body["field"]) == (
        422,
        "validation_failed",
        "$.timestamp",
    )
