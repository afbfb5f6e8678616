"""What defines a stream: its name, path, schemas and an example message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from aurigraph_stream.errors import ValidationError

__all__ = ["StreamSpec"]


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One of the five streams. Instances live in :data:`REGISTRY`."""

    name: str
    trigger: str
    message_schema: Mapping[str, Any]
    event_schema: Mapping[str, Any]
    example: Mapping[str, Any]
    # Fields of type integer: JSON Schema lets 21000.0 pass as one; it is published as 21000.
    _integers: tuple[str, ...] = field(repr=False, compare=False)
    # The schema compiled by jsonschema-rs: it decides, in about 2 us per event
    # (the reference below takes about 150), with the ECMA-262 regular expressions
    # JSON Schema specifies ("$" is the end of the string, "\d" is 0-9).
    _fast: jsonschema_rs.Validator = field(repr=False, compare=False)
    # The reference validator words a refusal (field path and message), which
    # is read only when an event is refused.
    _validator: Draft202012Validator = field(repr=False, compare=False)

    @property
    def path(self) -> str:
        return f"/ws/{self.name}"

    def validate(self, event: Any, index: int | None = None) -> Any:
        """Check one ingested event against the event schema; returns the event to publish.

        That is ``event`` itself, or a copy whose integer fields written as whole floats
        (``21000.0``, ``2.1e4``, which JSON Schema counts as integers) are ints.

        Raises:
            ValidationError: naming the first offending field as a JSON path.
        """
        try:
            if self._fast.is_valid(event):
                return self._whole(event)
            fast_error = next(iter(self._fast.iter_errors(event)), None)
        except ValueError:  # not JSON data (bytes, a key that is not a string...)
            fast_error = None
        error = _first_error(self._validator, event)
        if error is not None:
            field_path, message = _describe(error)
            raise ValidationError(message, field_path, index)
        # The reference found nothing: Python's regular expressions let "$" match
        # before a final newline and "\d" match any script's digits.
        if fast_error is not None:
            parts = fast_error.instance_path
            name = str(parts[-1]) if parts else "event"
            raise ValidationError(f"field {name!r}: {fast_error.message}", _json_path(parts), index)
        raise ValidationError("the event is not JSON data", "$", index)

    def _whole(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        # A whole float in an integer field would reach JSON and MessagePack subscribers
        # as a float: it is published as the integer the schema says it is. One dict
        # lookup per integer field; a copy only when there is something to change.
        fixed: dict[str, Any] | None = None
        for name in self._integers:
            value = event.get(name)
            if type(value) is float:  # whole and within 2^53-1: the schema checked it
                if fixed is None:
                    fixed = dict(event)
                fixed[name] = int(value)
        return event if fixed is None else fixed


def _json_path(parts: Sequence[str | int]) -> str:
    """``$.field`` and ``$.list[0]``, as the reference validator's ``json_path`` writes them."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _first_error(validator: Draft202012Validator, instance: Any) -> SchemaError | None:
    # By path, so one event always gets the same answer; str() keeps mixed keys (an
    # embedder's non-string key next to string ones) comparable.
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return errors[0] if errors else None


def _describe(error: SchemaError) -> tuple[str, str]:
    """Return (json path of the field, human message) for a schema error."""
    path = error.json_path
    instance: Any = error.instance
    if error.validator == "required":
        required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
        missing = next(name for name in required if name not in instance)
        return f"{path}.{missing}", f"field {missing!r} is required"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})  # type: ignore[union-attr]
        extra = sorted((name for name in instance if name not in known), key=str)
        name = extra[0] if extra else "?"
        return f"{path}.{name}", f"field {name!r} is not allowed"
    field_name = path.rsplit(".", 1)[-1] if path != "$" else "event"
    return path, f"field {field_name!r}: {error.message}"
