"""Building the frames the hub queues: the one place a message becomes bytes on the wire.

Fan-out, replays and control replies all come through here, so a message
reads the same whichever way it reached a subscriber.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.event import Event
from aurigraph_stream.filters import Filter
from aurigraph_stream.hub.members import Subscription
from aurigraph_stream.wire.deflate import compress, envelope, inflate_head
from aurigraph_stream.wire.frames import encode_frame, encode_frame_parts, server_payload

__all__ = [
    "begins_with",
    "build_frame",
    "control_frame",
    "deflated_frame",
    "encode_payload",
    "message_frame",
    "payload_of",
    "snapshot_frame",
]

logger = logging.getLogger("aurigraph_stream.hub")


def build_frame(opcode: int, body: bytes, level: int, bits: int) -> bytes:
    """One server frame: compressed from an empty window when ``bits`` (RFC 7692), else plain."""
    if bits:
        return encode_frame(opcode, compress(body, level, bits), rsv1=True)
    return encode_frame(opcode, body)


def encode_payload(event: Event, flt: Filter, codec: str) -> bytes | None:
    """The event as ``codec`` carries it, projected by ``flt``; ``None`` if it cannot."""
    try:
        return CODECS[codec].message(event.stream, flt.project(event.data))
    except Exception:  # one malformed event must not stop the fan-out
        logger.exception("cannot encode %s seq=%d as %s", event.stream, event.seq, codec)
        return None


def payload_of(sub: Subscription, event: Event) -> bytes | None:
    """``event`` as ``sub`` receives it: its view's rendering, or its format's encoding."""
    if sub.view is not None:
        return sub.view.render(event)
    return encode_payload(event, sub.filter, sub.codec)


def message_frame(
    payload: bytes, codec: str, bits: int, prefix: bytes, suffix: bytes, level: int
) -> bytes:
    """An encoded message in its envelope (``prefix``/``suffix``: ``/ws``, GraphQL), framed."""
    opcode = CODECS[codec].opcode
    if bits:
        return build_frame(opcode, prefix + payload + suffix if prefix else payload, level, bits)
    if prefix:
        return encode_frame_parts(opcode, prefix, payload, suffix)
    return encode_frame(opcode, payload)


def deflated_frame(opcode: int, prefix: bytes, body: bytes, suffix: bytes) -> bytes:
    """A compressed message in its envelope, framed: ``body`` is the payload as
    :func:`~aurigraph_stream.wire.deflate.compress` made it (once, for every envelope),
    and the envelope is joined around it as stored blocks (:func:`.deflate.envelope`)."""
    head, tail = envelope(prefix, suffix)
    return encode_frame_parts(opcode, head, body, tail, rsv1=True)


def begins_with(frame: bytes, prefix: bytes) -> bool:
    """Whether the message a server frame carries (compressed or not) begins with ``prefix``."""
    payload = server_payload(frame)
    if frame[0] & 0x40:  # RSV1: compressed, each message from an empty window
        return inflate_head(payload, len(prefix)) == prefix
    return payload[: len(prefix)] == prefix


def control_frame(codec: str, bits: int, level: int, frame: Mapping[str, Any]) -> bytes:
    """A control reply (``{"type": "subscribed", ...}``), encoded and framed for one variant."""
    c = CODECS[codec]
    return build_frame(c.opcode, c.control(frame), level, bits)


def snapshot_frame(codec: str, bits: int, level: int, reply: Mapping[str, Any]) -> bytes:
    """A snapshot reply; items ``codec`` cannot carry are left out (and logged), as in live
    delivery, so that one bad message in the set never fails the subscription."""
    try:
        return control_frame(codec, bits, level, reply)
    except Exception:  # a trusted source or an embedder published what a format cannot carry
        c = CODECS[codec]
        stream = reply["stream"]
        kept = []
        for item in reply["items"]:
            try:
                c.message(stream, item)
            except Exception as exc:
                logger.warning(
                    "snapshot of %s leaves out seq=%s: %s cannot carry it (%s)",
                    stream,
                    item.get("seq"),
                    codec,
                    exc,
                )
                continue
            kept.append(item)
        return control_frame(codec, bits, level, {**reply, "items": kept})
