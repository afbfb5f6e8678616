"""JSON Schemas of the five streams' messages: the single source of truth.

The same schema documents the wire format (``/api/v11/streams/{name}/schema``),
validates ingested events (without ``seq``, which the broker assigns), and
checks what tests receive.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "MESSAGE_SCHEMAS", "event_schema", "integer_fields"]

Schema = dict[str, Any]

#: The largest integer every format carries and every JSON reader reads exactly:
#: 2^53 - 1 (I-JSON, RFC 7493 2.2; JavaScript's Number.MAX_SAFE_INTEGER). It is
#: inside the Protocol Buffers fields' int64 and uint64 and inside a double, so a
#: message reads the same in JSON, MessagePack and Protocol Buffers, in a browser
#: as in Python. Larger amounts travel as decimal strings, as ``value`` (wei) does.
MAX_SAFE_INTEGER = 2**53 - 1


def _count(description: str | None = None) -> Schema:
    """A non-negative integer (int64 in the .proto), bounded so every format carries it."""
    schema: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER}
    if description is not None:
        schema["description"] = description
    return schema


def _measure(description: str | None = None, maximum: float = MAX_SAFE_INTEGER) -> Schema:
    """A non-negative number (double in the .proto); an integral value stays exact."""
    schema: Schema = {"type": "number", "minimum": 0, "maximum": maximum}
    if description is not None:
        schema["description"] = description
    return schema


TIMESTAMP: Schema = {
    "type": "string",
    "description": "ISO-8601 UTC time the event happened, ending in Z (fraction optional).",
    # Field ranges in the pattern itself: jsonschema checks "date-time" only
    # when an optional RFC 3339 package is installed, and a month 13 must not pass.
    "pattern": r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?Z$",
}
ADDRESS: Schema = {
    "type": "string",
    "description": "Account address: 0x and 40 hex digits.",
    "pattern": "^0x[0-9a-fA-F]{40}$",
}
SEQ: Schema = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_SAFE_INTEGER,
    "description": "Per-stream sequence number, assigned by the broker, +1 per message.",
}


def _message(title: str, properties: Schema) -> Schema:
    props = {"timestamp": TIMESTAMP, **properties, "seq": SEQ}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


MESSAGE_SCHEMAS: dict[str, Schema] = {
    "metrics": _message(
        "MetricsMessage",
        {
            "tps": _measure(
                "New transactions (status PENDING) published per second over the last interval."
            ),
            "cpu": _measure("Server process CPU time over the interval, % of one core."),
            "memory": _measure("Server process resident set size, MB (MiB)."),
            "connections": _count("Open WebSocket connections, all endpoints."),
            "errorRate": _measure(
                "(failed sends + protocol errors) / messages sent, over the "
                "interval; 0 when nothing was sent."
            ),
        },
    ),
    "transactions": _message(
        "TransactionMessage",
        {
            "txHash": {
                "type": "string",
                "pattern": "^0x[0-9a-fA-F]{64}$",
                "description": "0x and 64 hex digits.",
            },
            "from": ADDRESS,
            "to": ADDRESS,
            "value": {
                "type": "string",
                "pattern": "^(0|[1-9][0-9]{0,77})$",
                "description": "Amount in wei, as a decimal string.",
            },
            "status": {"type": "string", "enum": ["PENDING", "CONFIRMED", "FAILED"]},
            "gasUsed": _count(),
        },
    ),
    "validators": _message(
        "ValidatorMessage",
        {
            "validator": ADDRESS,
            "status": {"type": "string", "enum": ["ACTIVE", "INACTIVE", "JAILED"]},
            "votingPower": _count(),
            "uptime": _measure("%", maximum=100),
            "lastBlockProposed": _count(),
        },
    ),
    "consensus": _message(
        "ConsensusMessage",
        {
            "leader": ADDRESS,
            "epoch": _count(),
            "round": _count(),
            "term": _count(),
            "state": {
                "type": "string",
                "enum": ["PROPOSING", "VOTING", "COMMITTED", "VIEW_CHANGE"],
            },
            "performanceScore": _measure(maximum=1),
            "activeValidators": _count(),
        },
    ),
    "network": _message(
        "NetworkMessage",
        {
            "peerId": {"type": "string", "minLength": 1, "maxLength": 128},
            "ip": {
                "type": "string",
                "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
                "description": "IPv4 or IPv6 address of the peer.",
            },
            "connected": {"type": "boolean"},
            "latency": _measure("ms"),
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$"},
        },
    ),
}


def event_schema(message_schema: Schema) -> Schema:
    """The schema an ingested event must match: the message's, minus ``seq``."""
    schema = copy.deepcopy(message_schema)
    schema["title"] = schema["title"].replace("Message", "Event")
    del schema["properties"]["seq"]
    schema["required"] = [name for name in schema["required"] if name != "seq"]
    return schema


def integer_fields(schema: Schema) -> tuple[str, ...]:
    """The top-level fields of type ``integer``.

    JSON Schema counts ``21000.0`` as an integer; published as it is, it would reach
    subscribers as a float (``21000.0`` in JSON, a float in MessagePack), so
    validation turns such values into ints.
    """
    return tuple(name for name, p in schema["properties"].items() if p.get("type") == "integer")
