"""The stream registry: name -> :class:`StreamSpec` for the five streams."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from aurigraph_stream.errors import UnknownStream
from aurigraph_stream.streams.examples import EXAMPLES
from aurigraph_stream.streams.schemas import MESSAGE_SCHEMAS, event_schema, integer_fields
from aurigraph_stream.streams.spec import StreamSpec

__all__ = ["NAMES", "REGISTRY", "SNAPSHOT_KEYS", "StreamSpec", "get", "snapshot_key"]

_TRIGGERS = {
    "metrics": "every broadcast interval (1 s; 2 s in the dev profile)",
    "transactions": "each new transaction and each status change",
    "validators": "each validator state change",
    "consensus": "each consensus state change",
    "network": "each peer connection and disconnection",
}


def _spec(name: str) -> StreamSpec:
    ingest = event_schema(MESSAGE_SCHEMAS[name])
    return StreamSpec(
        name=name,
        trigger=_TRIGGERS[name],
        message_schema=MESSAGE_SCHEMAS[name],
        event_schema=ingest,
        example=EXAMPLES[name],
        _integers=integer_fields(ingest),
        _fast=jsonschema_rs.validator_for(ingest, validate_formats=True),
        _validator=Draft202012Validator(ingest, format_checker=Draft202012Validator.FORMAT_CHECKER),
    )


REGISTRY: dict[str, StreamSpec] = {name: _spec(name) for name in MESSAGE_SCHEMAS}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def get(name: str) -> StreamSpec:
    """Return the stream called ``name``.

    Raises:
        UnknownStream: if there is no such stream.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownStream(name) from None


# stream -> (the field that identifies an item of its snapshot set, whether case-insensitive)
SNAPSHOT_KEYS = {"validators": ("validator", True), "network": ("peerId", False)}


def snapshot_key(stream: str, message: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Where ``message`` goes in its stream's snapshot set: (item key, stays in the set).

    ``None`` for a stream without a snapshot or a message without a key. A
    validator stays in the set; a peer leaves it when ``connected`` is false.
    The node's in-process set and a networked broker's stored set both use
    this, so they agree.
    """
    spec = SNAPSHOT_KEYS.get(stream)
    if spec is None:
        return None
    field, lower = spec
    value = message.get(field)
    if not isinstance(value, str):
        return None
    key = value.lower() if lower else value
    return key, stream != "network" or message.get("connected") is not False
