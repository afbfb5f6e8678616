"""The wire-format contract, run against every format: each carries every stream's messages,
the control replies and the /ws envelope, and a stock decoder reads back what was encoded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest
from google.protobuf.message import Message

from aurigraph_stream.codecs import CODECS, Codec
from aurigraph_stream.proto import aurigraph_v11_pb2 as pb
from aurigraph_stream.streams import NAMES
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
