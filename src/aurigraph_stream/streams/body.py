"""An ingest body as events: strict JSON (no duplicate keys), one event or a batch.

orjson parses; it keeps the last of duplicate keys silently, as most parsers
do, so ``{"gasUsed": 1, "gasUsed": 2}`` would be published as 2 while a
publisher's log shows 1. Strict JSON APIs refuse such a body (RFC 8259 4:
names SHOULD be unique; I-JSON, RFC 7493 2.3: MUST).

Detecting them costs a count, not a second parse. Outside strings, a colon
appears in JSON text only between a name and its value, so the text holds
``colons = pairs + colons inside strings``. The parsed data gives ``pairs``
(the sum of its objects' sizes, which lose one per duplicate) and the colons
inside its strings. The two sides agree exactly when no key was dropped,
unless a string spells a colon as the escape ``\\u003a``: such a body (no
publisher writes one) takes the slow, exact path of the standard library's
parser with a hook that sees every pair.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from aurigraph_stream.errors import ValidationError

__all__ = ["BodyError", "parse_events"]


class BodyError(ValueError):
    """The body is not JSON (``invalid_json``), or not an event or a batch (``invalid_body``)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


def parse_events(body: bytes | bytearray | memoryview) -> list[Any]:
    """The events of an ingest body: one object, or a non-empty array of them.

    The events are not validated here (the stream's schema does that).

    Raises:
        BodyError: not JSON, or neither an object nor a non-empty array.
        ValidationError: an object repeats a key (422, naming it and the event's index).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError("invalid_json", f"body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        events = [data]
    elif isinstance(data, list) and data:
        events = data
    else:
        raise BodyError(
            "invalid_body", "body must be one event (object) or a non-empty array of events"
        )
    raw = bytes(body) if isinstance(body, memoryview) else body  # a bytearray needs no copy
    if raw.count(b":") != _pairs_and_string_colons(data) or _escapes_colon(raw):
        _refuse_duplicates(raw, isinstance(data, list))
    return events


def _escapes_colon(raw: bytes | bytearray) -> bool:
    # Most bodies hold no backslash at all: one memchr pass answers for them.
    return b"\\" in raw and (b"\\u003a" in raw or b"\\u003A" in raw)


def _pairs_and_string_colons(data: Any) -> int:
    """Key-value pairs plus the colons in every key and string.

    orjson writes the parsed data back with one colon per pair and every string's
    colons as they are (it escapes only quotes, backslashes and control characters),
    so the colons of that text are the count, made in C. Data orjson cannot write
    back (nested deeper than its writer goes) counts as a mismatch: the exact path
    decides.
    """
    try:
        return orjson.dumps(data).count(b":")
    except orjson.JSONEncodeError:
        return -1


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _refuse_duplicates(raw: bytes | bytearray, batch: bool) -> None:
    """The exact check: the standard parser, with a hook that sees every pair of every object."""
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates)
    text = raw.decode()
    if not batch:
        try:
            decoder.decode(text)
        except _Duplicate as exc:
            raise _duplicate(exc.key, None) from None
        return
    # A batch: read its elements one by one, to name the event that repeats a key.
    at, end, index = text.index("[") + 1, len(text), 0
    while at < end:
        while at < end and text[at] in " \t\r\n,":
            at += 1
        if at >= end or text[at] == "]":
            return
        try:
            _, at = decoder.raw_decode(text, at)
        except _Duplicate as exc:
            raise _duplicate(exc.key, index) from None
        index += 1


def _duplicate(key: str, index: int | None) -> ValidationError:
    return ValidationError(
        f"field {key!r} appears more than once in the event: send each field once",
        f"$.{key}",
        index,
    )
