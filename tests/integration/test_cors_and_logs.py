"""CORS on the HTTP endpoints as the spec configures it, and structured connection logs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.sync.client import connect

from aurigraph_stream.config import load_settings
from tests.support.opstools import poll
from tests.support.rawws import RawWebSocket
from tests.support.server import ServerProcess, run_server

SPEC_ORIGIN = "https://dlt.aurigraph.io"


def _curl_head(*args: str) -> tuple[int, dict[str, str], str]:
    """Run the real curl with -i; returns (status, lower-cased headers, body)."""
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed: it is how the spec checks CORS"
    out = subprocess.run(
        [curl, "-sS", "-i", *args], capture_output=True, timeout=10, check=True
    ).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, body


def test_spec_troubleshooting_preflight_answers_as_a_browser_expects(
    quiet_server: ServerProcess,
) -> None:
    """The spec's curl preflight on /ws/metrics gets 200 with the origin, methods, headers
    and credentials a browser checks."""
    status, headers, _ = _curl_head(
        "-H",
        f"Origin: {SPEC_ORIGIN}",
        "-H",
        "Access-Control-Request-Method: GET",
        "-H",
        "Access-Control-Request-Headers: Content-Type",
        "-X",
        "OPTIONS",
        f"{quiet_server.http}/ws/metrics",
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == SPEC_ORIGIN
    assert headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "PUT", "DELETE", "OPTIONS"}
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization"} <= allowed
    assert "Origin" in headers["vary"]


def test_cors_allows_only_the_configured_origins(quiet_server: ServerProcess) -> None:
    """Both default origins get CORS headers on real answers; any other origin gets none,
    and its preflight is refused with a JSON error."""
    for origin in (SPEC_ORIGIN, "http://localhost:5173"):
        response = httpx.get(f"{quiet_server.http}/q/health", headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
    evil = "https://evil.example"
    response = httpx.get(f"{quiet_server.http}/api/v11/streams", headers={"Origin": evil})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{quiet_server.http}/api/v11/streams/transactions/events",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    body = preflight.json()
    assert body["error"] == "cors_preflight_refused"
    assert "origin" in body["detail"]


def test_cors_is_configurable(tmp_path: Path) -> None:
    """--cors-origins, --cors-methods, --cors-headers and --no-cors-credentials replace the
    spec's defaults."""
    with run_server(
        "--no-simulate",
        "--cors-origins",
        "https://ops.example.test",
        "--cors-methods",
        "GET",
        "--cors-headers",
        "X-Trace",
        "--no-cors-credentials",
        tmp_path=tmp_path,
    ) as server:
        url = f"{server.http}/api/v11/websocket/stats"
        ok = httpx.options(
            url,
            headers={
                "Origin": "https://ops.example.test",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "X-Trace",
            },
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://ops.example.test"
        assert ok.headers["access-control-allow-methods"] == "GET"
        assert "access-control-allow-credentials" not in ok.headers
        wrong_method = httpx.options(
            url,
            headers={"Origin": "https://ops.example.test", "Access-Control-Request-Method": "POST"},
        )
        assert wrong_method.status_code == 400
        assert "method" in wrong_method.json()["detail"]
        old = httpx.get(url, headers={"Origin": SPEC_ORIGIN})
        assert "access-control-allow-origin" not in old.headers


def _records(server: ServerProcess) -> list[dict[str, Any]]:
    lines = [line for line in server.log().splitlines() if line.strip()]
    return [orjson.loads(line) for line in lines]  # fails on any line that is not JSON


def test_json_logs_have_one_line_per_open_and_close(tmp_path: Path) -> None:
    """With log_format json every output line is one JSON object, and each connection
    logs an open and a close line with endpoint, client address, duration and code."""
    with run_server("--no-simulate", "--log-format", "json", tmp_path=tmp_path) as server:
        with connect(server.ws("/ws/consensus"), compression=None) as client:
            local = client.socket.getsockname()
            client_address = f"{local[0]}:{local[1]}"
        with RawWebSocket(server.port) as lost:
            assert lost.request("/ws/nowhere").status == 404
        closes = poll(
            lambda: (
                found
                if (
                    found := [
                        r
                        for r in _records(server)
                        if r["message"] == "close" and r.get("client") == client_address
                    ]
                )
                else None
            ),
            what="the close record",
        )
        records = _records(server)
    opens = [r for r in records if r["message"] == "open" and r.get("client") == client_address]
    assert len(opens) == len(closes) == 1
    assert opens[0]["endpoint"] == closes[0]["endpoint"] == "consensus"
    assert opens[0]["logger"] == "aurigraph_stream.connection"
    assert opens[0]["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", opens[0]["time"])
    assert closes[0]["code"] == 1000
    assert isinstance(closes[0]["duration_s"], float)
    assert closes[0]["duration_s"] >= 0
    refused = [r for r in records if r["message"] == "refused"]
    assert refused[0]["status"] == 404
    assert refused[0]["reason"] == "unknown_stream"
    started = [r for r in records if r["logger"] == "aurigraph_stream.cli"]
    assert "profile=dev" in started[0]["message"]


def test_text_logs_are_readable_lines(quiet_server: ServerProcess) -> None:
    """The dev format puts the same fields on one readable line as key=value."""
    with connect(quiet_server.ws("/ws/network"), compression=None) as client:
        port = client.socket.getsockname()[1]
    pattern = re.compile(
        r"^\S+Z INFO aurigraph_stream\.connection close endpoint=network "
        rf"client=127\.0\.0\.1:{port} duration_s=\d+\.\d+ code=1000$",
        re.MULTILINE,
    )
    poll(
        lambda: True if pattern.search(quiet_server.log()) else None,
        what="the close line",
    )


def test_profiles_choose_the_log_format_and_level() -> None:
    """dev logs readable text at DEBUG, prod JSON lines at INFO, as the spec's %dev/%prod;
    either can be overridden."""
    dev = load_settings(environ={})
    prod = load_settings(environ={}, overrides={"profile": "prod"})
    assert (dev.log_format, dev.log_level) == ("text", "DEBUG")
    assert (prod.log_format, prod.log_level) == ("json", "INFO")
    assert load_settings(environ={"AURIGRAPH_LOG_FORMAT": "json"}).log_format == "json"
