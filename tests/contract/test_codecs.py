"""The wire-format contract, run against every format: each carries every stream's messages,
the control replies and the /ws envelope, and a stock decoder reads back what was encoded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aurigraph_stream.codecs import CODECS, Codec
from aurigraph_stream.errors import ValidationError
from aurigraph_stream.proto import aurigraph_v11_pb2 as pb
from aurigraph_stream.streams import NAMES, REGISTRY
from aurigraph_stream.streams.body import BodyError, parse_events
from aurigraph_stream.wire.frames import Opcode
from tests.support.streamtools import example_event


def _fields(message: Message) -> dict[str, Any]:
    """The fields a protobuf message carries (presence, not defaults)."""
    return {
        f.name: getattr(message, f.name)
        for f in message.DESCRIPTOR.fields
        if message.HasField(f.name)
    }


def _proto(payload: bytes) -> dict[str, Any]:
    """A ServerMessage as the JSON shape: stream messages and replies by their oneof case."""
    message = pb.ServerMessage.FromString(payload)
    case = message.WhichOneof("body")
    assert case is not None, "a ServerMessage without a body"
    out: dict[str, Any] = {}
    if message.id:
        out["id"] = message.id
    if message.stream:
        out["stream"] = message.stream
    if case in NAMES:
        data = _fields(getattr(message, case))
        return {"type": "message", **out, "data": data} if message.id else data
    body = getattr(message, case)
    out["type"] = case
    if case == "subscribed":
        position = {"seq": body.position.seq, "epoch": body.position.epoch}
        out |= {"position": position, "recovered": body.recovered, "replayed": body.replayed}
    elif case == "snapshot":
        position = {"seq": body.position.seq, "epoch": body.position.epoch}
        items = [_fields(item) for item in getattr(body, out["stream"])]
        out |= {"position": position, "items": items}
    elif case == "error":
        out |= {"op": body.op, "error": body.error, "detail": body.detail}
    return out


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "json": orjson.loads,
    "msgpack": msgpack.unpackb,
    "protobuf": _proto,
}


@pytest.fixture(params=sorted(CODECS))
def codec(request: pytest.FixtureRequest) -> Codec:
    """Every wire format, in turn."""
    return CODECS[request.param]


def test_every_format_has_a_decoder_here() -> None:
    """A new format joins this suite by adding its stock decoder to DECODERS."""
    assert set(DECODERS) == set(CODECS)


def test_text_for_json_binary_for_the_rest(codec: Codec) -> None:
    """JSON goes in text frames; binary formats in binary frames, under their subprotocol."""
    assert codec.opcode == (Opcode.TEXT if codec.name == "json" else Opcode.BINARY)
    assert codec.subprotocol == f"aurigraph.v11.{codec.name}"


@pytest.mark.parametrize("stream", NAMES)
def test_each_stream_message_reads_back(codec: Codec, stream: str) -> None:
    """A stream message, seq included, decodes to exactly the JSON content."""
    message = {**example_event(stream), "seq": 41}
    assert DECODERS[codec.name](codec.message(stream, message)) == message


@pytest.mark.parametrize("stream", NAMES)
def test_the_envelope_wraps_the_shared_payload(codec: Codec, stream: str) -> None:
    """prefix + payload + suffix, a concatenation, decodes as the /ws message frame."""
    message = {**example_event(stream), "seq": 7}
    prefix, suffix = codec.envelope(stream, "sub-1")
    wrapped = DECODERS[codec.name](prefix + codec.message(stream, message) + suffix)
    assert wrapped == {"type": "message", "id": "sub-1", "stream": stream, "data": message}


@pytest.mark.parametrize(
    "reply",
    [
        {
            "type": "subscribed",
            "id": "tx",
            "stream": "transactions",
            "position": {"seq": 41, "epoch": "9f3a6c21"},
            "recovered": False,
            "replayed": 3,
        },
        {"type": "unsubscribed", "id": "tx"},
        {
            "type": "error",
            "id": "tx",
            "op": "subscribe",
            "error": "unknown_stream",
            "detail": "stream must be one of the five",
        },
        {
            "type": "snapshot",
            "id": "v",
            "stream": "validators",
            "position": {"seq": 9, "epoch": "e1"},
            "items": [{**example_event("validators"), "seq": 9}],
        },
    ],
    ids=lambda reply: reply["type"],
)
def test_control_replies_read_back(codec: Codec, reply: dict[str, Any]) -> None:
    """subscribed, unsubscribed, error and snapshot replies decode to what was sent."""
    assert DECODERS[codec.name](codec.control(reply)) == reply


# -- what ingest accepts, every format carries -----------------------------------------
def _edge_numbers() -> st.SearchStrategy[Any]:
    safe = 2**53 - 1
    return st.one_of(
        st.integers(min_value=-2, max_value=2**70),
        st.sampled_from([0, 1, safe, safe + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 21000.0, 0.5, 1e-300, float(safe), 1e300]),
    )


def _json_text(value: Any) -> bytes:
    """``value`` as JSON text, big integers included (orjson writes at most 64 bits)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return orjson.dumps(value)
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, list):
        return b"[" + b",".join(_json_text(v) for v in value) + b"]"
    return b"{" + b",".join(orjson.dumps(k) + b":" + _json_text(v) for k, v in value.items()) + b"}"


@st.composite
def _ingest_bodies(draw: st.DrawFn, stream: str) -> bytes:
    event: dict[str, Any] = dict(example_event(stream))
    numeric = [
        name
        for name, p in REGISTRY[stream].event_schema["properties"].items()
        if p.get("type") in ("integer", "number")
    ]
    chosen: list[str] = draw(st.lists(st.sampled_from(numeric), max_size=len(numeric), unique=True))
    for name in chosen:
        event[name] = draw(_edge_numbers())
    strings = [n for n, v in event.items() if isinstance(v, str) and n != "timestamp"]
    change: bool = draw(st.booleans())
    if strings and change:
        field: str = draw(st.sampled_from(strings))
        event[field] = draw(st.text(max_size=20))
    return _json_text(event)


def _accepts(stream: str, body: bytes) -> list[Any] | None:
    """The events the ingest API publishes for ``body``, or None when it refuses it."""
    try:
        events = parse_events(body)
        return [REGISTRY[stream].validate(event, i) for i, event in enumerate(events)]
    except (BodyError, ValidationError):
        return None


@pytest.mark.parametrize("stream", NAMES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_event_ingest_accepts_reads_back_equal_in_every_format(
    stream: str, data: st.DataObject
) -> None:
    """Whatever numbers a publisher writes, an event the ingest API accepts encodes in JSON,
    MessagePack and Protocol Buffers and decodes back equal, integers as integers."""
    body = data.draw(_ingest_bodies(stream))
    events = _accepts(stream, body)
    if events is None:
        return
    message = {**events[0], "seq": 2**53 - 1}
    for name, codec in CODECS.items():
        decoded = DECODERS[name](codec.message(stream, message))
        assert decoded == message, name
        integers = REGISTRY[stream]._integers
        assert all(type(decoded[f]) is int for f in integers if f in message), name
