"""JSON Schemas of the five streams' messages: the single source of truth.

The same schema documents the wire format (``/api/v11/streams/{name}/schema``),
validates ingested events (without ``seq``, which the broker assigns), and
checks what tests receive.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["MESSAGE_SCHEMAS", "event_schema"]

Schema = dict[str, Any]

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
            "tps": {
                "type": "number",
                "minimum": 0,
                "description": "New transactions (status PENDING) published per second "
                "over the last interval.",
            },
            "cpu": {
                "type": "number",
                "minimum": 0,
                "description": "Server process CPU time over the interval, % of one core.",
            },
            "memory": {
                "type": "number",
                "minimum": 0,
                "description": "Server process resident set size, MB (MiB).",
            },
            "connections": {
                "type": "integer",
                "minimum": 0,
                "description": "Open WebSocket connections, all endpoints.",
            },
            "errorRate": {
                "type": "number",
                "minimum": 0,
                "description": "(failed sends + protocol errors) / messages sent, over the "
                "interval; 0 when nothing was sent.",
            },
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
            "gasUsed": {"type": "integer", "minimum": 0},
        },
    ),
    "validators": _message(
        "ValidatorMessage",
        {
            "validator": ADDRESS,
            "status": {"type": "string", "enum": ["ACTIVE", "INACTIVE", "JAILED"]},
            "votingPower": {"type": "integer", "minimum": 0},
            "uptime": {"type": "number", "minimum": 0, "maximum": 100, "description": "%"},
            "lastBlockProposed": {"type": "integer", "minimum": 0},
        },
    ),
    "consensus": _message(
        "ConsensusMessage",
        {
            "leader": ADDRESS,
            "epoch": {"type": "integer", "minimum": 0},
            "round": {"type": "integer", "minimum": 0},
            "term": {"type": "integer", "minimum": 0},
            "state": {
                "type": "string",
                "enum": ["PROPOSING", "VOTING", "COMMITTED", "VIEW_CHANGE"],
            },
            "performanceScore": {"type": "number", "minimum": 0, "maximum": 1},
            "activeValidators": {"type": "integer", "minimum": 0},
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
            "latency": {"type": "number", "minimum": 0, "description": "ms"},
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
