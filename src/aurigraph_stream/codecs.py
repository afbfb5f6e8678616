"""Wire formats: how an event's message becomes a payload, once per format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from aurigraph_stream.wire.frames import Opcode

__all__ = ["CODECS", "Codec"]


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    opcode: Opcode  # TEXT for JSON, BINARY for binary formats
    encode: Callable[[Any], bytes]


CODECS: dict[str, Codec] = {
    "json": Codec("json", Opcode.TEXT, orjson.dumps),
}
