"""The exceptions the SDK raises.

Exception tree::

    StreamClientError           base of everything the SDK raises
    ├── HandshakeError          the server refused the upgrade (HTTP 4xx/5xx it will not retry)
    │   └── AuthenticationError 401 or 403: no valid token, or one without the stream
    ├── StreamClosed            the server closed with a code the SDK does not reconnect after
    │   └── TokenExpired        4001 and no token callback to ask for a new token
    ├── CommandError            the server refused a subscribe command (an ``error`` reply)
    │   └── Revoked             a refreshed token no longer grants the stream (reason forbidden)
    └── GaveUp                  ``max_retries + 1`` connection attempts failed in a row

A subscription's iterator raises them after it has delivered every message it
received before the failure: nothing received is dropped.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CommandError",
    "GaveUp",
    "HandshakeError",
    "Revoked",
    "StreamClientError",
    "StreamClosed",
    "TokenExpired",
]


class StreamClientError(Exception):
    """Base class of every exception raised by aurigraph_stream_client."""


class HandshakeError(StreamClientError):
    """The server answered the upgrade with an HTTP error it is no use retrying.

    ``error`` and ``detail`` come from the server's JSON body when it sent one.
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class AuthenticationError(HandshakeError):
    """401 or 403: the token is missing, not valid, or does not grant what was asked."""


class StreamClosed(StreamClientError):
    """The server closed the connection with a code after which the SDK does not reconnect."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed by the server: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class TokenExpired(StreamClosed):
    """4001 (the token expired, or a refresh was refused) and no token callback to ask.

    With a callback the SDK asks it for a new token and reconnects; a callback
    that fails counts as a failed attempt, retried after the back-off.
    """


class CommandError(StreamClientError):
    """The server answered a subscribe command with an error (``invalid_filter``, ...)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail


class Revoked(CommandError):
    """The connection's refreshed token no longer grants this subscription's stream."""


class GaveUp(StreamClientError):
    """The first attempt and ``max_retries`` retries failed in a row.

    ``__cause__`` is the last failure: websockets' ``ConnectionClosed`` for a
    connection that ended, a :class:`HandshakeError` for a refused upgrade, the
    ``OSError`` (or timeout) of a connection that could not open, or what the
    token callback raised.
    """
