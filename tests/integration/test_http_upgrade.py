"""HTTP answers around the WebSocket endpoints: 426, 404, bad versions and keys."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.rawws import RawWebSocket
from tests.support.server import ServerProcess, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server("--no-simulate", tmp_path=tmp_path_factory.mktemp("http")) as server:
        yield server


def _is_error(body: object, slug: str) -> None:
    assert isinstance(body, dict)
    assert body["error"] == slug
    assert isinstance(body["detail"], str)
    assert body["detail"]


@pytest.mark.parametrize("stream", ["metrics", "transactions", "network"])
def test_plain_get_on_a_stream_path_is_426(server: ServerProcess, stream: str) -> None:
    """GET /ws/{stream} without an upgrade: 426 with a JSON explanation naming wscat."""
    response = httpx.get(f"{server.http}/ws/{stream}")
    assert response.status_code == 426
    assert response.headers["upgrade"].lower() == "websocket"
    assert response.headers["content-type"] == "application/json"
    _is_error(response.json(), "upgrade_required")
    assert f"/ws/{stream}" in response.json()["detail"]


def test_plain_get_on_an_unknown_stream_is_404(server: ServerProcess) -> None:
    """GET /ws/blocks: 404 with JSON."""
    response = httpx.get(f"{server.http}/ws/blocks")
    assert response.status_code == 404
    _is_error(response.json(), "unknown_stream")


@pytest.mark.parametrize("path", ["/ws/blocks", "/ws/", "/", "/api/v11/streams", "/ws/metrics/x"])
def test_upgrade_to_an_unknown_path_is_404(server: ServerProcess, path: str) -> None:
    """A WebSocket upgrade to a path with no stream: HTTP 404 with a JSON body listing streams."""
    with RawWebSocket(server.port) as ws:
        response = ws.request(path)
    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    _is_error(response.json(), "unknown_stream")
    assert "/ws/metrics" in response.json()["detail"]


@pytest.mark.parametrize("version", ["8", "12", "14", ""])
def test_bad_websocket_version_is_426(server: ServerProcess, version: str) -> None:
    """Sec-WebSocket-Version other than 13: 426 advertising Sec-WebSocket-Version: 13."""
    with RawWebSocket(server.port) as ws:
        response = ws.request("/ws/metrics", version=version)
    assert response.status == 426
    assert response.headers["sec-websocket-version"] == "13"
    _is_error(response.json(), "unsupported_version")


@pytest.mark.parametrize("key", ["", "not-base64!!", "c2hvcnQ=", "QUFBQUFBQUFBQUFBQUFBQUFB"])
def test_bad_websocket_key_is_400(server: ServerProcess, key: str) -> None:
    """A missing key, one that is not base64, or not 16 bytes: 400 with JSON."""
    with RawWebSocket(server.port) as ws:
        response = ws.request("/ws/metrics", key=key)
    assert response.status == 400
    _is_error(response.json(), "bad_key")


def test_server_still_accepts_after_refusals(server: ServerProcess) -> None:
    """After every refusal above, a correct upgrade still gets 101 and the refusals were logged."""
    with RawWebSocket(server.port) as ws:
        response = ws.open("/ws/metrics")
    assert response.headers["upgrade"].lower() == "websocket"
    assert "status=400 reason=bad_key" in server.log()
    assert "Traceback" not in server.log()


def test_stream_list_and_schemas(server: ServerProcess) -> None:
    """GET /api/v11/streams lists the five paths; an unknown stream's schema is a JSON 404."""
    streams = httpx.get(f"{server.http}/api/v11/streams").json()["streams"]
    assert [s["path"] for s in streams] == [
        "/ws/metrics",
        "/ws/transactions",
        "/ws/validators",
        "/ws/consensus",
        "/ws/network",
    ]
    response = httpx.get(f"{server.http}/api/v11/streams/blocks/schema")
    assert response.status_code == 404
    _is_error(response.json(), "unknown_stream")
