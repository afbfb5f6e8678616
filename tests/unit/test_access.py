"""The security policy without I/O: buckets, client addresses, origins, claims, redaction."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import orjson
import pytest

from aurigraph_stream.access.guard import Guard
from aurigraph_stream.access.ratelimit import ConnectionCounter, RateLimiter, TokenBucket
from aurigraph_stream.access.redact import redact
from aurigraph_stream.access.tokens import Authenticator, auth_mode, extract_token
from aurigraph_stream.config import Settings
from aurigraph_stream.contract import BEARER_PROTOCOL
from aurigraph_stream.errors import AuthError, ConfigError, HandshakeRejected
from aurigraph_stream.ops.logs import configure_logging

SECRET = "unit-test-secret-of-at-least-32-bytes!"


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    """A full bucket gives `burst` tokens at once, then one per 1/rate seconds."""
    # Rate 8: 1/8 s is exact in binary, so the arithmetic below is exact too.
    bucket = TokenBucket(rate=8, burst=16, now=100.0)
    assert all(bucket.take(100.0) == 0.0 for _ in range(16))
    assert bucket.take(100.0) == 0.125
    assert bucket.take(100.0625) == 0.0625
    assert bucket.take(100.125) == 0.0
    assert bucket.take(200.0, 17) == 0.125  # refilled, but capped at burst
    assert bucket.take(200.0, 16) == 0.0
    assert bucket.take(200.0) > 0


def test_limiter_keys_are_independent() -> None:
    """One client draining its bucket does not touch another's."""
    limiter = RateLimiter(10, 2)
    assert limiter.take("a", 0.0) == limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) > 0
    assert limiter.take("b", 0.0) == 0.0
    assert limiter.retry_after(0.05) == 1
    assert limiter.retry_after(2.2) == 3


def test_limiter_evicts_full_buckets_and_caps_keys() -> None:
    """Idle (refilled) buckets are dropped, and the table never exceeds max_keys."""
    limiter = RateLimiter(10, 20, max_keys=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}", 0.0)
        assert len(limiter) <= 100
    limiter.take("late", 10.0)  # 10 s later every old bucket is full again
    assert len(limiter) == 1


def test_connection_counter_forgets_closed_clients() -> None:
    """The per-client count goes to zero and the key disappears; the limit is enforced."""
    counter = ConnectionCounter(2)
    counter.acquire("a")
    assert not counter.full("a")
    counter.acquire("a")
    assert counter.full("a")
    assert not counter.full("b")
    counter.release("a")
    counter.release("a")
    assert len(counter) == 0
    assert counter.count("a") == 0
    assert not ConnectionCounter(0).full("x")


def _guard(**changes: Any) -> Guard:
    return Guard(Settings().replace(**changes))


def test_forwarded_headers_believed_only_from_trusted_proxies() -> None:
    """X-Forwarded-For is read right to left past trusted proxies; others cannot spoof it."""
    guard = _guard(trusted_proxies="10.0.0.0/8, 192.0.2.1")
    xff = {"x-forwarded-for": "1.1.1.1, 203.0.113.9, 10.1.2.3"}
    assert str(guard.proxies.client_ip("10.9.9.9:5555", xff)) == "203.0.113.9"
    assert str(guard.proxies.client_ip("198.51.100.7:5555", xff)) == "198.51.100.7"
    assert (
        str(guard.proxies.client_ip("192.0.2.1:80", {"x-real-ip": "203.0.113.5"})) == "203.0.113.5"
    )
    assert str(guard.proxies.client_ip("192.0.2.1:80", {})) == "192.0.2.1"
    assert str(guard.proxies.client_ip("10.0.0.1:1", {"x-forwarded-for": "garbage, 10.0.0.2"})) == (
        "10.0.0.2"
    )
    untrusting = _guard()
    assert str(untrusting.proxies.client_ip("127.0.0.1:9", xff)) == "127.0.0.1"


def test_bad_trusted_proxy_is_a_config_error() -> None:
    """A proxy entry that is not an address or network stops the start."""
    with pytest.raises(ConfigError, match="trusted_proxies"):
        _guard(trusted_proxies="proxy.example")


def test_origin_allow_list_and_same_origin() -> None:
    """Listed origins and same-origin pages pass; other pages get 403; no Origin passes."""
    guard = _guard()
    guard.check_origin({})
    guard.check_origin({"origin": "https://dlt.aurigraph.io"})
    guard.check_origin({"origin": "http://localhost:5173/"})
    guard.check_origin({"origin": "http://127.0.0.1:9003", "host": "127.0.0.1:9003"})
    for origin in ("https://evil.example", "null", "https://dlt.aurigraph.io.evil.example"):
        with pytest.raises(HandshakeRejected) as refused:
            guard.check_origin({"origin": origin, "host": "127.0.0.1:9003"})
        assert refused.value.status == 403
    _guard(ws_origins="*").check_origin({"origin": "https://anything.example"})


def test_auth_mode_rules() -> None:
    """Dev runs open by default; prod refuses to start unless auth is configured or 'none'."""
    assert auth_mode(Settings()) == "none"
    assert auth_mode(Settings(jwt_secret=SECRET)) == "jwt"
    with pytest.raises(ConfigError, match="prod profile needs authentication"):
        auth_mode(Settings(profile="prod"))
    assert auth_mode(Settings(profile="prod", auth="none")) == "none"
    with pytest.raises(ConfigError, match="needs jwt_secret"):
        auth_mode(Settings(auth="jwt"))
    with pytest.raises(ConfigError, match="only one"):
        auth_mode(Settings(jwt_secret=SECRET, jwt_jwks_file="x.json"))
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Authenticator(Settings(jwt_secret="short"))


def _token(claims: dict[str, Any], key: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers=headers or None)


def test_claims_become_a_principal() -> None:
    """streams and scope claims decide what a token may read and whether it may publish."""
    auth = Authenticator(Settings(jwt_secret=SECRET))
    exp = int(time.time()) + 60
    some = auth.verify(_token({"sub": "a", "streams": ["metrics"], "exp": exp}))
    assert some.can_read("metrics")
    assert not some.can_read("network")
    assert not some.can_publish
    assert some.expires_at == exp
    assert some.subject == "a"
    every = auth.verify(_token({"streams": "*", "scope": "read publish", "exp": exp}))
    assert every.can_read("network")
    assert every.can_publish
    listed_star = auth.verify(
        _token({"streams": ["*"], "scope": ["publish"], "exp": exp}, kid="any-kid")
    )
    assert listed_star.can_read("consensus")
    assert listed_star.can_publish
    with pytest.raises(AuthError, match="streams claim"):
        auth.verify(_token({"streams": 5, "exp": exp}))
    with pytest.raises(AuthError) as missing_exp:
        auth.verify(_token({"streams": "*"}))
    assert missing_exp.value.status == 401
    assert "exp" in missing_exp.value.detail


def test_token_sources_in_order() -> None:
    """Authorization wins over the subprotocol, which wins over the query string."""
    query = {"token": "from-query"}
    assert extract_token({"authorization": "Bearer from-header"}, query) == "from-header"
    offered = {"sec-websocket-protocol": f"{BEARER_PROTOCOL}, from-protocol"}
    assert extract_token(offered, query) == "from-protocol"
    assert extract_token(offered, query, subprotocol=False) == "from-query"
    assert extract_token({}, {}) is None
    with pytest.raises(AuthError):
        extract_token({"authorization": "Basic dXNlcjpwYXNz"}, {})
    with pytest.raises(AuthError):
        extract_token({"sec-websocket-protocol": BEARER_PROTOCOL}, {})


def test_redact_blanks_credentials() -> None:
    """Query tokens, bearer tokens and bare JWTs never survive into a log line."""
    token = _token({"streams": "*"})
    line = f"GET /ws/metrics?x=1&token={token} Authorization: Bearer {token} proto {token}"
    clean = redact(line)
    assert token not in clean
    assert "token=[redacted]" in clean
    assert "Bearer [redacted]" in clean
    assert redact("nothing to see") == "nothing to see"


def test_log_records_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """The configured log handler writes every record redacted, extra= fields included,
    whichever logger made it (ours or a library's)."""
    token = _token({"streams": "*"})
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(Settings(log_format="json"))
        logging.getLogger("aurigraph_stream.test").info("target=/ws/metrics?token=%s", token)
        logging.getLogger("aurigraph_stream.test").info(
            "open", extra={"target": f"/ws/metrics?token={token}"}
        )
        logging.getLogger("uvicorn.error").warning("Authorization: Bearer %s", token)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert token not in err
    lines = [orjson.loads(line) for line in err.splitlines()]
    assert lines[0]["message"] == "target=/ws/metrics?token=[redacted]"
    assert lines[1]["target"] == "/ws/metrics?token=[redacted]"
    assert lines[2]["message"] == "Authorization: Bearer [redacted]"
