"""What a client asks for: a stream, a filter, and where to start.

One request type serves both ways of subscribing: the query string of
``/ws/{stream}`` (:func:`from_query`) and a subscribe command on the
multiplexed ``/ws`` (:func:`from_command`). Starting points::

    (nothing)        live messages only; no control frame on /ws/{stream}
    replay=N         the last N messages that pass the filter, then live
    since=SEQ:EPOCH  every message after SEQ, then live; recovered=false if the
                     epoch changed or some of them are no longer kept
    snapshot=true    validators, network: the current set, then changes
                     (with since: the fallback when the resume fails)

Each of them makes the server send a ``subscribed`` frame first, saying
``recovered`` true or false: a client is never left to guess.
:func:`starting_point` decides, from one read of the broker's history, what a
subscription starts with; the WebSocket endpoints and GraphQL share it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurigraph_stream.broker.base import HistoryRead
from aurigraph_stream.codecs import CODECS
from aurigraph_stream.contract import (
    MAX_EPOCH_LENGTH,
    MAX_REPLAY,
    MAX_SEQ,
    SINCE_PATTERN,
    Position,
)
from aurigraph_stream.errors import SubscriptionError, shown
from aurigraph_stream.event import Event
from aurigraph_stream.filters import MAX_VALUES, OPTIONS, Filter, everything, parse_filter
from aurigraph_stream.streams import REGISTRY

__all__ = [
    "CONTROL_PARAMS",
    "MAX_REPLAY",
    "SNAPSHOT_STREAMS",
    "Start",
    "SubscribeRequest",
    "from_command",
    "from_query",
    "history_since",
    "parse_since",
    "starting_point",
]

SNAPSHOT_STREAMS = ("validators", "network")
# Query parameters that are not filters: ours, and the access token (access/tokens.py).
CONTROL_PARAMS = frozenset(("replay", "since", "epoch", "snapshot", "format", "token"))
_SEQ_DIGITS = len(str(MAX_SEQ))
_REPLAY_DIGITS = len(str(MAX_REPLAY))


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    stream: str
    filter: Filter
    replay: int | None = None
    since: int | None = None
    epoch: str | None = None  # with since: the epoch the client's seq belongs to
    snapshot: bool = False

    @property
    def wants_control(self) -> bool:
        """Whether the subscriber asked for a starting point, hence for control frames."""
        return self.replay is not None or self.since is not None or self.snapshot


def parse_since(raw: Any, epoch: Any = None) -> tuple[int, str | None]:
    """``since`` as ``SEQ``, ``"SEQ:EPOCH"`` or ``{"seq": SEQ, "epoch": EPOCH}``: (seq, epoch).

    Raises:
        SubscriptionError: ``invalid_position``.
    """
    if isinstance(raw, Mapping):
        raw, epoch = raw.get("seq"), raw.get("epoch", epoch)
    if isinstance(raw, str):
        text, sep, tail = raw.partition(":")
        if sep:
            if epoch is not None and epoch != tail:
                raise SubscriptionError(
                    "invalid_position", "since names an epoch and epoch another"
                )
            epoch = tail
        # A seq has at most 19 digits (63 bits): more is refused before int() reads it.
        if not (text.isascii() and text.isdigit() and len(text) <= _SEQ_DIGITS):
            raise SubscriptionError(
                "invalid_position", f"since must be SEQ or SEQ:EPOCH, got {shown(raw)}"
            )
        seq = int(text)
    elif isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        seq = raw
    else:
        raise SubscriptionError(
            "invalid_position", f"since must be a non-negative seq, got {shown(raw)}"
        )
    if seq > MAX_SEQ:
        raise SubscriptionError("invalid_position", f"since must be at most {MAX_SEQ}")
    if epoch is not None and (
        not isinstance(epoch, str) or not epoch or len(epoch) > MAX_EPOCH_LENGTH
    ):
        raise SubscriptionError(
            "invalid_position",
            f"epoch must be a string of 1 to {MAX_EPOCH_LENGTH} characters, got {shown(epoch)}",
        )
    return seq, epoch


def _parse_replay(raw: Any) -> int:
    # As the command schema: at most 6 digits are read (int() refuses 4,300 and more).
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _REPLAY_DIGITS:
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_REPLAY:
        raise SubscriptionError(
            "invalid_replay", f"replay must be an integer from 0 to {MAX_REPLAY}"
        )
    return raw


def _parse_snapshot(raw: Any, stream: str) -> bool:
    if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
        raw = raw.lower() in ("true", "1")
    if not isinstance(raw, bool):
        raise SubscriptionError("invalid_snapshot", "snapshot must be true or false")
    if raw and stream not in SNAPSHOT_STREAMS:
        raise SubscriptionError(
            "invalid_snapshot",
            f"stream {stream} has no snapshot (streams with one: {', '.join(SNAPSHOT_STREAMS)})",
        )
    return raw


def _build(
    stream: str, flt: Filter, replay: Any, since: Any, epoch: Any, snapshot: Any
) -> SubscribeRequest:
    replay_n = None if replay is None else _parse_replay(replay)
    since_seq: int | None = None
    since_epoch: str | None = None
    if since is not None:
        since_seq, since_epoch = parse_since(since, epoch)
    elif epoch is not None:
        raise SubscriptionError("invalid_position", "epoch needs since")
    wants_snapshot = False if snapshot is None else _parse_snapshot(snapshot, stream)
    if replay_n is not None and since_seq is not None:
        raise SubscriptionError("invalid_position", "ask for replay or since, not both")
    if replay_n is not None and wants_snapshot:
        raise SubscriptionError("invalid_position", "ask for replay or snapshot, not both")
    return SubscribeRequest(stream, flt, replay_n, since_seq, since_epoch, wants_snapshot)


@dataclass(frozen=True, slots=True)
class Start:
    """What a subscription starts with, decided from one read of the history.

    ``position`` is where live delivery takes over (the last seq the start
    covers); ``replayed`` the events to send before live ones; ``snapshot``
    whether to send the snapshot (asked for, and not made moot by a resume).
    """

    position: Position
    recovered: bool
    replayed: list[Event]
    snapshot: bool


def history_since(request: SubscribeRequest) -> int | None:
    """The ``since`` to read the history with for ``request``.

    Only what is needed is copied: the events after ``since``, or every event
    kept (to pick the last N that pass the filter), or none (a position only).
    """
    if request.since is not None:
        return request.since
    if request.replay:
        return None
    return sys.maxsize


def starting_point(request: SubscribeRequest, read: HistoryRead) -> Start:
    """The start of ``request``, given ``read = history_now(stream, history_since(request))``.

    ``recovered`` says whether the client gets everything it asked for: with
    ``since``, false when the epoch changed, the seq is ahead of the stream, or
    events after it are no longer kept (nothing is replayed then, and the
    snapshot, if asked for, is the fallback); with ``replay=N``, true when N
    were replayed or the history reaches back to the stream's first message.
    """
    position = read.position
    flt = request.filter
    replayed: list[Event] = []
    recovered = True
    snapshot = request.snapshot
    if request.since is not None:
        if (
            (request.epoch is not None and request.epoch != position.epoch)
            or read.events is None
            or request.since > position.seq
        ):
            recovered = False
        else:
            replayed = [e for e in read.events if flt.matches(e.data)]
            snapshot = False  # resumed: the snapshot was only the fallback
    elif request.replay is not None:
        matching = [e for e in read.events or () if flt.matches(e.data)]
        replayed = matching[-request.replay :] if request.replay else []
        recovered = len(replayed) == request.replay or read.first_seq <= 1
    return Start(position, recovered, replayed, snapshot)


def from_query(stream: str, query: Mapping[str, str]) -> SubscribeRequest:
    """The request in the query string of ``/ws/{stream}``; other parameters are filters.

    Raises:
        SubscriptionError: a bad filter, replay, since or snapshot parameter.
    """
    filters = {k: v for k, v in query.items() if k not in CONTROL_PARAMS}
    flt = parse_filter(stream, filters, strings=True) if filters else everything(stream)
    return _build(
        stream,
        flt,
        query.get("replay"),
        query.get("since"),
        query.get("epoch"),
        query.get("snapshot"),
    )


def from_command(command: Mapping[str, Any]) -> SubscribeRequest:
    """The request in a subscribe command (``{"op": "subscribe", ...}``) that passed
    :data:`~aurigraph_stream.contract.COMMAND_SCHEMA`: no unknown key, a string
    ``stream``, an object ``filter``.

    Raises:
        SubscriptionError: ``unknown_stream`` or a parameter error.
    """
    stream = command["stream"]
    if stream not in REGISTRY:
        raise SubscriptionError(
            "unknown_stream", f"stream must be one of {', '.join(REGISTRY)}, not {shown(stream)}"
        )
    raw_filter = command.get("filter")
    flt = parse_filter(stream, raw_filter) if raw_filter else everything(stream)
    return _build(
        stream, flt, command.get("replay"), command.get("since"), None, command.get("snapshot")
    )


def query_parameters() -> dict[str, dict[str, dict[str, Any]]]:
    """JSON Schemas of the query parameters of ``/ws/{stream}``, ``{stream or "*": {name: ...}}``.

    For documents (AsyncAPI): every value is a string in a query, so lists are
    described as comma-separated strings.
    """
    common: dict[str, dict[str, Any]] = {
        "replay": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_REPLAY,
            "description": "Send the last N messages that pass the filter, then live ones.",
        },
        "since": {
            "type": "string",
            "pattern": SINCE_PATTERN,
            "description": "SEQ or SEQ:EPOCH: resume right after SEQ; the first frame says "
            "recovered true or false.",
        },
        "epoch": {"type": "string", "description": "The epoch of since, when not in since."},
        "format": {"type": "string", "enum": list(CODECS), "default": "json"},
    }
    out: dict[str, dict[str, dict[str, Any]]] = {"*": common}
    for stream, options in OPTIONS.items():
        params: dict[str, dict[str, Any]] = {}
        for name, option in options.items():
            if option.kind in ("list", "fields"):
                what = f"message field {option.prop!r}" if option.prop else "field names"
                params[name] = {
                    "type": "string",
                    "description": f"Comma-separated values (at most {MAX_VALUES}) of the {what}.",
                }
            elif option.kind == "wei":
                wei = REGISTRY[stream].message_schema["properties"][option.prop]
                params[name] = {"type": "string", "pattern": wei["pattern"]}
            elif option.kind == "bool":
                params[name] = {"type": "string", "enum": ["true", "false"]}
            elif option.kind == "int":
                params[name] = {
                    "type": "integer",
                    "minimum": option.minimum,
                    "maximum": option.maximum,
                }
            else:
                params[name] = {"type": "string", "enum": list(option.choices)}
        if stream in SNAPSHOT_STREAMS:
            params["snapshot"] = {"type": "string", "enum": ["true", "false"]}
        out[stream] = params
    return out
