"""JWT authentication end to end: handshake, ingest, expiry, key kinds, the token command."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets.sync.client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from tests.support.attack import RawClient
from tests.support.server import ROOT, ServerProcess, run_server

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ISSUER = "https://auth.aurigraph.test"
AUDIENCE = "aurigraph-stream"
BEARER = "aurigraph.v11.bearer"
GRACE = 1.0  # --auth-expiry-grace of the HS256 server


def hs_token(
    claims: dict[str, Any] | None = None, *, ttl: float = 3600, key: str = SECRET, **extra: Any
) -> str:
    """A token the HS256 server accepts, with ``extra`` claims replacing the defaults.

    The parametrized tokens are made when the tests are collected, which may be many
    minutes before they run: an hour keeps them from expiring in between.
    """
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": "tester",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "streams": "*",
        **(claims or {}),
        **extra,
    }
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="HS256")


@pytest.fixture(scope="module")
def hs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server checking HS256 tokens with iss and aud, 1 s of expiry grace, metrics every 0.2 s."""
    with run_server(
        "--no-simulate",
        "--metrics-interval",
        "0.2",
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--auth-expiry-grace",
        str(GRACE),
        "--log-level",
        "INFO",
        tmp_path=tmp_path_factory.mktemp("hs"),
        env={"AURIGRAPH_JWT_SECRET": SECRET},
    ) as server:
        yield server


def _first_message(ws: websockets.sync.client.ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=5)
    data = orjson.loads(message)
    assert isinstance(data, dict)
    return data


def test_no_token_is_refused_with_401_before_upgrade(hs_server: ServerProcess) -> None:
    """An upgrade without a token gets 401, a JSON reason and a Bearer challenge, not a 101."""
    with RawClient(hs_server.port) as client:
        response = client.upgrade("/ws/metrics")
    assert response.status == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (hs_token(key="another-secret-that-is-also-long-enough"), "invalid_token"),
        (hs_token(ttl=-30), "token_expired"),
        (hs_token(nbf=int(time.time()) + 3600), "invalid_token"),
        (hs_token(iss="https://someone-else.test"), "invalid_token"),
        (hs_token(aud="another-service"), "invalid_token"),
        (hs_token(exp=None), "invalid_token"),
        (hs_token(streams={"all": True}), "invalid_token"),
        (
            jwt.encode(
                {"streams": "*", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 3600},
                "",
                "none",
            ),
            "invalid_token",
        ),
        ("not.a.jwt", "invalid_token"),
        ("x" * 9000, "invalid_token"),
    ],
    ids=[
        "bad-signature",
        "expired",
        "not-yet-valid",
        "wrong-issuer",
        "wrong-audience",
        "no-exp",
        "bad-streams-claim",
        "alg-none",
        "garbage",
        "too-long",
    ],
)
def test_bad_tokens_are_refused_with_401(hs_server: ServerProcess, token: str, error: str) -> None:
    """Each kind of bad token is refused with 401 and its own reason."""
    with RawClient(hs_server.port) as client:
        response = client.upgrade("/ws/metrics", headers=(("Authorization", f"Bearer {token}"),))
    assert response.status == 401, response
    assert response.json()["error"] == error
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_stream_not_in_the_token_is_403(hs_server: ServerProcess) -> None:
    """A valid token without the stream gets 403; the streams it lists open."""
    token = hs_token(streams=["metrics", "consensus"])
    with RawClient(hs_server.port) as client:
        response = client.upgrade("/ws/network", headers=(("Authorization", f"Bearer {token}"),))
    assert response.status == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "the token does not grant the stream 'network'",
    }
    with RawClient(hs_server.port) as client:
        ok = client.upgrade("/ws/consensus", headers=(("Authorization", f"Bearer {token}"),))
    assert ok.status == 101


def test_bearer_header_token_streams(hs_server: ServerProcess) -> None:
    """A token in the Authorization header opens the stream and messages flow."""
    with websockets.sync.client.connect(
        hs_server.ws("/ws/metrics"),
        additional_headers={"Authorization": f"Bearer {hs_token(streams=['metrics'])}"},
    ) as ws:
        assert "tps" in _first_message(ws)


def test_subprotocol_token_streams_and_is_answered(hs_server: ServerProcess) -> None:
    """Offering aurigraph.v11.bearer and the token: the 101 names aurigraph.v11.bearer."""
    protocols = [Subprotocol(BEARER), Subprotocol(hs_token(streams=["metrics"]))]
    with websockets.sync.client.connect(hs_server.ws("/ws/metrics"), subprotocols=protocols) as ws:
        assert ws.subprotocol == BEARER
        assert "cpu" in _first_message(ws)
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(
            hs_server.ws("/ws/metrics"),
            subprotocols=[Subprotocol(BEARER), Subprotocol(hs_token(ttl=-10))],
        )
    assert refused.value.response.status_code == 401


def test_query_token_streams_and_logs_are_redacted(hs_server: ServerProcess) -> None:
    """?token= works, and no log line carries a token: the audit line shows token=[redacted]."""
    good = hs_token(streams=["metrics"])
    with websockets.sync.client.connect(hs_server.ws(f"/ws/metrics?token={good}")) as ws:
        assert "memory" in _first_message(ws)
    refused_token = hs_token(ttl=-60)
    with RawClient(hs_server.port) as client:
        assert client.upgrade(f"/ws/metrics?token={refused_token}").status == 401
    log = ""
    deadline = time.monotonic() + 5
    while "auth refused" not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = hs_server.log()
    assert "auth refused" in log
    assert "token=[redacted]" in log
    assert SECRET not in log
    for token in (good, refused_token):
        assert token not in log
        assert token.split(".")[2] not in log  # not even the signature part


def test_token_expiring_while_connected_closes_with_4001(hs_server: ServerProcess) -> None:
    """A connection outliving its token's exp is closed at exp + grace with 4001 'token expired'."""
    exp = int(time.time()) + 2
    token = hs_token(exp=exp, streams=["metrics"])
    with websockets.sync.client.connect(
        hs_server.ws("/ws/metrics"), additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        closed: ConnectionClosed | None = None
        for _ in range(1000):  # metrics arrive every 0.2 s until the close
            try:
                ws.recv(timeout=6)
            except ConnectionClosed as exc:
                closed = exc
                break
        ended = time.time()
    assert closed is not None
    assert closed.rcvd is not None
    assert closed.rcvd.code == 4001
    assert closed.rcvd.reason == "token expired"
    assert exp + GRACE - 0.2 <= ended <= exp + GRACE + 1.5


def test_multiplexed_endpoint_checks_each_subscription(hs_server: ServerProcess) -> None:
    """On /ws a token opens the socket; each subscribe is checked against its streams claim."""
    with RawClient(hs_server.port) as client:
        assert client.upgrade("/ws").status == 401
    token = hs_token(streams=["metrics"], exp=int(time.time()) + 3)
    with websockets.sync.client.connect(
        hs_server.ws("/ws"), additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send(orjson.dumps({"op": "subscribe", "id": "n", "stream": "network"}).decode())
        refused = _first_message(ws)
        assert refused["type"] == "error"
        assert refused["error"] == "forbidden"
        assert refused["id"] == "n"
        ws.send(orjson.dumps({"op": "subscribe", "id": "m", "stream": "metrics"}).decode())
        replies: list[dict[str, Any]] = []
        closed: ConnectionClosed | None = None
        for _ in range(1000):  # the subscription flows until the token expires
            try:
                replies.append(_first_message(ws))
            except ConnectionClosed as exc:
                closed = exc
                break
    assert replies[0]["type"] == "subscribed"
    assert replies[0]["stream"] == "metrics"
    assert len(replies) > 2
    assert closed is not None
    assert closed.rcvd is not None
    assert closed.rcvd.code == 4001


def test_ingest_requires_a_token_with_publish_scope(hs_server: ServerProcess) -> None:
    """Ingest: no token 401, bad token 401, no publish scope 403, publish scope 200."""
    url = f"{hs_server.http}/api/v11/streams/consensus/events"
    event = {
        "timestamp": "2025-10-25T09:35:10Z",
        "leader": "0x" + "ab" * 20,
        "epoch": 1,
        "round": 1,
        "term": 1,
        "state": "COMMITTED",
        "performanceScore": 0.5,
        "activeValidators": 3,
    }
    assert httpx.post(url, json=event).status_code == 401
    bad = httpx.post(url, json=event, headers={"Authorization": f"Bearer {hs_token(ttl=-5)}"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "token_expired"
    reader = httpx.post(url, json=event, headers={"Authorization": f"Bearer {hs_token()}"})
    assert reader.status_code == 403
    assert reader.json()["error"] == "forbidden"
    publisher = hs_token(scope="publish", streams=[])
    with websockets.sync.client.connect(
        hs_server.ws("/ws/consensus"),
        additional_headers={"Authorization": f"Bearer {hs_token(streams=['consensus'])}"},
    ) as ws:
        accepted = httpx.post(url, json=event, headers={"Authorization": f"Bearer {publisher}"})
        assert accepted.status_code == 200, accepted.text
        assert _first_message(ws)["leader"] == event["leader"]
    via_query = httpx.post(f"{url}?token={publisher}", json=event)
    assert via_query.status_code == 200


def test_token_command_mints_what_the_server_accepts(hs_server: ServerProcess) -> None:
    """`aurigraph-stream token` signs with the configured secret, iss and aud."""
    env = {
        **os.environ,
        "AURIGRAPH_JWT_SECRET": SECRET,
        "AURIGRAPH_JWT_ISSUER": ISSUER,
        "AURIGRAPH_JWT_AUDIENCE": AUDIENCE,
    }
    minted = subprocess.run(
        [sys.executable, "-m", "aurigraph_stream", "token", "--streams", "metrics", "--ttl", "60"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
        check=True,
    ).stdout.strip()
    claims = jwt.decode(minted, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["streams"] == ["metrics"]
    assert "scope" not in claims
    with RawClient(hs_server.port) as client:
        ok = client.upgrade("/ws/metrics", headers=(("Authorization", f"Bearer {minted}"),))
        assert ok.status == 101
    with RawClient(hs_server.port) as client:
        other = client.upgrade("/ws/network", headers=(("Authorization", f"Bearer {minted}"),))
        assert other.status == 403
    unknown = subprocess.run(
        [sys.executable, "-m", "aurigraph_stream", "token", "--streams", "blocks"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )
    assert unknown.returncode == 2
    assert "unknown streams" in unknown.stderr


# -- asymmetric keys ----------------------------------------------------------
def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "intruder": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def _signed(key: Any, algorithm: str, kid: str | None, **claims: Any) -> str:
    body = {"streams": ["metrics"], "exp": int(time.time()) + 120, **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def _status(server: ServerProcess, token: str) -> int:
    with RawClient(server.port) as client:
        return client.upgrade("/ws/metrics", headers=(("Authorization", f"Bearer {token}"),)).status


def test_jwks_file_verifies_rs256_and_es256_by_kid(tmp_path: Path, keys: dict[str, Any]) -> None:
    """A local JWKS: RS256 and ES256 tokens pass by kid; wrong key, kid or alg do not."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys["rsa"], "rsa-1"), _jwk(keys["ec"], "ec-1")]}))
    with run_server("--no-simulate", "--jwt-jwks-file", str(jwks), tmp_path=tmp_path) as server:
        assert _status(server, _signed(keys["rsa"], "RS256", "rsa-1")) == 101
        assert _status(server, _signed(keys["ec"], "ES256", "ec-1")) == 101
        assert _status(server, _signed(keys["intruder"], "RS256", "rsa-1")) == 401
        assert _status(server, _signed(keys["rsa"], "RS256", "rsa-9")) == 401
        assert _status(server, _signed(keys["rsa"], "RS256", None)) == 401  # two keys: kid needed
        assert _status(server, _signed(keys["rsa"], "RS512", "rsa-1")) == 401
        assert _status(server, _signed(SECRET, "HS256", "rsa-1")) == 401
        minted = subprocess.run(
            [
                sys.executable,
                "-m",
                "aurigraph_stream",
                "token",
                "--private-key",
                str(_write(tmp_path / "ec.pem", _pem_private(keys["ec"]))),
                "--kid",
                "ec-1",
                "--streams",
                "*",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
            check=True,
        ).stdout.strip()
        assert jwt.get_unverified_header(minted)["alg"] == "ES256"
        assert _status(server, minted) == 101


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_public_key_file_verifies_es256_only(tmp_path: Path, keys: dict[str, Any]) -> None:
    """A PEM EC P-256 public key: ES256 tokens pass; RS256 and HS256 ones do not."""
    public = (
        keys["ec"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pem = _write(tmp_path / "ec.pub.pem", public)
    with run_server("--no-simulate", "--jwt-public-key", str(pem), tmp_path=tmp_path) as server:
        assert _status(server, _signed(keys["ec"], "ES256", None)) == 101
        assert _status(server, _signed(keys["rsa"], "RS256", None)) == 401
        # HS256 keyed with the public key's bytes: the classic algorithm confusion.
        assert _status(server, _hs256_by_hand(public, {"streams": "*"})) == 401


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_by_hand(key: bytes, claims: dict[str, Any]) -> str:
    """An HS256 JWT built without PyJWT, which refuses PEM keys as HMAC secrets."""
    body = {**claims, "exp": int(time.time()) + 60}
    signing = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(orjson.dumps(body))
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return signing + "." + _b64(signature)


# -- start-up rules -----------------------------------------------------------
def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run serve expecting it to refuse to start (bounded)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    return subprocess.run(
        [sys.executable, "-m", "aurigraph_stream", "serve", "--port", "1", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=ROOT,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--profile", "prod"), 'auth = "none"'),
        (("--jwt-public-key", "/nonexistent/key.pem"), "cannot read jwt_public_key"),
        (("--jwt-jwks-file", str(ROOT / "pyproject.toml")), "not a JWKS"),
    ],
    ids=["prod-without-auth", "missing-key", "bad-jwks"],
)
def test_server_refuses_to_start_with_unsafe_auth(args: tuple[str, ...], message: str) -> None:
    """Misconfigured authentication stops the start with exit code 2 and a clear message."""
    result = _serve(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_prod_with_explicit_auth_none_starts_open(tmp_path: Path) -> None:
    """The prod profile serves without auth when told auth = "none" explicitly."""
    with (
        run_server(
            "--profile", "prod", "--auth", "none", "--no-ops-auth", tmp_path=tmp_path
        ) as server,
        RawClient(server.port) as client,
    ):
        assert client.upgrade("/ws/metrics").status == 101


# -- a real browser -----------------------------------------------------------
_BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_OPEN_SOCKET = """([url, protocols]) => new Promise((resolve) => {
    const ws = new WebSocket(url, protocols);
    const timer = setTimeout(() => resolve({opened: false, timeout: true}), 5000);
    ws.onmessage = (event) => {
        clearTimeout(timer);
        resolve({opened: true, protocol: ws.protocol, data: event.data});
        ws.close();
    };
    ws.onclose = (event) => { clearTimeout(timer); resolve({opened: false, code: event.code}); };
})"""


def test_browser_connects_with_the_subprotocol_token(hs_server: ServerProcess) -> None:
    """Chromium: a subprotocol token streams; a bad token or a page from elsewhere fails."""
    from playwright.sync_api import sync_playwright

    token = hs_token(streams=["metrics"])
    url = f"ws://127.0.0.1:{hs_server.port}/ws/metrics"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=_BROWSER_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(f"{hs_server.http}/api/v11/streams")  # same origin as the socket
            good = page.evaluate(_OPEN_SOCKET, [url, [BEARER, token]])
            assert good["opened"], good
            assert good["protocol"] == BEARER
            assert "tps" in json.loads(good["data"])
            bad = page.evaluate(_OPEN_SOCKET, [url, [BEARER, hs_token(ttl=-10)]])
            assert bad == {"opened": False, "code": 1006}
            # A page from another origin (localhost is not 127.0.0.1 to a browser).
            page.goto(f"http://localhost:{hs_server.port}/api/v11/streams")
            foreign = page.evaluate(_OPEN_SOCKET, [url, [BEARER, token]])
            assert foreign == {"opened": False, "code": 1006}
        finally:
            browser.close()
    assert "reason=origin_not_allowed" in hs_server.log()


# -- time claims: JSON numbers in range, or 401 ---------------------------------
def _hs256_raw(payload: bytes, key: str = SECRET) -> str:
    """An HS256 JWT over exactly these payload bytes (numbers PyJWT would not write)."""
    signing = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(payload)
    signature = hmac.new(key.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + _b64(signature)


def _claims_with(name: str, literal: bytes) -> bytes:
    """The hs_server's claims as JSON text, with ``name`` written as ``literal``."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "t", "iss": ISSUER, "aud": AUDIENCE, "streams": "*"}
    claims |= {"scope": "publish", "iat": now, "exp": now + 300}
    claims.pop(name, None)
    return orjson.dumps(claims)[:-1] + b',"' + name.encode() + b'":' + literal + b"}"


_LATER = str(int(time.time()) + 3600).encode()
_BAD_TIMES = [
    ("exp", b'"' + _LATER + b'"'),
    ("exp", b"1" + b"0" * 400),
    ("exp", b"1e400"),
    ("exp", b"-1"),
    ("exp", b"true"),
    ("exp", b"NaN"),
    ("nbf", b'"0"'),
    ("nbf", b"1" + b"0" * 400),
    ("iat", b'"0"'),
    ("iat", b"1e400"),
]


@pytest.mark.parametrize(
    ("name", "literal"),
    _BAD_TIMES,
    ids=[f"{n}={v[:12].decode()}" for n, v in _BAD_TIMES],
)
def test_time_claims_must_be_numbers_in_range(
    hs_server: ServerProcess, name: str, literal: bytes
) -> None:
    """exp, nbf, iat as strings, booleans, out of range or not finite: 401 invalid_token at the
    handshake and on ingest, never a 500 and never a connection that outlives its token."""
    token = _hs256_raw(_claims_with(name, literal))
    with RawClient(hs_server.port) as client:
        response = client.upgrade("/ws/metrics", headers=(("Authorization", f"Bearer {token}"),))
    assert (response.status, response.json()["error"]) == (401, "invalid_token"), response
    published = httpx.post(
        f"{hs_server.http}/api/v11/streams/transactions/events",
        json={"not": "checked before the token"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (published.status_code, published.json()["error"]) == (401, "invalid_token")
    assert "Traceback" not in hs_server.log()


def test_a_float_exp_in_range_is_accepted_and_timed(hs_server: ServerProcess) -> None:
    """A fractional exp is a JSON number like any other: accepted, and the connection is
    closed with 4001 once it (plus the grace) has passed."""
    exp = time.time() + 1.5
    now = int(time.time())
    payload = orjson.dumps(
        {"sub": "t", "iss": ISSUER, "aud": AUDIENCE, "streams": "*", "iat": now, "exp": exp}
    )
    token = _hs256_raw(payload)
    with websockets.sync.client.connect(
        hs_server.ws("/ws/metrics"), additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        closed = False
        for _ in range(200):  # metrics every 0.2 s: bounded by count and time
            try:
                ws.recv(timeout=10)
            except ConnectionClosed:
                closed = True
                break
        assert closed
        assert ws.close_code == 4001
        assert time.time() >= exp + GRACE - 0.5


# -- operator data: the ops scope in prod ------------------------------------------
OPS_PATHS = ("/api/v11/websocket/stats", "/q/metrics")


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The prod profile with HS256 tokens (ops_auth on, as in prod by default)."""
    with run_server(
        "--profile",
        "prod",
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--log-level",
        "INFO",
        tmp_path=tmp_path_factory.mktemp("prod-ops"),
        env={"AURIGRAPH_JWT_SECRET": SECRET},
    ) as server:
        yield server


@pytest.mark.parametrize("path", OPS_PATHS)
def test_prod_keeps_operator_data_behind_the_ops_scope(
    prod_server: ServerProcess, path: str
) -> None:
    """In prod, stats and metrics: 401 without a token, 403 with a reader's or a publisher's
    token, 200 with the ops scope (header or query); health stays open for probes."""
    url = prod_server.http + path
    anonymous = httpx.get(url)
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "unauthorized")
    assert "connections" not in anonymous.text
    for scope in ("", "publish"):
        token = hs_token(scope=scope)
        refused = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    ops = hs_token(scope="publish ops")
    allowed = httpx.get(url, headers={"Authorization": f"Bearer {ops}"})
    assert allowed.status_code == 200
    assert httpx.get(url, params={"token": ops}).status_code == 200
    for health in ("/q/health", "/q/health/live", "/q/health/ready"):
        assert httpx.get(prod_server.http + health).status_code == 200


def test_prod_with_auth_none_must_say_ops_auth_false() -> None:
    """prod and auth = "none" leave no token to guard operator data with: the server refuses
    to start until ops_auth = false says stats and metrics may be served openly."""
    result = _serve("--profile", "prod", "--auth", "none")
    assert result.returncode == 2, result.stderr
    assert "ops_auth = false" in result.stderr
