"""The exception tree: every exception this package raises.

Exception tree::

    StreamError                     base of everything this package raises
    ├── ConfigError                 a setting is missing, unknown or out of range
    ├── BrokerUnavailable           the broker's store cannot be reached (HTTP 503)
    ├── UnknownStream               a stream name that is not one of the five
    ├── ValidationError             an event does not match its stream's schema
    ├── SubscriptionError           a bad filter, format, replay or command (HTTP 400 / error reply)
    ├── HandshakeRejected           an upgrade refused with an HTTP status (4xx/503)
    │   └── AuthError               no token, a bad one, or one without the right (401/403)
    └── ProtocolError               a peer broke RFC 6455 / RFC 7692; carries a close code
        ├── MessageTooBig           a frame or message over the configured limit (1009)
        └── InvalidPayload          text that is not UTF-8, or bad close payload (1007)

Close codes follow RFC 6455 section 7.4 for 1000-1015. Application codes use
4000-4999 and split like centrifuge's: 4000-4499 means "reconnect, possibly
later", 4500-4999 means "do not reconnect with the same request".
"""

from __future__ import annotations

from typing import Any

from aurigraph_stream.contract import CloseCode

__all__ = [
    "AuthError",
    "BrokerUnavailable",
    "ConfigError",
    "HandshakeRejected",
    "InvalidPayload",
    "MessageTooBig",
    "ProtocolError",
    "StreamError",
    "SubscriptionError",
    "UnknownStream",
    "ValidationError",
    "shown",
]

_SHOWN = 60  # characters of a client's value an error detail quotes


def shown(value: Any) -> str:
    """A client's value as an error detail quotes it: its repr, cut to a few dozen characters.

    A detail names what was wrong, it does not echo it back: a 5,000-digit number
    sent as a filter gets a short sentence, not a 10 KB one.
    """
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


class StreamError(Exception):
    """Base class of every exception raised by aurigraph_stream."""


class ConfigError(StreamError):
    """A setting is missing, unknown or out of range."""


class BrokerUnavailable(StreamError):
    """The broker's store (Redis) cannot be reached: nothing was published or read.

    The ingest API answers it with 503 and ``Retry-After``; a publish that
    raised it was not acknowledged, and none of its events was broadcast.
    """


class UnknownStream(StreamError):
    """A stream name that is not one of the registered streams."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown stream {name!r}")
        self.name = name


class ValidationError(StreamError):
    """An event does not match its stream's JSON Schema.

    ``field`` is the JSON path of the offending field (``"$.gasUsed"``) so that
    an HTTP 422 can name it; ``index`` is the event's position in a batch.
    """

    def __init__(self, message: str, field: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index


class SubscriptionError(StreamError):
    """A subscription that cannot be served as asked: a bad filter, format or position.

    ``error`` is the slug (``invalid_filter``, ``unsupported_format``, ...) and
    ``detail`` the sentence naming what is wrong. A handshake answers it with
    HTTP 400 and the JSON error body; a subscribe command on ``/ws`` with an
    error reply, and the connection stays open.
    """

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class ProtocolError(StreamError):
    """The peer broke the WebSocket protocol; the connection closes with ``code``."""

    code: CloseCode = CloseCode.PROTOCOL_ERROR

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageTooBig(ProtocolError):
    code = CloseCode.MESSAGE_TOO_BIG


class InvalidPayload(ProtocolError):
    code = CloseCode.INVALID_PAYLOAD


class HandshakeRejected(StreamError):
    """An upgrade request refused before the 101: answered as HTTP ``status``.

    ``error`` is a short machine-readable slug and ``detail`` the sentence a
    person reads; both go into the JSON body.
    """

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


class AuthError(HandshakeRejected):
    """A request without a valid credential (401) or without the right it needs (403).

    Raised before any upgrade or publish; the ingest API answers it with the
    same status and JSON body as a refused handshake.
    """
