"""What to do after a connection ends or an upgrade is refused. No I/O.

The close codes and their rules are the server's own table
(:mod:`.closecodes`, generated from ``contract.CloseCode``):

- ``reconnect``: connect again after a back-off, and resume every subscription;
- ``new_token`` as well (4001): only with a new token from the ``token``
  callback; without one the SDK stops with :class:`~.errors.TokenExpired`;
- neither (1008, 4003, 1002, ...): stop, with :class:`~.errors.StreamClosed`.

Codes the table does not list: a connection lost without a close frame (1006,
or 1005) and 1012-1014 (restart, try again later) are retried, as is the
4000-4499 range, the server's "reconnect" range; anything else stops.

Refused upgrades: 429 and 503 are retried no sooner than ``Retry-After``, and
other 5xx after a back-off; 401 once more with a new token when there is a
callback to give one; other refusals stop (:class:`~.errors.AuthenticationError`
for 401 and 403, :class:`~.errors.HandshakeError` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from .closecodes import CLOSE_CODES
from .errors import (
    AuthenticationError,
    HandshakeError,
    StreamClientError,
    StreamClosed,
    TokenExpired,
)

__all__ = ["ABNORMAL", "Decision", "after_close", "after_refusal"]

ABNORMAL = 1006  # RFC 6455: the connection ended without a close frame
_NO_STATUS = 1005
_RETRY_UNLISTED = frozenset((ABNORMAL, _NO_STATUS, 1012, 1013, 1014))


@dataclass(frozen=True, slots=True)
class Decision:
    """Reconnect (``retry``), with a new token first (``new_token``), or stop with ``error``."""

    retry: bool
    new_token: bool = False
    error: StreamClientError | None = None


def after_close(code: int, reason: str, can_renew_token: bool) -> Decision:
    """The decision after the server closed with ``code`` (1006: no close frame)."""
    info = CLOSE_CODES.get(code)
    if info is None:
        if code in _RETRY_UNLISTED or 4000 <= code < 4500:
            return Decision(retry=True)
        return Decision(retry=False, error=StreamClosed(code, reason))
    if not info.reconnect:
        return Decision(retry=False, error=StreamClosed(code, reason or info.reason))
    if info.new_token:
        if can_renew_token:
            return Decision(retry=True, new_token=True)
        return Decision(retry=False, error=TokenExpired(code, reason or info.reason))
    return Decision(retry=True)


def after_refusal(
    status: int, error: str, detail: str, can_renew_token: bool, renewed: bool
) -> Decision:
    """The decision after the upgrade was answered with HTTP ``status``.

    Args:
        renewed: the refused attempt already used a token fetched for it.
    """
    if status in (429, 503) or 500 <= status < 600:
        return Decision(retry=True)
    if status == 401 and can_renew_token and not renewed:
        return Decision(retry=True, new_token=True)
    if status in (401, 403):
        return Decision(retry=False, error=AuthenticationError(status, error, detail))
    return Decision(retry=False, error=HandshakeError(status, error, detail))
