"""Wire formats: how a stream message or a control reply becomes a payload.

Three formats, each a :class:`Codec` in :data:`CODECS`:

========  ==========================  ======  ==============================================
name      Sec-WebSocket-Protocol      frames  payload
========  ==========================  ======  ==============================================
json      ``aurigraph.v11.json``      TEXT    the spec's JSON message (the default)
msgpack   ``aurigraph.v11.msgpack``   BINARY  the same map, in MessagePack
protobuf  ``aurigraph.v11.protobuf``  BINARY  one ``aurigraph.v11.ServerMessage`` (see proto/)
========  ==========================  ======  ==============================================

The hub encodes a message once per (projection, format) per event. On the
multiplexed endpoint each message is wrapped with its stream and subscription
id; :meth:`Codec.envelope` gives the bytes that go before and after the shared
payload, so wrapping is a concatenation and never a second encoding. That
works for all three: a JSON object opened before and closed after, a
MessagePack map whose last value is the payload, and for Protocol Buffers two
serialized messages concatenated, which decode as their merge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from aurigraph_stream.contract import BEARER_PROTOCOL, SUBPROTOCOL_PREFIX
from aurigraph_stream.errors import SubscriptionError, shown
from aurigraph_stream.proto import aurigraph_v11_pb2 as pb
from aurigraph_stream.wire.frames import Opcode

__all__ = ["CODECS", "DEFAULT", "NOT_FORMATS", "Codec", "select_codec"]

# Our subprotocols that are not formats: the bearer token carrier (access/tokens.py).
NOT_FORMATS = frozenset((BEARER_PROTOCOL,))


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    opcode: Opcode  # TEXT for JSON, BINARY for binary formats
    message: Callable[[str, Mapping[str, Any]], bytes]  # (stream, message) -> payload
    control: Callable[[Mapping[str, Any]], bytes]  # a control reply ({"type": ...}) -> payload
    envelope: Callable[[str, str], tuple[bytes, bytes]]  # (stream, sub id) -> (prefix, suffix)

    @property
    def subprotocol(self) -> str:
        return SUBPROTOCOL_PREFIX + self.name


# -- JSON --------------------------------------------------------------------
def _json_message(stream: str, message: Mapping[str, Any]) -> bytes:
    return orjson.dumps(message)


def _json_envelope(stream: str, sub_id: str) -> tuple[bytes, bytes]:
    head = {"type": "message", "id": sub_id, "stream": stream}
    return orjson.dumps(head)[:-1] + b',"data":', b"}"


# -- MessagePack ---------------------------------------------------------------
def _msgpack_control(message: Mapping[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message)
    return data


def _msgpack_message(stream: str, message: Mapping[str, Any]) -> bytes:
    return _msgpack_control(message)


def _msgpack_envelope(stream: str, sub_id: str) -> tuple[bytes, bytes]:
    pack = msgpack.packb
    # A map of 4 entries (fixmap 0x84) whose last value, "data", is the payload.
    head = b"\x84" + b"".join(
        pack(x) for x in ("type", "message", "id", sub_id, "stream", stream, "data")
    )
    return head, b""


# -- Protocol Buffers -----------------------------------------------------------
_TYPES: dict[str, type[Message]] = {
    "metrics": pb.Metrics,
    "transactions": pb.Transaction,
    "validators": pb.Validator,
    "consensus": pb.Consensus,
    "network": pb.Network,
}
_INTS = frozenset(
    (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    )
)


def _converter(field: Any) -> Callable[[Any], Any]:
    # JSON Schema's "integer" admits 3.0 and its "number" admits 3; protobuf
    # setters do not, so each value is converted to the field's own type.
    if field.cpp_type in _INTS:
        return int
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return float
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return bool
    return str


_CONVERT: dict[str, dict[str, Callable[[Any], Any]]] = {
    stream: {f.name: _converter(f) for f in cls.DESCRIPTOR.fields} for stream, cls in _TYPES.items()
}


def _proto_fields(stream: str, message: Mapping[str, Any]) -> dict[str, Any]:
    convert = _CONVERT[stream]
    return {k: convert[k](v) for k, v in message.items() if k in convert and v is not None}


def _proto_message(stream: str, message: Mapping[str, Any]) -> bytes:
    body: dict[str, Any] = {stream: _TYPES[stream](**_proto_fields(stream, message))}
    return pb.ServerMessage(**body).SerializeToString()


def _position(value: Mapping[str, Any]) -> pb.Position:
    return pb.Position(seq=int(value["seq"]), epoch=str(value["epoch"]))


def _proto_control(frame: Mapping[str, Any]) -> bytes:
    kind = frame["type"]
    out = pb.ServerMessage(id=str(frame.get("id") or ""), stream=str(frame.get("stream") or ""))
    if kind == "subscribed":
        out.subscribed.CopyFrom(
            pb.Subscribed(
                position=_position(frame["position"]),
                recovered=bool(frame["recovered"]),
                replayed=int(frame["replayed"]),
            )
        )
    elif kind == "unsubscribed":
        out.unsubscribed.SetInParent()
        if frame.get("reason"):
            out.unsubscribed.reason = str(frame["reason"])
    elif kind == "refreshed":
        out.refreshed.SetInParent()
        if frame.get("expiresAt") is not None:
            out.refreshed.expiresAt = float(frame["expiresAt"])
    elif kind == "snapshot":
        stream = frame["stream"]
        snapshot = pb.Snapshot(position=_position(frame["position"]))
        items = [_TYPES[stream](**_proto_fields(stream, item)) for item in frame["items"]]
        getattr(snapshot, stream).extend(items)
        out.snapshot.CopyFrom(snapshot)
    elif kind == "error":
        out.error.CopyFrom(
            pb.Error(
                op=str(frame.get("op") or ""),
                error=str(frame["error"]),
                detail=str(frame["detail"]),
            )
        )
    else:
        raise ValueError(f"no protobuf form for control frame {kind!r}")
    return out.SerializeToString()


def _proto_envelope(stream: str, sub_id: str) -> tuple[bytes, bytes]:
    return pb.ServerMessage(id=sub_id, stream=stream).SerializeToString(), b""


CODECS: dict[str, Codec] = {
    "json": Codec("json", Opcode.TEXT, _json_message, orjson.dumps, _json_envelope),
    "msgpack": Codec(
        "msgpack", Opcode.BINARY, _msgpack_message, _msgpack_control, _msgpack_envelope
    ),
    "protobuf": Codec("protobuf", Opcode.BINARY, _proto_message, _proto_control, _proto_envelope),
}
DEFAULT = CODECS["json"]


def select_codec(offered: Sequence[str], fmt: str | None) -> tuple[Codec, str | None]:
    """Choose the format from the offered subprotocols and a ``format`` parameter.

    Returns the codec and the subprotocol to answer with (``None``: no header).
    Offered subprotocols that are not ours are ignored; the first of ours
    that names a known format wins. ``format`` alone selects without a
    subprotocol; both must then agree.

    Raises:
        SubscriptionError: an unknown format, or a subprotocol and ``format`` that disagree.
    """
    chosen: Codec | None = None
    answer: str | None = None
    unknown: list[str] = []
    for offer in offered:
        if not offer.startswith(SUBPROTOCOL_PREFIX) or offer in NOT_FORMATS:
            continue
        codec = CODECS.get(offer.removeprefix(SUBPROTOCOL_PREFIX))
        if codec is None:
            unknown.append(offer)
        elif chosen is None:
            chosen, answer = codec, offer
    if chosen is None and unknown:
        raise SubscriptionError(
            "unsupported_format",
            f"subprotocol {shown(unknown[0])} is not served; offer one of "
            + ", ".join(c.subprotocol for c in CODECS.values()),
        )
    if fmt is not None:
        codec = CODECS.get(fmt)
        if codec is None:
            raise SubscriptionError(
                "unsupported_format",
                f"format must be one of {', '.join(CODECS)}, not {shown(fmt)}",
            )
        if chosen is not None and codec is not chosen:
            raise SubscriptionError(
                "unsupported_format",
                f"format={shown(fmt)} disagrees with the subprotocol {answer!r}",
            )
        chosen = codec
    return chosen or DEFAULT, answer
