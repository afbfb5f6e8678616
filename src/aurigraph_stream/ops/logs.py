"""Logging: readable lines in dev, one JSON object per line in prod (``log_format``).

Fields travel as ``extra=`` on the log call (``logger.info("close",
extra={"endpoint": ..., "code": ...})``). The text format appends them as
``key=value`` after the message; the JSON format makes them keys, so a log
shipper needs no parsing. Credentials are blanked out of every line, this
package's and the libraries' (:mod:`aurigraph_stream.access.redact`).
``log_level`` applies to this package's loggers, as the spec sets it for its
own category; libraries stay at INFO or above.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from aurigraph_stream.access.redact import RedactingFilter
from aurigraph_stream.config import Settings

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "extra_fields"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# uvicorn adds ``color_message``, the same text with terminal colours.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of ``record``, in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"}


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``2025-10-25T09:35:00.123Z INFO aurigraph_stream.connection close endpoint=metrics ...``"""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_iso(record.created), record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={v}" for k, v in extra_fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Send every log record to stderr in the configured format and levels, credentials redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.INFO))
    logging.getLogger("aurigraph_stream").setLevel(level)
