"""The access policy in front of every WebSocket upgrade and every publish.

:func:`check_upgrade_access` runs for each upgrade request before anything is
written, in this order, cheapest and most abusable first::

    client address   the peer, or X-Forwarded-For / X-Real-IP when the peer is a trusted proxy
    handshake rate   token bucket per client address           -> 429 + Retry-After
    Host             required (RFC 6455 4.1)                    -> 400
    connections      open WebSockets per client address        -> 429 + Retry-After
    Origin           allow-list; same-origin and no Origin pass -> 403
    token            when auth is on (access/tokens.py)        -> 401
    stream           the token's streams claim (ws/upgrade.py) -> 403

Every refusal is a :class:`HandshakeRejected` (or its subclass ``AuthError``),
answered as HTTP with a JSON body before any upgrade. :class:`Guard` holds the
state the checks need, one per server.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from aurigraph_stream.access.proxies import TrustedProxies
from aurigraph_stream.access.ratelimit import ConnectionCounter, RateLimiter
from aurigraph_stream.access.tokens import (
    ANONYMOUS,
    UNRESTRICTED,
    Authenticator,
    Principal,
    auth_mode,
    extract_token,
    missing_token,
    subprotocols,
)
from aurigraph_stream.config import Settings, split_list
from aurigraph_stream.contract import BEARER_PROTOCOL
from aurigraph_stream.errors import AuthError, HandshakeRejected
from aurigraph_stream.wire.handshake import Request

__all__ = [
    "Access",
    "Guard",
    "authorize_ops",
    "authorize_publish",
    "authorize_stream",
    "check_upgrade_access",
]

logger = logging.getLogger("aurigraph_stream.security")


@dataclass(frozen=True, slots=True)
class Access:
    """What the checks of an accepted upgrade found."""

    principal: Principal
    client: str  # the rate-limit and connection-count key of the client address
    subprotocol: str | None  # the Sec-WebSocket-Protocol to answer with
    offered: list[str]  # the subprotocols the request offers, in order


class Guard:
    """Per-server security state: the authenticator, limiters and lists.

    Raises:
        ConfigError: at construction, for bad security settings (see
            :func:`~aurigraph_stream.access.tokens.auth_mode`, proxies, keys).
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.mode = auth_mode(settings)
        self.authenticator = Authenticator(settings) if self.mode == "jwt" else None
        origins = settings.ws_origins if settings.ws_origins is not None else settings.cors_origins
        listed = {o.lower().rstrip("/") for o in split_list(origins)}
        self.origins: frozenset[str] | None = None if "*" in listed else frozenset(listed)
        self.proxies = TrustedProxies.parse(settings.trusted_proxies)
        self.handshakes = (
            RateLimiter(settings.handshake_rate, settings.handshake_burst)
            if settings.handshake_rate > 0
            else None
        )
        self.per_client = ConnectionCounter(settings.max_connections_per_ip)

    # -- checks ---------------------------------------------------------------
    def check_rate(self, client: str) -> None:
        if self.handshakes is None:
            return
        wait = self.handshakes.take(client, self.clock())
        if wait:
            retry = self.handshakes.retry_after(wait)
            raise HandshakeRejected(
                429,
                "too_many_handshakes",
                f"over {self.settings.handshake_rate:g} WebSocket handshakes per second "
                f"from {client}; retry after {retry} s",
                (("Retry-After", str(retry)),),
            )

    def check_connections(self, client: str) -> None:
        if self.per_client.full(client):
            raise HandshakeRejected(
                429,
                "too_many_client_connections",
                f"{client} already holds the maximum of {self.per_client.limit} WebSocket "
                "connections; close one first",
                (("Retry-After", str(self.settings.retry_after)),),
            )

    def check_origin(self, headers: Mapping[str, str], action: str = "open WebSockets") -> None:
        """Refuse a browser page from a site not on the list (cross-site WebSocket hijacking,
        and cross-site forgery of ingest, whose simple requests browsers send unasked).

        No Origin means a non-browser client, which could send any Origin it
        liked anyway; a page served by this host (Origin equal to Host) passes.
        ``action`` words the refusal.
        """
        origin = headers.get("origin")
        if origin is None or self.origins is None:
            return
        normal = origin.strip().lower().rstrip("/")
        if normal in self.origins:
            return
        host = headers.get("host", "").strip().lower()
        if host and normal in (f"http://{host}", f"https://{host}"):
            return
        raise HandshakeRejected(
            403,
            "origin_not_allowed",
            f"pages from {origin[:100]} may not {action} on this server (ws_origins)",
        )

    def authenticate(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        *,
        subprotocol: bool,
        optional: bool = False,
        offered: Sequence[str] | None = None,
    ) -> Principal:
        """The principal a request's token grants; UNRESTRICTED when auth is off.

        With ``optional``, a request without a token is :data:`ANONYMOUS` (it
        may authenticate later); a token it does carry must still be valid.
        ``offered``: the request's subprotocols, when the caller has split them.

        Raises:
            AuthError: 401 without a valid token.
        """
        if self.authenticator is None:
            return UNRESTRICTED
        token = extract_token(headers, query, subprotocol=subprotocol, offered=offered)
        if token is None:
            if optional:
                return ANONYMOUS
            raise missing_token()
        return self.authenticator.verify(token)

    def refresh(self, current: Principal, token: str) -> Principal:
        """What a connection opened as ``current`` is granted by a ``refresh`` token.

        The token is checked as a handshake token is, and must name the same
        subject: a connection can renew its own access, never become someone
        else. It gets the new token's grants, so its streams may shrink but never
        grow beyond what a new handshake would get. With authentication off the
        connection stays as it is.

        Raises:
            AuthError: 401 for a token that is not valid, or is for another subject.
        """
        if self.authenticator is None:
            return current
        principal = self.authenticator.verify(token)
        if principal.subject != current.subject:
            raise AuthError(
                401, "invalid_token", "a refresh token must be for the connection's subject"
            )
        return principal

    # -- connection bookkeeping -----------------------------------------------
    def opened(self, client: str) -> None:
        self.per_client.acquire(client)

    def closed(self, client: str) -> None:
        self.per_client.release(client)


def _target(request: Request) -> str:
    return request.path + ("?" + urlencode(request.query) if request.query else "")


def check_upgrade_access(
    guard: Guard, request: Request, peer: str, *, token_optional: bool = False
) -> Access:
    """Run every check on an upgrade request (see the module docstring).

    With ``token_optional`` (``/graphql``, whose clients may send the token in
    ``connection_init``), a request without one gets :data:`ANONYMOUS`.

    Raises:
        HandshakeRejected: 429 over a limit, 403 for a refused Origin;
            AuthError: 401 without a valid token.
    """
    headers = request.headers
    offered = subprotocols(headers)  # split once: the token, the format and /graphql read it
    client = guard.proxies.client(peer, headers)
    guard.check_rate(client)
    if not headers.get("host"):
        raise HandshakeRejected(400, "bad_request", "an upgrade request needs a Host header")
    guard.check_connections(client)
    guard.check_origin(headers)
    try:
        principal = guard.authenticate(
            headers, request.query, subprotocol=True, optional=token_optional, offered=offered
        )
    except AuthError as exc:
        # An audit line; the query string may hold the token, which redaction blanks.
        logger.info(
            "auth refused",
            extra={"client": client, "target": _target(request), "error": exc.error},
        )
        raise
    return Access(
        principal, client, BEARER_PROTOCOL if BEARER_PROTOCOL in offered else None, offered
    )


def authorize_stream(principal: Principal, stream: str) -> None:
    """Raises AuthError (403) unless ``principal`` may read ``stream``."""
    if not principal.can_read(stream):
        raise AuthError(403, "forbidden", f"the token does not grant the stream {stream!r}")


def authorize_publish(
    guard: Guard, headers: Mapping[str, str], query: Mapping[str, str]
) -> Principal:
    """Check an ingest request: a token with the publish scope, or the publisher key.

    With JWT configured, a token with ``scope: publish`` is required (the
    ``Authorization`` header or ``?token=``). Without it, ``publisher_key``
    (when set) must arrive in ``X-Publisher-Key``.

    Raises:
        AuthError: 401 without a valid credential, 403 without the publish scope.
    """
    if guard.authenticator is None:
        key = guard.settings.publisher_key
        sent = headers.get("x-publisher-key")
        if key is not None and (
            sent is None or not hmac.compare_digest(sent.encode(), key.encode())
        ):
            raise AuthError(401, "unauthorized", "missing or wrong X-Publisher-Key header")
        return UNRESTRICTED
    principal = guard.authenticate(headers, query, subprotocol=False)
    if not principal.can_publish:
        raise AuthError(403, "forbidden", "the token does not have the publish scope")
    return principal


def authorize_ops(guard: Guard, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
    """Check a request for operator data (stats, metrics): with ``ops_auth``, the ops scope.

    The token travels as for ingest (``Authorization: Bearer`` or ``?token=``);
    Prometheus sends it with ``authorization: {credentials_file: ...}``. Health
    checks never come here: probes carry no token.

    Raises:
        AuthError: 401 without a valid token, 403 without the ops scope.
    """
    if not guard.settings.ops_auth or guard.authenticator is None:
        return
    principal = guard.authenticate(headers, query, subprotocol=False)
    if not principal.ops:
        raise AuthError(403, "forbidden", "the token does not have the ops scope")
