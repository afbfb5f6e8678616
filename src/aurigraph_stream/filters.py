"""Subscription filters: parsed, checked against the stream's schema, compiled.

A filter arrives as query parameters (``/ws/transactions?address=0xab..,0xcd..``,
every value a string, lists comma-separated) or as the ``filter`` object of a
subscribe command (JSON types: a list or a single value). Both go through
:func:`parse_filter`, which refuses an unknown option, a value of the wrong
type or a value its stream's schema would not allow, with a sentence that says
which. Each value of a field filter is validated with the JSON Schema of the
message field it is compared with, so a filter can never name a status the
stream does not have.

The compiled :class:`Filter` has a canonical, hashable ``key``: two clients
asking for the same thing in any order or case share one hub group, hence one
encoding per event. One list clause is singled out as the ``index``: the hub
finds the groups interested in an event by looking that field's value up in a
dict, so a thousand clients each watching their own address cost one lookup
per transaction, not a thousand tests.

Options per stream::

    transactions  address, from, to   list of addresses (address: from or to)
                  status              list of PENDING, CONFIRMED, FAILED
                  minValue            wei, compared as an integer
                  detail              full (default) or summary: txHash, status, seq
    validators    validator           list of addresses
                  status              list of ACTIVE, INACTIVE, JAILED
    consensus     state               list of PROPOSING, VOTING, COMMITTED, VIEW_CHANGE
                  latest              true: a slow client gets the newest state, not a backlog
    network       peerId              list of peer ids
                  connected           true or false
    metrics       fields              projection: these fields (and seq)
                  every               one message per N intervals (seq divisible by N)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from aurigraph_stream.errors import SubscriptionError, shown
from aurigraph_stream.streams import REGISTRY

__all__ = ["MAX_VALUES", "OPTIONS", "Clause", "Filter", "everything", "parse_filter"]

MAX_VALUES = 1000  # values in one list option
MAX_EVERY = 3600

Message = Mapping[str, Any]
Predicate = Callable[[Message], bool]
FilterKey = tuple[tuple[str, Any], ...]

SUMMARY = ("txHash", "status", "seq")


@dataclass(frozen=True, slots=True)
class _Option:
    """How one filter option is read and what it tests."""

    kind: str  # list | wei | bool | int | choice | fields
    prop: str = ""  # the message field whose schema validates each value
    matches: tuple[str, ...] = ()  # message fields a list option compares with
    lower: bool = False  # compared case-insensitively (hex addresses)
    choices: tuple[str, ...] = ()
    minimum: int = 0
    maximum: int = 0


def _addresses(*fields: str) -> _Option:
    return _Option("list", prop=fields[0], matches=fields, lower=True)


def _values(field: str) -> _Option:
    return _Option("list", prop=field, matches=(field,))


OPTIONS: dict[str, dict[str, _Option]] = {
    "transactions": {
        "address": _addresses("from", "to"),
        "from": _addresses("from"),
        "to": _addresses("to"),
        "status": _values("status"),
        "minValue": _Option("wei", prop="value"),
        "detail": _Option("choice", choices=("full", "summary")),
    },
    "validators": {"validator": _addresses("validator"), "status": _values("status")},
    "consensus": {"state": _values("state"), "latest": _Option("bool")},
    "network": {"peerId": _values("peerId"), "connected": _Option("bool", prop="connected")},
    "metrics": {
        "fields": _Option("fields"),
        "every": _Option("int", minimum=1, maximum=MAX_EVERY),
    },
}

# Validators of single message fields, built once: filter values are checked
# with the very schema that describes the field on the wire. jsonschema-rs decides
# (about a microsecond a value: a thousand addresses cost a millisecond, not the
# reference validator's ten), with the ECMA-262 patterns JSON Schema specifies, as
# ingest does; the reference validator only words a refusal.
_FIELD_VALIDATORS: dict[tuple[str, str], Draft202012Validator] = {
    (stream, name): Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for stream, spec in REGISTRY.items()
    for name, schema in spec.message_schema["properties"].items()
}
_FAST_VALIDATORS: dict[tuple[str, str], jsonschema_rs.Validator] = {
    (stream, name): jsonschema_rs.validator_for(schema, validate_formats=True)
    for stream, spec in REGISTRY.items()
    for name, schema in spec.message_schema["properties"].items()
}


class Clause:
    """One condition of a filter. A list clause tests membership, the others a predicate."""

    __slots__ = ("fields", "lower", "name", "test", "values")

    def __init__(
        self,
        name: str,
        test: Predicate,
        fields: tuple[str, ...] = (),
        values: frozenset[str] = frozenset(),
        lower: bool = False,
    ) -> None:
        self.name = name
        self.test = test
        self.fields = fields  # list clauses: the message fields looked up
        self.values = values  # list clauses: normalized values
        self.lower = lower


@dataclass(frozen=True, slots=True, eq=False)
class Filter:
    """A compiled filter of one stream. ``key`` identifies it; equal keys, equal filters."""

    stream: str
    key: FilterKey
    clauses: tuple[Clause, ...]
    index: Clause | None  # the list clause the hub indexes on, if any
    rest: Predicate | None  # every clause but ``index``; None: nothing left to test
    projection: tuple[str, ...] | None  # fields kept, in schema order; None: all
    latest: bool  # latest-wins delivery

    def matches(self, message: Message) -> bool:
        """Whether ``message`` passes every clause (the index clause included)."""
        return all(clause.test(message) for clause in self.clauses)

    def project(self, message: Message) -> Message:
        """The message as this filter's subscribers receive it."""
        if self.projection is None:
            return message
        return {k: message[k] for k in self.projection if k in message}


def _fail(name: str, detail: str) -> SubscriptionError:
    return SubscriptionError("invalid_filter", f"filter {shown(name)}: {detail}")


def _check_value(stream: str, prop: str, name: str, value: Any) -> None:
    try:
        if _FAST_VALIDATORS[(stream, prop)].is_valid(value):
            return
    except ValueError:  # not JSON data
        pass
    error = best_match(_FIELD_VALIDATORS[(stream, prop)].iter_errors(value))
    # jsonschema's message quotes the value whole: quote it short instead. It finds
    # nothing where Python's regular expressions are laxer ("$" before a final newline).
    reason = (
        error.message.replace(repr(value), shown(value))
        if error is not None
        else "it does not match the field's schema"
    )
    raise _fail(name, f"{shown(value)} is not a valid {prop!r} value: {reason}")


def _as_list(name: str, raw: Any, strings: bool) -> list[Any]:
    if strings:
        if not isinstance(raw, str):
            raise _fail(name, "expected a comma-separated list")
        items: list[Any] = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, list):
        items = raw
    else:
        items = [raw]
    if not items or items == [""]:
        raise _fail(name, "needs at least one value")
    if len(items) > MAX_VALUES:
        raise _fail(name, f"at most {MAX_VALUES} values, got {len(items)}")
    return items


def _as_bool(name: str, raw: Any, strings: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if strings and isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
        return raw.lower() in ("true", "1")
    raise _fail(name, f"expected true or false, got {shown(raw)}")


def _as_int(name: str, raw: Any, strings: bool, minimum: int, maximum: int) -> int:
    if strings and isinstance(raw, str) and raw.isascii() and raw.isdigit():
        # Read no more digits than the maximum has: int() refuses 4,300 and more.
        digits = raw.lstrip("0") or "0"
        value = int(digits) if len(digits) <= len(str(maximum)) else maximum + 1
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        raise _fail(name, f"expected an integer, got {shown(raw)}")
    if not minimum <= value <= maximum:
        raise _fail(name, f"must be between {minimum} and {maximum}, got {shown(raw)}")
    return value


def _membership(fields: tuple[str, ...], values: frozenset[str], lower: bool) -> Predicate:
    if len(fields) == 1:
        (field,) = fields
        if lower:
            return lambda m: str(m.get(field, "")).lower() in values
        return lambda m: m.get(field) in values
    return lambda m: any(str(m.get(f, "")).lower() in values for f in fields)


def _at_least(wei: int) -> Predicate:
    return lambda m: int(m["value"]) >= wei


def _equals(field: str, value: bool) -> Predicate:
    return lambda m: m.get(field) is value


def _every(n: int) -> Predicate:
    return lambda m: m["seq"] % n == 0


def _all(tests: list[Predicate]) -> Predicate | None:
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda m: all(test(m) for test in tests)


def parse_filter(stream: str, raw: Mapping[str, Any], *, strings: bool = False) -> Filter:
    """Parse, validate and compile the filter ``raw`` of ``stream``.

    Args:
        stream: a registered stream name.
        raw: option name -> value. With ``strings`` (query parameters) every
            value is a string and lists are comma-separated; otherwise values
            have JSON types and a list option also takes a single value.

    Raises:
        SubscriptionError: ``invalid_filter`` naming the option and the problem.
    """
    options = OPTIONS[stream]
    key: dict[str, Any] = {}
    clauses: list[Clause] = []
    projection: tuple[str, ...] | None = None
    latest = False
    props = REGISTRY[stream].message_schema["properties"]
    for name, value in raw.items():
        option = options.get(name)
        if option is None:
            known = ", ".join(options)
            raise SubscriptionError(
                "invalid_filter",
                f"unknown filter {shown(name)} for stream {stream} (filters: {known})",
            )
        if option.kind == "list":
            items = _as_list(name, value, strings)
            for item in items:
                _check_value(stream, option.prop, name, item)
            normalized = frozenset(str(i).lower() if option.lower else i for i in items)
            key[name] = tuple(sorted(normalized))
            test = _membership(option.matches, normalized, option.lower)
            clauses.append(Clause(name, test, option.matches, normalized, option.lower))
        elif option.kind == "wei":
            if strings or isinstance(value, str):
                text = value if isinstance(value, str) else ""
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                text = str(value)
            else:
                raise _fail(
                    name, f"expected wei as an integer or a decimal string, got {shown(value)}"
                )
            _check_value(stream, option.prop, name, text)
            wei = int(text)
            key[name] = str(wei)
            clauses.append(Clause(name, _at_least(wei)))
        elif option.kind == "bool":
            flag = _as_bool(name, value, strings)
            if name == "latest":
                latest = flag
                if flag:
                    key[name] = True
            else:
                key[name] = flag
                clauses.append(Clause(name, _equals(option.prop, flag)))
        elif option.kind == "int":
            n = _as_int(name, value, strings, option.minimum, option.maximum)
            if n != 1:
                key[name] = n
                clauses.append(Clause(name, _every(n)))
        elif option.kind == "choice":
            if value not in option.choices:
                raise _fail(name, f"must be one of {', '.join(option.choices)}, got {shown(value)}")
            if value == "summary":
                key[name] = value
                projection = SUMMARY
        else:  # fields: a projection
            items = _as_list(name, value, strings)
            unknown = [i for i in items if i not in props]
            if unknown:
                raise _fail(
                    name, f"no field {shown(unknown[0])} in {stream} (fields: {', '.join(props)})"
                )
            chosen = {*items, "seq"}
            projection = tuple(p for p in props if p in chosen)
            key[name] = projection
    # Index on the list clause of the most specific field: declared order
    # puts addresses and ids first, enumerations last.
    lists = [c for c in clauses if c.fields]
    index = min(lists, key=lambda c: list(options).index(c.name)) if lists else None
    rest = _all([c.test for c in clauses if c is not index])
    return Filter(
        stream=stream,
        key=tuple(sorted(key.items())),
        clauses=tuple(clauses),
        index=index,
        rest=rest,
        projection=projection,
        latest=latest,
    )


_EVERYTHING = {name: parse_filter(name, {}) for name in REGISTRY}


def everything(stream: str) -> Filter:
    """The empty filter of ``stream``: every message, in full."""
    return _EVERYTHING[stream]
