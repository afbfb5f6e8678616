"""The values the SDK hands the application besides stream messages.

- :class:`Gap`: the server could not resume a subscription (``recovered: false``);
  it comes before the next message, so a gap is never silent.
- :class:`Snapshot`: the current set of validators or peers, when asked for.
- :class:`Connected`, :class:`Disconnected`, :class:`TokenRefreshed`: what the
  connection does, for the ``on_event`` callback (the CLI shows them).

Each has ``to_json()``: a JSON object whose ``type`` names it, which no stream
message has (``aurigraph-stream listen --json`` writes them as lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "Connected",
    "ConnectionEvent",
    "Disconnected",
    "Gap",
    "Position",
    "Snapshot",
    "TokenRefreshed",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream is: a ``seq`` and the epoch of the history that holds it."""

    seq: int
    epoch: str

    def text(self) -> str:
        """``SEQ:EPOCH``, as ``since`` takes it."""
        return f"{self.seq}:{self.epoch}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read ``SEQ:EPOCH``.

        Raises:
            ValueError: not two parts, or a seq that is not a non-negative integer.
        """
        seq, sep, epoch = text.partition(":")
        if not sep or not epoch or not seq.isdigit():
            raise ValueError(f"a position is SEQ:EPOCH, not {text!r}")
        return cls(int(seq), epoch)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Position:
        """The ``position`` object of a ``subscribed`` or ``snapshot`` frame."""
        return cls(int(value["seq"]), str(value["epoch"]))


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages were lost: the server could not resume the subscription from where it was.

    Delivery goes on after ``resume_seq`` in ``new_epoch``. ``missed`` is how many
    seqs of the stream were skipped when the history is the same one (some of them
    may not have passed the filter); ``None`` when it cannot be known, as when the
    epoch changed (the server lost its history, for example in a restart).
    """

    stream: str
    last_seq: int | None  # the last seq delivered before the gap (None: none yet)
    old_epoch: str | None
    new_epoch: str
    resume_seq: int  # the next message delivered has a seq above this one
    missed: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "gap",
            "stream": self.stream,
            "lastSeq": self.last_seq,
            "oldEpoch": self.old_epoch,
            "newEpoch": self.new_epoch,
            "resumeSeq": self.resume_seq,
            "missed": self.missed,
        }


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[T]):
    """The current set (validators, or connected peers) at ``position``; changes follow."""

    stream: str
    position: Position
    items: list[T]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "stream": self.stream,
            "position": {"seq": self.position.seq, "epoch": self.position.epoch},
            "items": self.items,
        }


@dataclass(frozen=True, slots=True)
class Connected:
    """The connection is open (``attempt`` 0 is the first one; more means a reconnect)."""

    url: str
    attempt: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "connected", "url": self.url, "attempt": self.attempt}


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended or could not open.

    ``code`` is the close code (1006 when the connection dropped without one) or
    the HTTP status of a refused upgrade; ``retry_in`` the seconds before the next
    attempt, ``None`` when the SDK stops.
    """

    code: int
    reason: str
    retry_in: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "disconnected",
            "code": self.code,
            "reason": self.reason,
            "retryIn": None if self.retry_in is None else round(self.retry_in, 3),
        }


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """A new token was taken by the open connection; ``expires_at`` is its exp (Unix s)."""

    expires_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {"type": "refreshed", "expiresAt": self.expires_at}


ConnectionEvent = Connected | Disconnected | TokenRefreshed
