"""TLS: --tls-cert and --tls-key serve https:// and wss:// with a self-signed certificate."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
import websockets.sync.client

from tests.support.server import ROOT, ServerProcess, free_port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server with a certificate for 127.0.0.1 and localhost, issued by a test CA."""
    tmp = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_path), append=True)
    cert.private_key_pem.write_to_path(str(key_path))
    port = free_port()
    log_path = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aurigraph_stream",
                "serve",
                "--port",
                str(port),
                "--no-simulate",
                "--metrics-interval",
                "0.2",
                "--tls-cert",
                str(cert_path),
                "--tls-key",
                str(key_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    server = ServerProcess(proc, port, log_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        deadline = time.monotonic() + 30
        ready = False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(
                    f"https://127.0.0.1:{port}/api/v11/streams", verify=context, timeout=1
                )
                ready = response.status_code == 200
            except httpx.TransportError:
                time.sleep(0.05)
        assert ready, f"TLS server not ready:\n{server.log()}"
        yield server
    finally:
        server.stop(signal.SIGKILL if proc.poll() is None else signal.SIGTERM)


def _context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_https_api_over_tls(tls_server: ServerProcess, ca: trustme.CA) -> None:
    """The HTTP API answers over https:// with a certificate the test CA vouches for."""
    response = httpx.get(
        f"https://localhost:{tls_server.port}/api/v11/streams", verify=_context(ca)
    )
    assert response.status_code == 200
    assert next(s["name"] for s in response.json()["streams"]) == "metrics"


def test_wss_stream_over_tls(tls_server: ServerProcess, ca: trustme.CA) -> None:
    """A real client subscribes over wss:// and receives messages."""
    with websockets.sync.client.connect(
        f"wss://127.0.0.1:{tls_server.port}/ws/metrics", ssl=_context(ca)
    ) as ws:
        message = orjson.loads(ws.recv(timeout=5))
        assert {"tps", "cpu", "memory", "seq"} <= set(message)


def test_untrusted_and_plaintext_clients_are_refused(tls_server: ServerProcess) -> None:
    """A client that does not trust the CA fails verification; plaintext gets no HTTP answer."""
    with pytest.raises(ssl.SSLCertVerificationError):
        websockets.sync.client.connect(
            f"wss://127.0.0.1:{tls_server.port}/ws/metrics", ssl=ssl.create_default_context()
        )
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v11/streams HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        try:
            for _ in range(10):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not answer.startswith(b"HTTP/1.1 200")


def test_bad_certificate_stops_the_start(tmp_path: Path) -> None:
    """A certificate file that is not one stops the server with exit code 2."""
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aurigraph_stream",
            "serve",
            "--port",
            "1",
            "--tls-cert",
            str(bogus),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot load tls_cert" in result.stderr
