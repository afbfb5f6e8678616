"""Access tokens: where a request carries one, how it is verified, what it grants.

Tokens are JWTs (RFC 7519), verified with PyJWT against one key source:

- ``jwt_secret``: HS256 with a shared secret (at least 32 bytes, RFC 7518 3.2);
- ``jwt_public_key``: a PEM public key; RSA keys verify RS256, EC P-256 keys ES256
  (P-384: ES384, P-521: ES512);
- ``jwt_jwks_file``: a local JWKS file; the token's ``kid`` picks the key (a set of
  one key also serves tokens without a ``kid``).

Only the algorithm of the chosen key is accepted, so a token cannot pick its own
(no ``none``, no HS256 signed with a public key). ``exp`` and ``nbf`` are checked
when present (``exp`` is required unless ``jwt_require_exp`` is off), ``iss`` and
``aud`` when configured. ``exp``, ``nbf`` and ``iat`` must be JSON numbers from 0 to
the end of year 9999 (RFC 7519's NumericDate): PyJWT alone would take ``"exp":
"1761385200"`` (a string it converts) and fail with an overflow on ``1e400``, and a
string ``exp`` would then be missed by the expiry timer, which reads the number.

A token grants what its claims say::

    {"sub": "portal", "streams": ["metrics", "consensus"], "scope": "publish", "exp": ...}

``streams`` lists the streams it may read, or is ``"*"`` for all of them; the
``scope`` (space-separated, or a list) must include ``publish`` for the ingest API,
and ``ops`` for the operator endpoints (stats, metrics) when ``ops_auth`` is on.

Where the token travels, first found wins:

1. ``Authorization: Bearer <token>``: the best place, but browsers cannot set
   headers on a WebSocket;
2. ``Sec-WebSocket-Protocol``: the client offers two subprotocols,
   ``aurigraph.v11.bearer`` and then the token itself (a compact JWT is
   base64url and dots, all valid HTTP token characters, so browsers accept it
   as a subprotocol name). The server answers ``aurigraph.v11.bearer``, one of
   the offered values, as browsers require:
   ``new WebSocket(url, ["aurigraph.v11.bearer", token])``;
3. ``?token=<token>`` in the query: works everywhere, but query strings end up
   in proxy and server logs; every log line this process writes is redacted
   (:mod:`aurigraph_stream.access.redact`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)

from aurigraph_stream.config import Settings, split_list
from aurigraph_stream.contract import BEARER_PROTOCOL
from aurigraph_stream.errors import AuthError, ConfigError

__all__ = [
    "ANONYMOUS",
    "BEARER_PROTOCOL",
    "UNRESTRICTED",
    "Authenticator",
    "Principal",
    "auth_mode",
    "extract_token",
    "mint_token",
]

MAX_TOKEN_LENGTH = 8192  # far above any real JWT; bounds the work a bad one costs
MIN_SECRET_BYTES = 32
# The largest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is a mistake,
# and stays far inside what a float, a timer and a datetime handle.
MAX_NUMERIC_DATE = 253_402_300_799
_TIME_CLAIMS = ("exp", "nbf", "iat")

_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="aurigraph"'),)
_INVALID = (("WWW-Authenticate", 'Bearer realm="aurigraph", error="invalid_token"'),)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as, and what it may do.

    ``streams`` is ``None`` for every stream. ``expires_at`` is the token's
    ``exp`` (Unix seconds), ``None`` when it never expires. ``ops``: the token
    may read the operator endpoints (the ``ops`` scope).
    """

    subject: str
    streams: frozenset[str] | None
    publish: bool
    expires_at: float | None = None
    ops: bool = False

    def can_read(self, stream: str) -> bool:
        return self.streams is None or stream in self.streams

    @property
    def can_publish(self) -> bool:
        return self.publish


# What every request is when authentication is off.
UNRESTRICTED = Principal(subject="", streams=None, publish=True, ops=True)
# A request that may still present its token later (a /graphql socket, in
# connection_init), until it does: it grants nothing.
ANONYMOUS = Principal(subject="", streams=frozenset(), publish=False, ops=False)


def auth_mode(settings: Settings) -> str:
    """``"jwt"`` or ``"none"``, from ``auth`` and the key settings.

    Raises:
        ConfigError: an unknown mode, ``jwt`` without a key, more than one key
            source, or the prod profile with nothing configured (it must say
            ``auth = "none"`` to run open).
    """
    sources = [
        name
        for name in ("jwt_secret", "jwt_public_key", "jwt_jwks_file")
        if getattr(settings, name) is not None
    ]
    if len(sources) > 1:
        raise ConfigError(f"set only one of jwt_secret, jwt_public_key, jwt_jwks_file: {sources}")
    mode = settings.auth
    if mode is None:
        if sources:
            return "jwt"
        if settings.profile == "prod":
            raise ConfigError(
                "the prod profile needs authentication: set jwt_secret, jwt_public_key or "
                'jwt_jwks_file, or set auth = "none" to serve without it'
            )
        return "none"
    if mode not in ("jwt", "none"):
        raise ConfigError(f"auth must be jwt or none, not {mode!r}")
    if mode == "jwt" and not sources:
        raise ConfigError("auth = jwt needs jwt_secret, jwt_public_key or jwt_jwks_file")
    if mode == "none" and settings.ops_auth:
        raise ConfigError(
            "ops_auth keeps stats and metrics behind a token with the ops scope, and "
            'auth = "none" has no tokens: configure a JWT key, or set ops_auth = false to '
            "serve them to anyone (then restrict them at the proxy)"
        )
    return mode


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def _algorithm_for(key: Any) -> str:
    """The one JWS algorithm a PEM key verifies (or signs)."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise ConfigError(f"unsupported EC curve {key.curve.name}")
    raise ConfigError(f"unsupported key type {type(key).__name__}: use RSA or EC P-256")


_ASYMMETRIC = frozenset(("RS256", "RS384", "RS512", "ES256", "ES384", "ES512"))


class Authenticator:
    """Verifies access tokens against the configured key; built once at start.

    Raises:
        ConfigError: at construction, for a key that is missing, unreadable,
            too short, or of an unsupported kind.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self.require = ["exp"] if settings.jwt_require_exp else []
        # kid -> (key, algorithm); the None entry serves tokens without a kid.
        self._keys: dict[str | None, tuple[Any, str]] = {}
        self._jwks = settings.jwt_jwks_file is not None and settings.jwt_secret is None
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes for HS256 "
                    f"(it has {len(secret)})"
                )
            self._keys[None] = (secret, "HS256")
        elif settings.jwt_public_key is not None:
            pem = _read(settings.jwt_public_key, "jwt_public_key")
            try:
                key = load_pem_public_key(pem)
            except ValueError:
                raise ConfigError(
                    f"jwt_public_key {settings.jwt_public_key} is not a PEM public key"
                ) from None
            self._keys[None] = (key, _algorithm_for(key))
        elif settings.jwt_jwks_file is not None:
            self._load_jwks(settings.jwt_jwks_file)
        else:
            raise ConfigError("no JWT key configured")

    def _load_jwks(self, path: str) -> None:
        try:
            data = orjson.loads(_read(path, "jwt_jwks_file"))
            entries = data["keys"]
            if not isinstance(entries, list) or not entries:
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f"jwt_jwks_file {path} is not a JWKS (a JSON object with a keys list)"
            ) from None
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError as exc:
                raise ConfigError(f"jwt_jwks_file {path}: unusable key: {exc}") from None
            if jwk.algorithm_name not in _ASYMMETRIC:
                raise ConfigError(
                    f"jwt_jwks_file {path}: key {jwk.key_id!r} uses {jwk.algorithm_name}; "
                    f"supported: {', '.join(sorted(_ASYMMETRIC))}"
                )
            self._keys[jwk.key_id] = (jwk.key, jwk.algorithm_name)
        if not self._keys:
            raise ConfigError(f"jwt_jwks_file {path} holds no signing keys")
        if len(self._keys) == 1 and None not in self._keys:
            self._keys[None] = next(iter(self._keys.values()))

    def verify(self, token: str) -> Principal:
        """Check ``token`` and return what it grants.

        Raises:
            AuthError: 401 ``invalid_token`` or ``token_expired``.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(401, "invalid_token", "the token is too long", _INVALID)
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid") if self._jwks else None  # one key: any kid will do
            entry = self._keys.get(kid) if isinstance(kid, str) or kid is None else None
            if entry is None:
                raise AuthError(
                    401, "invalid_token", "the token's key id (kid) is not known here", _INVALID
                )
            key, algorithm = entry
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                # The times are checked below, after their types: PyJWT converts strings.
                options={
                    "require": self.require,
                    "verify_aud": self.audience is not None,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, "invalid_token", f"invalid token: {exc}", _INVALID) from None
        self._check_times(claims)
        return _principal(claims)

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """``exp``, ``nbf``, ``iat``: NumericDates in range, then against the clock (with leeway).

        Raises:
            AuthError: 401 ``invalid_token`` (a malformed time, ``nbf`` or ``iat`` in
                the future) or ``token_expired``.
        """
        for name in _TIME_CLAIMS:
            if name not in claims:
                continue
            value = claims[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (isinstance(value, int) or math.isfinite(value))
                or not 0 <= value <= MAX_NUMERIC_DATE
            ):
                raise AuthError(
                    401,
                    "invalid_token",
                    f"invalid token: the {name} claim must be a number of seconds since "
                    f"1970 from 0 to {MAX_NUMERIC_DATE}",
                    _INVALID,
                )
        now = self.clock()
        leeway = self.leeway
        if "exp" in claims and claims["exp"] <= now - leeway:
            raise AuthError(401, "token_expired", "the token has expired", _INVALID)
        if "nbf" in claims and claims["nbf"] > now + leeway:
            raise AuthError(
                401, "invalid_token", "invalid token: the token is not yet valid (nbf)", _INVALID
            )
        if "iat" in claims and claims["iat"] > now + leeway:
            raise AuthError(
                401,
                "invalid_token",
                "invalid token: the token was issued in the future (iat)",
                _INVALID,
            )


def _principal(claims: Mapping[str, Any]) -> Principal:
    streams_claim = claims.get("streams", [])
    streams: frozenset[str] | None
    if streams_claim == "*":
        streams = None
    elif isinstance(streams_claim, list) and all(isinstance(s, str) for s in streams_claim):
        streams = None if "*" in streams_claim else frozenset(streams_claim)
    else:
        raise AuthError(
            401,
            "invalid_token",
            'the streams claim must be "*" or a list of stream names',
            _INVALID,
        )
    scope = claims.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else scope
    if not isinstance(scopes, list):
        raise AuthError(
            401, "invalid_token", "the scope claim must be a string or a list", _INVALID
        )
    subject = claims.get("sub", "")
    exp = claims.get("exp")
    return Principal(
        subject=subject if isinstance(subject, str) else str(subject),
        streams=streams,
        publish="publish" in scopes,
        ops="ops" in scopes,
        # Checked by Authenticator._check_times: a number in range, or absent.
        expires_at=float(exp) if isinstance(exp, int | float) else None,
    )


def extract_token(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    *,
    subprotocol: bool = True,
    offered: Sequence[str] | None = None,
) -> str | None:
    """The token a request carries (header, then subprotocol, then query), if any.

    ``headers`` are looked up by lower-case name; ``offered`` is
    :func:`subprotocols` of them, when the caller has it already.

    Raises:
        AuthError: 401 for an Authorization header that is not ``Bearer``, or a
            ``aurigraph.v11.bearer`` subprotocol with no token after it.
    """
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise AuthError(
                401,
                "unauthorized",
                "the Authorization header must be 'Bearer <token>'",
                _CHALLENGE,
            )
        return credentials.strip()
    if subprotocol:
        if offered is None:
            offered = subprotocols(headers)
        if BEARER_PROTOCOL in offered:
            at = offered.index(BEARER_PROTOCOL) + 1
            if at >= len(offered):
                raise AuthError(
                    401,
                    "unauthorized",
                    f"offer the token as the subprotocol after {BEARER_PROTOCOL}",
                    _CHALLENGE,
                )
            return offered[at]
    token = query.get("token")
    return token or None


def subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols a WebSocket request offers, in order."""
    return split_list(headers.get("sec-websocket-protocol") or "")


def missing_token() -> AuthError:
    return AuthError(
        401,
        "unauthorized",
        "an access token is required: send Authorization: Bearer <token>, "
        f"the subprotocols {BEARER_PROTOCOL} and <token>, or ?token=<token>",
        _CHALLENGE,
    )


def mint_token(
    settings: Settings,
    *,
    subject: str,
    streams: Sequence[str],
    publish: bool,
    ttl: float,
    ops: bool = False,
    private_key: str | None = None,
    kid: str | None = None,
    now: float | None = None,
) -> str:
    """Sign a token the server configured by ``settings`` will accept.

    Signs with ``private_key`` (a PEM file; RS256 or ES256 by key type) when
    given, else with ``jwt_secret`` (HS256). ``iss`` and ``aud`` are the
    configured ones; ``ttl`` of 0 means no ``exp``.

    Raises:
        ConfigError: no key to sign with, or an unreadable or unsupported key.
    """
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": subject, "iat": int(now)}
    claims["streams"] = "*" if "*" in streams else list(streams)
    scopes = [name for name, wanted in (("publish", publish), ("ops", ops)) if wanted]
    if scopes:
        claims["scope"] = " ".join(scopes)
    if ttl > 0:
        claims["exp"] = int(now + ttl)
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    headers = {"kid": kid} if kid else None
    if private_key is not None:
        try:
            key = load_pem_private_key(_read(private_key, "private key"), password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{private_key} is not an unencrypted PEM private key") from None
        return jwt.encode(claims, key, algorithm=_algorithm_for(key), headers=headers)  # type: ignore[arg-type]
    if settings.jwt_secret is None:
        raise ConfigError("nothing to sign with: set jwt_secret or pass --private-key")
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256", headers=headers)
