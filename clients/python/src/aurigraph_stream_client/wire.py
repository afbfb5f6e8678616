"""What goes over the socket: commands out (JSON), frames in (three formats), token expiry.

Every frame the server sends on ``/ws`` decodes to the dict the JSON format
would carry, whatever the format::

    {"type": "message", "id", "stream", "data": {...}}
    {"type": "subscribed", "id", "stream", "position": {"seq", "epoch"}, "recovered", "replayed"}
    {"type": "snapshot", "id", "stream", "position", "items": [...]}
    {"type": "unsubscribed", "id", "reason"?}   {"type": "refreshed", "id"?, "expiresAt"}
    {"type": "error", "id"?, "op"?, "error", "detail"}

MessagePack needs the ``msgpack`` extra and Protocol Buffers the ``protobuf``
extra; each is imported only when its format is used.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

__all__ = ["FORMATS", "Format", "command", "decoder", "subprotocol", "token_expiry"]

Format = Literal["json", "msgpack", "protobuf"]
FORMATS: tuple[Format, ...] = ("json", "msgpack", "protobuf")
SUBPROTOCOL_PREFIX = "aurigraph.v11."


def subprotocol(fmt: Format) -> str:
    """The ``Sec-WebSocket-Protocol`` that selects a format."""
    return SUBPROTOCOL_PREFIX + fmt


def command(op: str, **fields: Any) -> str:
    """A command as the text frame the server reads; ``None`` fields are left out."""
    body = {"op": op} | {k: v for k, v in fields.items() if v is not None}
    return orjson.dumps(body).decode()


def decoder(fmt: Format) -> Callable[[str | bytes], dict[str, Any]]:
    """The function that turns one frame of ``fmt`` into the JSON-shaped dict.

    Raises:
        ImportError: the format's extra is not installed (with the pip command to run).
        ValueError: an unknown format.
    """
    if fmt == "json":
        return _json
    if fmt == "msgpack":
        try:
            import msgpack
        except ImportError as exc:
            raise ImportError(
                "the msgpack format needs: pip install 'aurigraph-stream-client[msgpack]'"
            ) from exc
        return functools.partial(_msgpack, msgpack.unpackb)
    if fmt == "protobuf":
        return _protobuf_decoder()
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def _json(frame: str | bytes) -> dict[str, Any]:
    data = orjson.loads(frame)
    if not isinstance(data, dict):
        raise ValueError("a server frame is a JSON object")
    return data


def _msgpack(unpack: Callable[..., Any], frame: str | bytes) -> dict[str, Any]:
    data = unpack(frame if isinstance(frame, bytes) else frame.encode(), raw=False)
    if not isinstance(data, dict):
        raise ValueError("a server frame is a MessagePack map")
    return data


def _protobuf_decoder() -> Callable[[str | bytes], dict[str, Any]]:
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise ImportError(
            "the protobuf format needs: pip install 'aurigraph-stream-client[protobuf]'"
        ) from exc
    from .protodesc import FILE_DESCRIPTOR

    # A pool of our own: the server's generated module may be loaded in the same
    # process and owns these names in the default pool.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(FILE_DESCRIPTOR))
    server_message = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("aurigraph.v11.ServerMessage")
    )

    def decode(frame: str | bytes) -> dict[str, Any]:
        message = server_message.FromString(frame if isinstance(frame, bytes) else frame.encode())
        return _from_proto(message)

    return decode


def _fields(message: Any) -> dict[str, Any]:
    """The fields a message carries (unset optional fields are absent, as in JSON)."""
    return {f.name: v for f, v in message.ListFields()}


def _proto_position(message: Any) -> dict[str, Any]:
    """A protobuf ``Position`` as the JSON format writes it."""
    return {"seq": message.seq, "epoch": message.epoch}


def _from_proto(message: Any) -> dict[str, Any]:
    body = message.WhichOneof("body")
    head: dict[str, Any] = {"id": message.id} if message.id else {}
    if body == "subscribed":
        sub = message.subscribed
        return {"type": "subscribed", **head, "stream": message.stream} | {
            "position": _proto_position(sub.position),
            "recovered": sub.recovered,
            "replayed": sub.replayed,
        }
    if body == "snapshot":
        snap = message.snapshot
        items = [_fields(item) for item in getattr(snap, message.stream, ())]
        return {"type": "snapshot", **head, "stream": message.stream} | {
            "position": _proto_position(snap.position),
            "items": items,
        }
    if body == "unsubscribed":
        reason = message.unsubscribed.reason
        return {"type": "unsubscribed", **head} | ({"reason": reason} if reason else {})
    if body == "refreshed":
        has = message.refreshed.HasField("expiresAt")
        return {
            "type": "refreshed",
            **head,
            "expiresAt": message.refreshed.expiresAt if has else None,
        }
    if body == "error":
        error = message.error
        op = {"op": error.op} if error.op else {}
        return {"type": "error", **head, **op, "error": error.error, "detail": error.detail}
    if body is None:
        raise ValueError("a protobuf frame without a body")
    data = _fields(getattr(message, body))
    return {"type": "message", **head, "stream": message.stream or body, "data": data}


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT, read without checking it (the server checks); None if absent.

    The SDK only needs to know when to ask for the next token.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, Mapping) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
