"""The wire contract: what a client may rely on, in one place.

Endpoint paths (the streams, the multiplexed ``/ws``, GraphQL), subprotocols,
the commands of the multiplexed ``/ws`` endpoint (with the JSON Schema that
validates them), stream positions
(``SEQ:EPOCH``) and the close codes. Everything else on the wire (message
schemas, filters) is derived from the streams (:mod:`aurigraph_stream.streams`).
Docs and the AsyncAPI document read these values; nothing repeats them.

Close codes follow RFC 6455 section 7.4 for 1000-1015. Application codes use
4000-4999 and split like centrifuge's: 4000-4499 means "reconnect, possibly
later", 4500-4999 means "do not reconnect with the same request". The lower
range has two exceptions: 4003 (forbidden), whose number says 403, since
reconnecting with the same token would only be refused again; and 4400-4499,
sent on ``/graphql`` only, the graphql-transport-ws protocol's own codes with
that protocol's meanings: the client's mistakes, which a reconnect would
repeat (all but 4408, its initialisation timeout).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BEARER_PROTOCOL",
    "COMMAND_OPS",
    "COMMAND_SCHEMA",
    "GRAPHQL_ENDPOINT",
    "GRAPHQL_LEGACY_PROTOCOL",
    "GRAPHQL_PATH",
    "GRAPHQL_PROTOCOL",
    "GRAPHQL_SCHEMA_PATH",
    "LATEST_WINS_STREAMS",
    "MAX_EPOCH_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_REPLAY",
    "MAX_SEQ",
    "MUX_ENDPOINT",
    "MUX_PATH",
    "SINCE_PATTERN",
    "STREAM_PATH_PREFIX",
    "SUBPROTOCOL_PREFIX",
    "CloseCode",
    "Position",
    "stream_path",
]

# -- endpoints -----------------------------------------------------------------
STREAM_PATH_PREFIX = "/ws/"  # /ws/{stream}: one stream, chosen by the path
MUX_PATH = "/ws"  # the multiplexed endpoint: streams chosen by commands
MUX_ENDPOINT = "ws"  # its stats and metrics label
GRAPHQL_PATH = "/graphql"  # GraphQL: over HTTP (POST, GET) and over WebSocket
GRAPHQL_ENDPOINT = "graphql"  # its stats and metrics label
GRAPHQL_SCHEMA_PATH = "/graphql/schema.graphql"  # the schema, as SDL


def stream_path(stream: str) -> str:
    """The endpoint path of one stream: ``/ws/metrics``."""
    return STREAM_PATH_PREFIX + stream


# -- subprotocols ----------------------------------------------------------------
SUBPROTOCOL_PREFIX = "aurigraph.v11."  # + a format name: aurigraph.v11.json, ...
# Not a format: the carrier of an access token for browsers (access/tokens.py).
BEARER_PROTOCOL = SUBPROTOCOL_PREFIX + "bearer"
# GraphQL over WebSocket: the graphql-ws library's protocol, the one /graphql speaks.
GRAPHQL_PROTOCOL = "graphql-transport-ws"
# subscriptions-transport-ws, the legacy protocol of the same name: refused before the upgrade.
GRAPHQL_LEGACY_PROTOCOL = "graphql-ws"


# -- delivery ------------------------------------------------------------------
#: Streams whose messages are states, each one replacing the last. Under load the
#: server sends a subscriber the newest state and skips those it replaced, so on
#: these streams ``seq`` may grow by more than one between two messages without
#: anything being lost: a client must not report such a jump as a gap (a gap is
#: only what a ``subscribed`` reply with ``recovered: false`` announces).
LATEST_WINS_STREAMS = ("metrics", "consensus")


# -- positions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream is: the last ``seq`` and the epoch of the history holding it.

    A different epoch means the history was lost (for example the in-memory
    broker restarted), so a client cannot resume from an older position. On
    the wire it is ``{"seq": 41, "epoch": "9f3a6c21"}``, or ``41:9f3a6c21`` in
    a query string (:meth:`text`).
    """

    seq: int
    epoch: str

    def text(self) -> str:
        return f"{self.seq}:{self.epoch}"


# -- /ws commands ----------------------------------------------------------------
MAX_ID_LENGTH = 64
MAX_REPLAY = 100_000
MAX_EPOCH_LENGTH = 64
COMMAND_OPS = ("subscribe", "unsubscribe", "refresh")

_ID: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "description": "The client's name for the subscription, unique on the connection.",
}
# A seq has at most 19 digits (it fits 63 bits); more is refused before int() reads it.
SINCE_PATTERN = r"^[0-9]{1,19}(:[^:]{1,64})?$"
MAX_SEQ = 2**63 - 1

#: Every command a client may send on ``/ws``; ``$defs`` holds one schema per
#: ``op`` (the AsyncAPI document lists them as messages). ws/commands.py
#: compiles it once and answers a command that fails it with an error reply.
COMMAND_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Command",
    "type": "object",
    "required": ["op"],
    "properties": {"op": {"enum": list(COMMAND_OPS)}},
    "allOf": [
        {
            "if": {"required": ["op"], "properties": {"op": {"const": op}}},
            "then": {"$ref": f"#/$defs/{op}"},
        }
        for op in COMMAND_OPS
    ],
    "$defs": {
        "subscribe": {
            "title": "SubscribeCommand",
            "description": "Start a subscription; answered by `subscribed` or `error`.",
            "type": "object",
            "required": ["op", "id", "stream"],
            "additionalProperties": False,
            "properties": {
                "op": {"const": "subscribe"},
                "id": _ID,
                "stream": {
                    "type": "string",
                    "description": "One of the stream names (GET /api/v11/streams).",
                },
                "filter": {
                    "type": "object",
                    "description": "The filters of /ws/{stream}, as JSON values.",
                },
                "replay": {
                    "description": "Send the last N messages that pass the filter, then live.",
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": MAX_REPLAY},
                        {"type": "string", "pattern": "^[0-9]{1,6}$"},
                    ],
                },
                "since": {
                    "description": "Resume after this position: SEQ, SEQ:EPOCH or "
                    "{seq, epoch}; the subscribed reply says recovered true or false.",
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                        {"type": "string", "pattern": SINCE_PATTERN},
                        {
                            "type": "object",
                            "required": ["seq"],
                            "additionalProperties": False,
                            "properties": {
                                "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                                "epoch": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": MAX_EPOCH_LENGTH,
                                },
                            },
                        },
                    ],
                },
                "snapshot": {
                    "description": "validators, network: the current set first.",
                    "anyOf": [
                        {"type": "boolean"},
                        {
                            "type": "string",
                            "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$",
                        },
                    ],
                },
            },
        },
        "unsubscribe": {
            "title": "UnsubscribeCommand",
            "description": "End a subscription; answered by `unsubscribed` or `error`.",
            "type": "object",
            "required": ["op", "id"],
            "additionalProperties": False,
            "properties": {"op": {"const": "unsubscribe"}, "id": _ID},
        },
        "refresh": {
            "title": "RefreshCommand",
            "description": "Hand the connection a new access token for the same subject "
            "(also accepted on /ws/{stream}); answered by `refreshed`, or close 4001 when "
            "the token is not valid.",
            "type": "object",
            "required": ["op", "token"],
            "additionalProperties": False,
            "properties": {
                "op": {"const": "refresh"},
                "token": {
                    "type": "string",
                    "minLength": 1,
                    "description": "A JWT, checked like a handshake token; it must carry "
                    "the same sub as the connection's token.",
                },
                "id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID_LENGTH,
                    "description": "Echoed in the refreshed reply.",
                },
            },
        },
    },
}


# -- close codes -----------------------------------------------------------------
class CloseCode(enum.IntEnum):
    """Every close code the server sends, with the reason text it sends.

    And two it never sends, 1003 and 1008: the SDKs' close-code tables are generated
    from this one, and a client may still get them from a proxy in between.
    """

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect to another instance
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003  # never sent by this server (see above)
    INVALID_PAYLOAD = 1007  # text frame that is not UTF-8
    POLICY_VIOLATION = 1008  # never sent by this server (see above)
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # never carries details: they may be sensitive
    TRY_AGAIN_LATER = 1013  # the broker could not serve the starting point now: reconnect later
    # 4000-4499: the client may reconnect (after a back-off).
    TOKEN_EXPIRED = 4001  # the access token's exp (+ grace) passed: reconnect with a new one
    FORBIDDEN = 4003  # a refreshed token no longer grants the stream: not without a new token
    SLOW_CONSUMER = 4008  # outbound buffer over its cap; reconnect and resume
    KEEPALIVE_TIMEOUT = 4009  # a ping went unanswered
    TOO_MANY_MESSAGES = 4029  # inbound messages over the per-connection rate (like HTTP 429)
    # 4400-4499 on /graphql: the graphql-transport-ws protocol's own codes, with its meanings.
    GRAPHQL_BAD_REQUEST = 4400  # a message the protocol does not define (the reason says why)
    GRAPHQL_UNAUTHORIZED = 4401  # subscribe before connection_ack
    GRAPHQL_FORBIDDEN = 4403  # connection_init refused: its access token is not valid
    GRAPHQL_INIT_TIMEOUT = 4408  # no connection_init within graphql_init_timeout
    GRAPHQL_SUBSCRIBER_EXISTS = 4409  # subscribe with the id of a running operation
    GRAPHQL_TOO_MANY_INITS = 4429  # a second connection_init

    @property
    def reason(self) -> str:
        return _REASONS[self]

    @property
    def reconnect(self) -> bool:
        """Whether a client should reconnect after this code (and resume with ``since``).

        4003 needs a token that grants the stream first. The graphql-transport-ws
        codes are the client's mistakes, which a reconnect would repeat, except the
        initialisation timeout (as the graphql-ws client reads them).
        """
        if self is CloseCode.FORBIDDEN or self in _GRAPHQL_TERMINAL:
            return False
        return (
            self in (CloseCode.GOING_AWAY, CloseCode.INTERNAL_ERROR, CloseCode.TRY_AGAIN_LATER)
            or 4000 <= self < 4500
        )

    @property
    def new_token(self) -> bool:
        """Whether connecting again needs a new access token (the old one is spent)."""
        return self in (CloseCode.TOKEN_EXPIRED, CloseCode.FORBIDDEN)


_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.UNSUPPORTED_DATA: "unsupported data",
    CloseCode.INVALID_PAYLOAD: "invalid UTF-8 in text message",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.SLOW_CONSUMER: "slow consumer",
    CloseCode.KEEPALIVE_TIMEOUT: "keepalive ping timeout",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.FORBIDDEN: "the token no longer grants this stream",
    CloseCode.TOO_MANY_MESSAGES: "too many messages",
    CloseCode.GRAPHQL_BAD_REQUEST: "invalid message",
    CloseCode.GRAPHQL_UNAUTHORIZED: "unauthorized",
    CloseCode.GRAPHQL_FORBIDDEN: "forbidden",
    CloseCode.GRAPHQL_INIT_TIMEOUT: "connection initialisation timeout",
    CloseCode.GRAPHQL_SUBSCRIBER_EXISTS: "subscriber already exists",
    CloseCode.GRAPHQL_TOO_MANY_INITS: "too many initialisation requests",
}
_GRAPHQL_TERMINAL = frozenset(
    (
        CloseCode.GRAPHQL_BAD_REQUEST,
        CloseCode.GRAPHQL_UNAUTHORIZED,
        CloseCode.GRAPHQL_FORBIDDEN,
        CloseCode.GRAPHQL_SUBSCRIBER_EXISTS,
        CloseCode.GRAPHQL_TOO_MANY_INITS,
    )
)
