"""The event: what the broker hands the hub, and what history keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Event"]


@dataclass(frozen=True, slots=True)
class Event:
    """One message of one stream.

    ``data`` is the message exactly as clients receive it, ``seq`` included.
    ``accepted_at`` is the ``time.perf_counter()`` reading when the broker
    accepted it, for broadcast-latency figures.
    """

    stream: str
    seq: int
    data: dict[str, Any]
    accepted_at: float
