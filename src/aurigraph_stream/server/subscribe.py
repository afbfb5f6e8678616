"""Starting a subscription, and the commands of the multiplexed ``/ws`` endpoint.

:func:`attach` puts a connection on a stream. When the client asked for a
starting point (replay, since, snapshot) or is on ``/ws``, it first reads the
broker's history (or the snapshot state), queues the ``subscribed`` reply and
the replayed messages, and joins the hub, all in one synchronous step: with
the in-process broker no event can be published in between, so the last
replayed message and the first live one are consecutive. The subscription
also joins with ``after=position.seq``, the hub's seq check, so that the seam
holds even for a broker whose history and delivery are not in step.

:func:`handle_command` runs one text message received on ``/ws``::

    {"op": "subscribe", "id": "tx", "stream": "transactions", "filter": {...},
     "replay": 10 | "since": "41:9f3a..." | {"seq": 41, "epoch": "9f3a..."},
     "snapshot": true}
    {"op": "unsubscribe", "id": "tx"}

Every command gets exactly one reply (``subscribed``, ``unsubscribed`` or
``error``); an error leaves the connection and its other subscriptions as
they were.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.errors import SubscriptionError
from aurigraph_stream.event import Event
from aurigraph_stream.hub import Subscriber, Subscription, build_frame
from aurigraph_stream.subscription import SubscribeRequest, from_command

if TYPE_CHECKING:
    from aurigraph_stream.server.runtime import Runtime

__all__ = ["MUX_ENDPOINT", "MUX_PATH", "attach", "handle_command", "reply"]

logger = logging.getLogger("aurigraph_stream.subscribe")

MUX_PATH = "/ws"
MUX_ENDPOINT = "ws"  # the stats label of the multiplexed endpoint
MAX_ID_LENGTH = 64


def control_frame(runtime: Runtime, codec: str, bits: int, frame: Mapping[str, Any]) -> bytes:
    """A control reply, encoded, framed (and compressed) for one connection."""
    c = CODECS[codec]
    return build_frame(c.opcode, c.control(frame), runtime.settings.compression_level, bits)


def reply(
    runtime: Runtime, sink: Subscriber, codec: str, bits: int, frame: Mapping[str, Any]
) -> None:
    """Queue one control reply behind what ``sink`` already has pending."""
    runtime.hub.enqueue(sink, [control_frame(runtime, codec, bits, frame)])


def _message_frame(runtime: Runtime, sub: Subscription, event: Event) -> bytes:
    c = CODECS[sub.codec]
    body = sub.wrap(c.message(event.stream, sub.filter.project(event.data)))
    return build_frame(c.opcode, body, runtime.settings.compression_level, sub.bits)


def attach(
    runtime: Runtime,
    sink: Subscriber,
    request: SubscribeRequest,
    codec: str,
    bits: int,
    sub_id: str | None = None,
) -> Subscription:
    """Subscribe ``sink`` as ``request`` asks, with its starting frames queued first.

    Raises:
        SubscriptionError: ``history_unavailable`` when a starting point is asked
            of a broker that cannot read its history synchronously.
    """
    hub = runtime.hub
    stream, flt = request.stream, request.filter
    if not request.wants_control and sub_id is None:
        return hub.subscribe(sink, stream, (codec, bits), flt)
    # Only what is needed is copied: a position, or the events after ``since``,
    # or every event kept (to pick the last N that pass the filter).
    if request.since is not None:
        since: int | None = request.since
    elif request.replay:
        since = None
    else:
        since = sys.maxsize
    read = runtime.broker.history_now(stream, since)
    if read is None:
        raise SubscriptionError(
            "history_unavailable", "this broker cannot serve replay, since or snapshot"
        )
    position = read.position
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

    sub = hub.subscribe(sink, stream, (codec, bits), flt, sub_id=sub_id, after=position.seq)
    head: dict[str, Any] = {"type": "subscribed"}
    if sub_id is not None:
        head["id"] = sub_id
    head["stream"] = stream
    where = {"seq": position.seq, "epoch": position.epoch}
    head |= {"position": where, "recovered": recovered, "replayed": len(replayed)}
    frames = [control_frame(runtime, codec, bits, head)]
    if snapshot:
        items = [flt.project(m) for m in runtime.snapshots.items(stream) if flt.matches(m)]
        body: dict[str, Any] = {"type": "snapshot"}
        if sub_id is not None:
            body["id"] = sub_id
        body |= {"stream": stream, "position": where, "items": items}
        frames.append(control_frame(runtime, codec, bits, body))
    frames += [_message_frame(runtime, sub, event) for event in replayed]
    hub.enqueue(sink, frames)
    return sub


def _error(op: Any, sub_id: Any, error: str, detail: str) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error"}
    if isinstance(sub_id, str):
        frame["id"] = sub_id
    if isinstance(op, str):
        frame["op"] = op
    return frame | {"error": error, "detail": detail}


def handle_command(
    runtime: Runtime,
    sink: Subscriber,
    subs: dict[str, Subscription],
    can_read: Callable[[str], bool],
    codec: str,
    bits: int,
    text: str | bytes,
) -> None:
    """Run one command received on ``/ws`` and queue its reply.

    Args:
        subs: the connection's subscriptions by id (updated here).
        can_read: whether the client may read a stream.
        text: a text message, or a binary one (accepted when it is UTF-8 JSON).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            detail = "commands are JSON in UTF-8 (text messages, or binary ones)"
            reply(runtime, sink, codec, bits, _error(None, None, "invalid_command", detail))
            return
    try:
        command = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        reply(runtime, sink, codec, bits, _error(None, None, "invalid_json", f"not JSON: {exc}"))
        return
    if not isinstance(command, dict):
        detail = 'a command is a JSON object: {"op": "subscribe" | "unsubscribe", ...}'
        reply(runtime, sink, codec, bits, _error(None, None, "invalid_command", detail))
        return
    op, sub_id = command.get("op"), command.get("id")
    try:
        if op not in ("subscribe", "unsubscribe"):
            raise SubscriptionError(
                "unknown_op", f"op must be subscribe or unsubscribe, not {op!r}"
            )
        if not isinstance(sub_id, str) or not 1 <= len(sub_id) <= MAX_ID_LENGTH:
            raise SubscriptionError(
                "invalid_command", f"id must be a string of 1 to {MAX_ID_LENGTH} characters"
            )
        if op == "unsubscribe":
            if set(command) - {"op", "id"}:
                raise SubscriptionError("invalid_command", "unsubscribe takes only op and id")
            sub = subs.pop(sub_id, None)
            if sub is None:
                raise SubscriptionError("unknown_id", f"no subscription with id {sub_id!r}")
            runtime.hub.remove(sub)
            reply(runtime, sink, codec, bits, {"type": "unsubscribed", "id": sub_id})
            return
        if sub_id in subs:
            raise SubscriptionError("duplicate_id", f"subscription id {sub_id!r} is in use")
        limit = runtime.settings.max_subscriptions
        if len(subs) >= limit:
            raise SubscriptionError(
                "too_many_subscriptions", f"a connection holds at most {limit} subscriptions"
            )
        request = from_command(command)
        if not can_read(request.stream):
            raise SubscriptionError(
                "forbidden", f"the token does not grant the stream {request.stream!r}"
            )
        subs[sub_id] = attach(runtime, sink, request, codec, bits, sub_id)
    except SubscriptionError as exc:
        reply(runtime, sink, codec, bits, _error(op, sub_id, exc.error, exc.detail))
