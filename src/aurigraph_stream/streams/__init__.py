"""The stream registry: name -> :class:`StreamSpec` for the five streams."""

from __future__ import annotations

import jsonschema_rs
from jsonschema import Draft202012Validator

from aurigraph_stream.errors import UnknownStream
from aurigraph_stream.streams.examples import EXAMPLES
from aurigraph_stream.streams.schemas import MESSAGE_SCHEMAS, event_schema, integer_fields
from aurigraph_stream.streams.spec import StreamSpec

__all__ = ["NAMES", "REGISTRY", "StreamSpec", "get"]

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
