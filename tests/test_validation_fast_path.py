"""Ingest validation: the compiled fast path decides exactly as the reference validator."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aurigraph_stream.errors import ValidationError
from aurigraph_stream.streams import REGISTRY, StreamSpec

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


def _event(spec: StreamSpec) -> dict[str, Any]:
    event = dict(spec.example)
    event.pop("seq", None)
    return event


@st.composite
def _mutated(draw: st.DrawFn, spec: StreamSpec) -> dict[str, Any]:
    event = _event(spec)
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


def _accepted(spec: StreamSpec, event: Any) -> bool:
    try:
        spec.validate(event)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_agrees_with_the_reference(name: str, data: st.DataObject) -> None:
    """Whatever the event, validate() accepts it exactly when the reference validator does."""
    spec = REGISTRY[name]
    event = data.draw(_mutated(spec))
    assert _accepted(spec, event) is _reference_valid(spec, event)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_examples_take_the_fast_path(name: str) -> None:
    """The documented example of each stream is valid to both validators."""
    spec = REGISTRY[name]
    event = _event(spec)
    assert (spec._fast.is_valid(event), _reference_valid(spec, event)) == (True, True)
