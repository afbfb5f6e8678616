"""What to do after a connection ends or an upgrade is refused. No I/O.

The close codes and their rules are the server's own table
(:mod:`.closecodes`, generated from ``contract.CloseCode``):

- ``reconnect``: connect again after a back-off, and resume every subscription;
- ``new_token`` as well (4001): only with a new token from the ``token``
  callback; without one the SDK stops with :class:`~.errors.TokenExpired`;
- neither (1008, 4003, 1002, ...): stop, with :class:`~.errors.StreamClosed`.

Codes the table does not list are retried after the back-off: a connection lost
without a close frame (1006, or 1005), 1012-1015, and codes a proxy or gateway
between client and server may send (3000-3999, 4000-4999 outside the table).
Stopping on a code nobody documented would end a long-running consumer for good
on one intermediary's whim; ``max_retries`` bounds the retries when that matters.

Refused upgrades: 429 and 503 are retried no sooner than ``Retry-After``, and
other 5xx after a back-off; 401 once more with a new token when there is a
callback to give one and the refused token was not fresh from it (a token kept
from an earlier connection; a fresh one refused would be refused again); other
refusals stop (:class:`~.errors.AuthenticationError`
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


@dataclass(frozen=True, slots=True)
class Decision:
    """Reconnect (with a new token first when ``new_token``), or stop with ``error``."""

    new_token: bool = False
    error: StreamClientError | None = None


def after_close(code: int, reason: str, can_renew_token: bool) -> Decision:
    """The decision after the server closed with ``code`` (1006: no close frame)."""
    info = CLOSE_CODES.get(code)
    if info is None:
        return Decision()
    if not info.reconnect:
        return Decision(error=StreamClosed(code, reason or info.reason))
    if info.new_token:
        if can_renew_token:
            return Decision(new_token=True)
        return Decision(error=TokenExpired(code, reason or info.reason))
    return Decision()


def after_refusal(
    status: int, error: str, detail: str, can_renew_token: bool, renewed: bool
) -> Decision:
    """The decision after the upgrade was answered with HTTP ``status``.

    Args:
        renewed: the refused attempt already used a token fetched for it.
    """
    if status == 429 or 500 <= status < 600:
        return Decision()
    if status == 401 and can_renew_token and not renewed:
        return Decision(new_token=True)
    if status in (401, 403):
        return Decision(error=AuthenticationError(status, error, detail))
    return Decision(error=HandshakeError(status, error, detail))
