"""Credentials never reach a log: a logging filter that blanks them out.

Tokens travel in places that get logged: ``?token=`` in a query string, an
``Authorization: Bearer`` header in an error message. :class:`RedactingFilter`
is attached to the handler that writes the logs (ops/logs.py), so every
record it prints, this package's and the libraries' (uvicorn's), is scrubbed
first, ``extra=`` fields included.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactingFilter", "redact", "redact_url"]

# The password of a URL's user information: redis://:secret@host, rediss://user:secret@host.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:@/\s]*):[^@/\s]+@")

_REDACTIONS = (
    (_URL_PASSWORD, r"\1:[redacted]@"),
    (re.compile(r"(?i)([?&;]token=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s,\"']+"), r"\1[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
)
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Blank out anything that looks like a credential: ``token=`` values, bearer tokens, JWTs."""
    lowered = text.lower()
    if (
        "token=" not in lowered
        and "bearer" not in lowered
        and "eyj" not in lowered
        and "@" not in text
    ):
        return text  # the common case, without running a regex
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL with the password of its user information blanked out."""
    return _URL_PASSWORD.sub(r"\1:[redacted]@", url)


class RedactingFilter(logging.Filter):
    """Redacts a record's message and its ``extra=`` string fields; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: leave it to the handler
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for key, value in record.__dict__.items():
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True
