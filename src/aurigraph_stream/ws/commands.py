"""The commands of the multiplexed ``/ws`` endpoint.

A client sends JSON commands and gets one reply each::

    {"op": "subscribe", "id": "tx", "stream": "transactions", "filter": {...},
     "replay": 10 | "since": "41:9f3a..." | {"seq": 41, "epoch": "9f3a..."},
     "snapshot": true}                                  -> subscribed | error
    {"op": "unsubscribe", "id": "tx"}                   -> unsubscribed | error
    {"op": "refresh", "token": "<JWT>", "id": "r1"}     -> refreshed | close 4001

A refresh is the connection's business, not the subscriptions' (the token
moves its expiry, and may end subscriptions it no longer grants): the Mux
checks its shape and hands it to the ``refresh`` callback it was given.

Every command is first checked against the contract's one JSON Schema
(:data:`~aurigraph_stream.contract.COMMAND_SCHEMA`, compiled once here); a
command that fails it gets an ``error`` reply naming the first problem, with
the slug of the key at fault. An error leaves the connection and its other
subscriptions as they were.

A connection's subscriptions share a memory budget (``max_connection_memory``):
each is charged what it holds in the hub (:func:`~aurigraph_stream.hub.subscription_bytes`:
its filter's values, mostly), and a subscribe that would go over it gets
``memory_budget_exceeded``. Its replay is not charged: it is sent paced against
the connection's buffer bound (:mod:`.subscribe`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs
import orjson

from aurigraph_stream.contract import COMMAND_OPS, COMMAND_SCHEMA, MAX_ID_LENGTH, MAX_REPLAY
from aurigraph_stream.errors import SubscriptionError, shown
from aurigraph_stream.hub import Subscriber, Subscription, subscription_bytes
from aurigraph_stream.node import Node
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream.subscription import from_command
from aurigraph_stream.ws.subscribe import attach, reply

__all__ = ["Mux", "check_command", "parse_stream_command", "refreshed_frame"]

_VALIDATOR = jsonschema_rs.validator_for(COMMAND_SCHEMA)
_KEYS = {op: frozenset(COMMAND_SCHEMA["$defs"][op]["properties"]) for op in COMMAND_OPS}

# The slug of a schema failure, by the command key it is about; earlier keys win.
_SLUGS = {
    "op": "unknown_op",
    "id": "invalid_command",
    "": "invalid_command",  # the command as a whole: its type, a missing or unknown key
    "stream": "unknown_stream",
    "filter": "invalid_filter",
    "replay": "invalid_replay",
    "since": "invalid_position",
    "snapshot": "invalid_snapshot",
    "token": "invalid_command",
}
_ORDER = {key: rank for rank, key in enumerate(_SLUGS)}


def _detail(command: Any, key: str) -> str:
    """The sentence for a schema failure about ``key`` (``""``: the command itself)."""
    if key == "op":
        ops = ", ".join(COMMAND_OPS[:-1]) + " or " + COMMAND_OPS[-1]
        return f"op must be {ops}, not {shown(command.get('op'))}"
    if key == "id":
        return f"id must be a string of 1 to {MAX_ID_LENGTH} characters"
    if key == "stream":
        return f"stream must be one of {', '.join(REGISTRY)}, not {shown(command.get('stream'))}"
    if key == "filter":
        return "filter must be an object"
    if key == "replay":
        return f"replay must be an integer from 0 to {MAX_REPLAY}"
    if key == "since":
        return f"since must be SEQ, SEQ:EPOCH or {{seq, epoch}}, got {shown(command['since'])}"
    if key == "snapshot":
        return "snapshot must be true or false"
    if key == "token":
        return "refresh needs the new access token as a non-empty string"
    if not isinstance(command, dict):
        return 'a command is a JSON object: {"op": "subscribe" | "unsubscribe" | "refresh", ...}'
    op = command["op"]
    unknown = sorted(set(command) - _KEYS[op])
    if unknown:
        if op == "unsubscribe":
            return "unsubscribe takes only op and id"
        if op == "refresh":
            return "refresh takes only op, token and id"
        return f"unknown key {shown(unknown[0])} in a {op} command"
    return f"id must be a string of 1 to {MAX_ID_LENGTH} characters"  # the one left to miss


def check_command(command: Any) -> None:
    """Check a decoded command against :data:`COMMAND_SCHEMA`.

    Raises:
        SubscriptionError: with the slug and sentence of the first problem.
    """
    if _VALIDATOR.is_valid(command):
        return
    keys = []
    for error in _VALIDATOR.iter_errors(command):
        path = error.instance_path
        key = str(path[0]) if path else ""
        if key == "" and isinstance(command, dict):
            missing = _missing_key(error.message)
            if missing in ("op", "id", "stream", "token"):
                key = missing
        keys.append(key if key in _ORDER else "")
    key = min(keys, key=_ORDER.__getitem__)
    raise SubscriptionError(_SLUGS[key], _detail(command, key))


def _missing_key(message: str) -> str | None:
    # jsonschema-rs words it '"stream" is a required property'.
    if message.endswith(" is a required property") and message.startswith('"'):
        return message[1:].partition('"')[0]
    return None


def parse_stream_command(data: str | bytes) -> tuple[str, str | None] | None:
    """The token and id of a refresh command sent on ``/ws/{stream}``; None for anything else.

    Refresh is the one command a stream endpoint takes: any other data message
    (not JSON, not an object, another op) means nothing there and is ignored.

    Raises:
        SubscriptionError: an object with ``op: refresh`` that is not a valid
            refresh command (no token string, an unknown key).
    """
    try:
        command = orjson.loads(data)
    except orjson.JSONDecodeError:  # also bytes that are not UTF-8
        return None
    if not isinstance(command, dict) or command.get("op") != "refresh":
        return None
    check_command(command)
    return command["token"], command.get("id")


def refreshed_frame(expires_at: float | None, ref: str | None = None) -> dict[str, Any]:
    """``{"type": "refreshed", "expiresAt": ...}``: the new exp in Unix seconds, or null.

    ``ref`` is the refresh command's ``id``, echoed when it had one.
    """
    exp: float | int | None = expires_at
    if expires_at is not None and expires_at.is_integer():
        exp = int(expires_at)  # exp claims are whole seconds: no "1761385200.0"
    frame: dict[str, Any] = {"type": "refreshed"}
    if ref is not None:
        frame["id"] = ref
    frame["expiresAt"] = exp
    return frame


def _error(op: Any, sub_id: Any, error: str, detail: str) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error"}
    if isinstance(sub_id, str):
        frame["id"] = sub_id
    if isinstance(op, str):
        frame["op"] = op
    return frame | {"error": error, "detail": detail}


class Mux:
    """The subscriptions of one ``/ws`` connection, and the commands that change them.

    Args:
        can_read: whether the client's token grants a stream.
        codec, bits: the connection's format and deflate window.
        limit: the most subscriptions it may hold (``max_subscriptions``).
        budget: the bytes its subscriptions may hold (``max_connection_memory``).
        refresh: runs a well-formed refresh command (its token and id); the
            connection checks the token, and calls :meth:`revoke` and
            :meth:`refreshed`, or closes.
    """

    __slots__ = (
        "bits",
        "budget",
        "can_read",
        "charged",
        "codec",
        "held",
        "limit",
        "node",
        "refresh",
        "sink",
        "subs",
    )

    def __init__(
        self,
        node: Node,
        sink: Subscriber,
        can_read: Callable[[str], bool],
        codec: str,
        bits: int,
        limit: int,
        *,
        budget: int,
        refresh: Callable[[str, str | None], None],
    ) -> None:
        self.node = node
        self.sink = sink
        self.can_read = can_read
        self.codec = codec
        self.bits = bits
        self.limit = limit
        self.budget = budget
        self.held = 0  # bytes charged to the budget
        self.refresh = refresh
        self.subs: dict[str, Subscription] = {}
        self.charged: dict[str, int] = {}  # what each subscription was charged, by id

    def _reply(self, frame: Mapping[str, Any]) -> None:
        reply(self.node, self.sink, self.codec, self.bits, frame)

    def stop(self) -> None:
        """Nothing to release: the subscriptions leave the hub with the connection."""

    def handle(self, text: str | bytes) -> None:
        """Run one message received on ``/ws`` and queue its reply.

        A binary message is accepted when it is UTF-8 JSON.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeDecodeError:
                detail = "commands are JSON in UTF-8 (text messages, or binary ones)"
                self._reply(_error(None, None, "invalid_command", detail))
                return
        try:
            command = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self._reply(_error(None, None, "invalid_json", f"not JSON: {exc}"))
            return
        op = command.get("op") if isinstance(command, dict) else None
        sub_id = command.get("id") if isinstance(command, dict) else None
        try:
            check_command(command)  # from here: a dict with a valid op and id
            if op == "unsubscribe":
                self._unsubscribe(command["id"])
            elif op == "refresh":
                self.refresh(command["token"], command.get("id"))
            else:
                self._subscribe(command)
        except SubscriptionError as exc:
            self._reply(_error(op, sub_id, exc.error, exc.detail))

    def revoke(self, can_read: Callable[[str], bool]) -> None:
        """Take a refreshed token's grants: end each subscription it no longer grants.

        Each one ended gets ``{"type": "unsubscribed", "id": ..., "reason": "forbidden"}``.
        """
        self.can_read = can_read
        for sub_id, sub in list(self.subs.items()):
            if not can_read(sub.stream):
                self._release(sub_id)
                self.node.hub.remove(sub)
                self._reply({"type": "unsubscribed", "id": sub_id, "reason": "forbidden"})

    def refreshed(self, expires_at: float | None, ref: str | None) -> None:
        """Answer a refresh that succeeded (see :func:`refreshed_frame`)."""
        self._reply(refreshed_frame(expires_at, ref))

    def _release(self, sub_id: str) -> Subscription | None:
        """Forget a subscription and give back what it was charged; None if there is none."""
        sub = self.subs.pop(sub_id, None)
        if sub is not None:
            self.held -= self.charged.pop(sub_id)
        return sub

    def _unsubscribe(self, sub_id: str) -> None:
        sub = self._release(sub_id)
        if sub is None:
            raise SubscriptionError("unknown_id", f"no subscription with id {shown(sub_id)}")
        self.node.hub.remove(sub)
        self._reply({"type": "unsubscribed", "id": sub_id})

    def _subscribe(self, command: dict[str, Any]) -> None:
        sub_id = command["id"]
        if sub_id in self.subs:
            raise SubscriptionError("duplicate_id", f"subscription id {shown(sub_id)} is in use")
        if len(self.subs) >= self.limit:
            raise SubscriptionError(
                "too_many_subscriptions", f"a connection holds at most {self.limit} subscriptions"
            )
        request = from_command(command)
        if not self.can_read(request.stream):
            raise SubscriptionError(
                "forbidden", f"the token does not grant the stream {request.stream!r}"
            )
        cost = subscription_bytes(request.filter)
        if self.held + cost > self.budget:
            raise SubscriptionError(
                "memory_budget_exceeded",
                f"this subscription would hold about {cost} bytes; the connection's "
                f"subscriptions may hold {self.budget}, and hold {self.held}",
            )
        self.subs[sub_id] = attach(
            self.node, self.sink, request, self.codec, self.bits, sub_id, self._failed(sub_id)
        )
        self.charged[sub_id] = cost
        self.held += cost

    def _failed(self, sub_id: str) -> Callable[[SubscriptionError], None]:
        """What a subscription whose history could not be read does: it ends, with an error."""

        def failed(exc: SubscriptionError) -> None:
            self._release(sub_id)
            self._reply(_error("subscribe", sub_id, exc.error, exc.detail))

        return failed
