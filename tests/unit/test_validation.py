"""Ingest validation: jsonschema-rs decides, never laxer than the reference validator."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aurigraph_stream.errors import ValidationError
from aurigraph_stream.streams import REGISTRY, StreamSpec
from tests.support.streamtools import example_event

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# Strings near what the schemas' patterns and formats accept, so that both sides of
# each rule are exercised, not only wildly wrong values.
NEAR = st.sampled_from(
    [
        "2026-11-25T23:59:60Z",
        "2026-13-01T00:00:00Z",
        "2026-11-25T10:00:00.123456789Z",
        "2026-11-25T10:00:00.1234567890Z",
        "2026-11-25T10:00:00+00:00",
        "2026-11-25T10:00:00Z\n",
        "0x" + "a" * 40,
        "0x" + "A" * 39,
        "0x" + "g" * 40,
        "0x" + "\u0661" * 40,
        "10.0.0.1",
        "010.0.0.1",
        "256.1.1.1",
        "::1",
        "fe80::1%eth0",
        "2001:db8::1",
        "1.2.3",
        "1.2.3-rc.1",
        "1.2.3+build",
        "\u0661.2.3",
        "PENDING",
        "pending",
        "ACTIVE",
        "VIEW_CHANGE",
        "",
        "p" * 128,
        "p" * 129,
    ]
)
VALUE = JSON | NEAR | st.integers(min_value=-2, max_value=102) | st.sampled_from([0.5, 1.0, 100.0])


@st.composite
def _mutated(draw: st.DrawFn, spec: StreamSpec) -> dict[str, Any]:
    event = example_event(spec.name)
    names = sorted(event)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        name = draw(st.sampled_from(names))
        if action == "set":
            event[name] = draw(VALUE)
        elif action == "drop":
            event.pop(name, None)
        else:
            event[draw(st.sampled_from(["seq", "extra", name.upper()]))] = draw(VALUE)
    return event


def _reference_valid(spec: StreamSpec, event: Any) -> bool:
    return not any(True for _ in spec._validator.iter_errors(event))


def _refusal(spec: StreamSpec, event: Any) -> ValidationError | None:
    try:
        spec.validate(event)
    except ValidationError as exc:
        return exc
    return None


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_validation_is_the_compiled_schema_and_never_laxer(name: str, data: st.DataObject) -> None:
    """validate() accepts exactly what jsonschema-rs accepts, which the reference validator
    accepts too; every refusal names a field of the event; integers come back as ints."""
    spec = REGISTRY[name]
    event = data.draw(_mutated(spec))
    refusal = _refusal(spec, event)
    assert (refusal is None) is spec._fast.is_valid(event)
    if refusal is None:  # integers written as whole floats are published as ints
        published = spec.validate(event)
        assert all(type(published[f]) is int for f in spec._integers)
        assert published == event
    if refusal is None:
        assert _reference_valid(spec, event)
    else:
        assert refusal.field.startswith("$")
        assert refusal.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "2026-11-25T10:00:00Z\n"),  # Python's "$" matches before a final newline
        ("timestamp", "\u0662\u0660\u0662\u0666-11-25T10:00:00Z"),  # Python's "\d": any digit
        ("from", "0x" + "a" * 40 + "\n"),
        ("value", "1\n"),
    ],
)
def test_what_only_python_regexes_accept_is_refused(field: str, value: str) -> None:
    """Patterns follow JSON Schema's ECMA-262 rules, which the reference validator's Python
    regular expressions do not; the refusal names the field all the same."""
    spec = REGISTRY["transactions"]
    event = {**example_event(spec.name), field: value}
    assert _reference_valid(spec, event)  # the dialect difference this test is about
    refusal = _refusal(spec, event)
    assert refusal is not None
    assert (refusal.field, refusal.message.startswith(f"field {field!r}: ")) == (f"$.{field}", True)


def test_values_that_are_not_json_are_refused() -> None:
    """Runtime.publish may be handed any Python value: bytes and non-string keys are refused."""
    spec = REGISTRY["transactions"]
    event = example_event(spec.name)
    assert _refusal(spec, {**event, "txHash": b"0x00"}) is not None
    assert _refusal(spec, {**event, 1: "x"}) is not None
    assert _refusal(spec, {**event, 1: "x", "zz": 2}) is not None  # mixed key types


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_examples_take_the_fast_path(name: str) -> None:
    """The documented example of each stream is valid to both validators."""
    spec = REGISTRY[name]
    event = example_event(spec.name)
    assert (spec._fast.is_valid(event), _reference_valid(spec, event)) == (True, True)
