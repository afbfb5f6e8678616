"""The AsyncAPI 3 document of the WebSocket side, built from the stream registry.

Everything in it comes from the objects the server runs on: channel
addresses and triggers from :data:`REGISTRY`, message payloads from the same
JSON Schemas the server validates with (verbatim), the commands of ``/ws``
from the contract's :data:`COMMAND_SCHEMA` (the one ``/ws`` checks commands
against), examples from the registry's examples, close codes from
:class:`CloseCode`. So the document cannot drift from the behaviour.

Query parameters are listed in :data:`QUERY_PARAMETERS`: one JSON Schema per
parameter, for every stream (key ``"*"``) or one stream (its name).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson

from aurigraph_stream import __version__
from aurigraph_stream.contract import (
    COMMAND_OPS,
    COMMAND_SCHEMA,
    GRAPHQL_PATH,
    GRAPHQL_PROTOCOL,
    GRAPHQL_SCHEMA_PATH,
    LATEST_WINS_STREAMS,
    MUX_ENDPOINT,
    MUX_PATH,
    CloseCode,
)
from aurigraph_stream.streams import REGISTRY, StreamSpec
from aurigraph_stream.subscription import query_parameters

__all__ = ["CLOSE_CODES", "QUERY_PARAMETERS", "build_asyncapi", "close_codes"]

Schema = dict[str, Any]

#: Query parameters of the stream endpoints, ``{stream or "*": {name: schema}}``.
QUERY_PARAMETERS: dict[str, dict[str, Schema]] = query_parameters()  # docs/protocol.md


def close_codes() -> list[dict[str, Any]]:
    """Every close code the server sends: its reason, whether to reconnect, with a new token."""
    return [
        {
            "code": int(code),
            "name": code.name,
            "reason": code.reason,
            "reconnect": code.reconnect,
            "newToken": code.new_token,
        }
        for code in CloseCode
    ]


CLOSE_CODES = close_codes()


def _query_schema(name: str) -> Schema:
    params = {**QUERY_PARAMETERS.get("*", {}), **QUERY_PARAMETERS.get(name, {})}
    return {
        "type": "object",
        "description": "Query string of the upgrade request; an unknown or bad parameter is "
        "refused with HTTP 400."
        if params
        else "This endpoint takes no query parameters; any given are ignored.",
        "properties": copy.deepcopy(params),
    }


def _title(spec: StreamSpec) -> str:
    return str(spec.message_schema.get("title", spec.name.title() + "Message"))


_LATEST_WINS = (
    "; each message is a state that replaces the last, so under load the server sends "
    "the newest state and skips those it replaced: `seq` may then jump by more than one "
    "with nothing lost (a gap is only what a `subscribed` reply with `recovered: false` "
    "announces). "
)


def _channel(spec: StreamSpec) -> Schema:
    title = _title(spec)
    refresh = _command_name("refresh")
    return {
        "address": spec.path,
        "title": f"{spec.name.title()} stream",
        "description": f"One JSON text frame per event, sent {spec.trigger}. "
        "`seq` increases by one per message of this stream"
        + (_LATEST_WINS if spec.name in LATEST_WINS_STREAMS else ". ")
        + "The one command a client may send here is `refresh` (any other message is ignored).",
        "messages": {
            title: {"$ref": f"#/components/messages/{title}"},
            refresh: {"$ref": f"#/components/messages/{refresh}"},
            "Refreshed": {"$ref": "#/components/messages/Refreshed"},
        },
        "bindings": {
            "ws": {"method": "GET", "query": _query_schema(spec.name), "bindingVersion": "0.1.0"}
        },
    }


def _operations(spec: StreamSpec) -> dict[str, Schema]:
    title = _title(spec)
    refresh = _command_name("refresh")
    return {
        spec.name: {
            "action": "send",
            "channel": {"$ref": f"#/channels/{spec.name}"},
            "title": f"Broadcast {spec.name}",
            "summary": f"The server sends every {spec.name} event to each subscriber of "
            f"{spec.path}, and answers a refresh with refreshed.",
            "messages": [
                {"$ref": f"#/channels/{spec.name}/messages/{title}"},
                {"$ref": f"#/channels/{spec.name}/messages/Refreshed"},
            ],
        },
        f"{spec.name}-refresh": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{spec.name}"},
            "title": refresh,
            "summary": str(COMMAND_SCHEMA["$defs"]["refresh"]["description"]),
            "messages": [{"$ref": f"#/channels/{spec.name}/messages/{refresh}"}],
        },
    }


def _message(spec: StreamSpec) -> Schema:
    title = _title(spec)
    return {
        "name": title,
        "title": title,
        "summary": f"A {spec.name} event, {spec.trigger}.",
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{title}"},
        "examples": [{"name": "spec", "payload": dict(spec.example)}],
    }


# The frames a /ws client gets back, besides the stream messages (docs/protocol.md).
_POSITION: Schema = {
    "type": "object",
    "required": ["seq", "epoch"],
    "properties": {"seq": {"type": "integer", "minimum": 0}, "epoch": {"type": "string"}},
}
_REPLIES: dict[str, Schema] = {
    "Subscribed": {
        "type": "object",
        "required": ["type", "id", "stream", "position", "recovered", "replayed"],
        "properties": {
            "type": {"const": "subscribed"},
            "id": {"type": "string"},
            "stream": {"type": "string"},
            "position": _POSITION,
            "recovered": {"type": "boolean"},
            "replayed": {"type": "integer", "minimum": 0},
        },
    },
    "Unsubscribed": {
        "type": "object",
        "required": ["type", "id"],
        "properties": {
            "type": {"const": "unsubscribed"},
            "id": {"type": "string"},
            "reason": {
                "const": "forbidden",
                "description": "Set when the server ended the subscription: a refreshed "
                "token no longer grants its stream.",
            },
        },
    },
    "Refreshed": {
        "type": "object",
        "required": ["type", "expiresAt"],
        "properties": {
            "type": {"const": "refreshed"},
            "id": {"type": "string", "description": "The refresh command's id, if it had one."},
            "expiresAt": {
                "type": ["number", "null"],
                "description": "The new token's exp in Unix seconds; null when it has none "
                "or authentication is off.",
            },
        },
    },
    "Snapshot": {
        "type": "object",
        "required": ["type", "id", "stream", "position", "items"],
        "properties": {
            "type": {"const": "snapshot"},
            "id": {"type": "string"},
            "stream": {"enum": ["validators", "network"]},
            "position": _POSITION,
            "items": {"type": "array", "items": {"type": "object"}},
        },
    },
    "CommandError": {
        "type": "object",
        "required": ["type", "error", "detail"],
        "properties": {
            "type": {"const": "error"},
            "id": {"type": "string"},
            "op": {"type": "string"},
            "error": {"type": "string"},
            "detail": {"type": "string"},
        },
    },
    "StreamMessage": {
        "type": "object",
        "required": ["type", "id", "stream", "data"],
        "properties": {
            "type": {"const": "message"},
            "id": {"type": "string"},
            "stream": {"enum": list(REGISTRY)},
            "data": {
                "oneOf": [{"$ref": f"#/components/schemas/{_title(s)}"} for s in REGISTRY.values()]
            },
        },
    },
}


def _command_name(op: str) -> str:
    return str(COMMAND_SCHEMA["$defs"][op]["title"])


def _mux_channel() -> Schema:
    commands = {
        _command_name(op): {"$ref": f"#/components/messages/{_command_name(op)}"}
        for op in COMMAND_OPS
    }
    replies = {name: {"$ref": f"#/components/messages/{name}"} for name in _REPLIES}
    return {
        "address": MUX_PATH,
        "title": "Multiplexed endpoint",
        "description": "Any number of subscriptions on one socket, opened and closed with "
        "JSON commands; every command gets exactly one reply, and each stream message "
        "arrives wrapped with its subscription id and stream.",
        "messages": {**commands, **replies},
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "properties": copy.deepcopy(
                        {"format": QUERY_PARAMETERS["*"]["format"], "token": {"type": "string"}}
                    ),
                },
                "bindingVersion": "0.1.0",
            }
        },
    }


def _mux_operations() -> dict[str, Schema]:
    operations: dict[str, Schema] = {}
    for op in COMMAND_OPS:
        name = _command_name(op)
        operations[f"{MUX_ENDPOINT}-{op}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{MUX_ENDPOINT}"},
            "title": name,
            "summary": str(COMMAND_SCHEMA["$defs"][op]["description"]),
            "messages": [{"$ref": f"#/channels/{MUX_ENDPOINT}/messages/{name}"}],
        }
    operations[f"{MUX_ENDPOINT}-send"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{MUX_ENDPOINT}"},
        "title": "Replies and messages",
        "summary": "The server answers each command, then sends the subscriptions' messages.",
        "messages": [{"$ref": f"#/channels/{MUX_ENDPOINT}/messages/{n}"} for n in _REPLIES],
    }
    return operations


def _mux_messages() -> dict[str, Schema]:
    messages: dict[str, Schema] = {}
    for op in COMMAND_OPS:
        name = _command_name(op)
        messages[name] = {
            "name": name,
            "title": name,
            "summary": str(COMMAND_SCHEMA["$defs"][op]["description"]),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    for name in _REPLIES:
        messages[name] = {
            "name": name,
            "title": name,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    return messages


def _mux_schemas() -> dict[str, Schema]:
    schemas: dict[str, Schema] = {}
    for op in COMMAND_OPS:
        schema = dict(COMMAND_SCHEMA["$defs"][op])
        schemas[str(schema["title"])] = schema
    return schemas | _REPLIES


def _description() -> str:
    codes = "\n".join(
        f"| {c['code']} | {c['name']} | {c['reason']} | {'yes' if c['reconnect'] else 'no'} "
        f"| {'yes' if c['newToken'] else 'no'} |"
        for c in CLOSE_CODES
    )
    return (
        "Live streams of the Aurigraph V11 platform over WebSocket (RFC 6455). Each message "
        "is one JSON text frame. Clients that offer permessage-deflate (RFC 7692) get "
        "compressed frames (server_no_context_takeover). The server pings every "
        "`ping_interval` seconds; answer pings (every WebSocket library does).\n\n"
        "## Refused upgrades\nAn upgrade the server will not take is answered before the "
        "101 as HTTP with a JSON body `{error, detail}`: for example 404 `unknown_stream`, "
        "or 503 `too_many_connections` and `shutting_down` with a `Retry-After` header.\n\n"
        "## GraphQL\nThe same streams as GraphQL, on the same port: queries and the publish "
        f"mutation over HTTP, subscriptions over WebSocket with the `{GRAPHQL_PROTOCOL}` "
        f"subprotocol, at [{GRAPHQL_PATH}]({GRAPHQL_PATH}) (GraphiQL in a browser); the "
        f"schema is at [{GRAPHQL_SCHEMA_PATH}]({GRAPHQL_SCHEMA_PATH}). Close codes "
        "4400-4499 are that protocol's, sent on it only.\n\n"
        "## Close codes\n\n| code | name | reason | reconnect? | new token? |\n"
        "|---|---|---|---|---|\n"
        f"{codes}\n"
    )


def build_asyncapi(host: str, protocol: str = "ws") -> dict[str, Any]:
    """The document, for clients that reach this server at ``protocol://host``."""
    specs: Mapping[str, StreamSpec] = REGISTRY
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Aurigraph Stream WebSocket API",
            "version": __version__,
            "description": _description(),
            "externalDocs": {
                "description": "GraphQL over the same streams: queries, the publish mutation "
                f"and subscriptions ({GRAPHQL_PROTOCOL}); GraphiQL in a browser",
                "url": f"{'https' if protocol == 'wss' else 'http'}://{host}{GRAPHQL_PATH}",
            },
        },
        "servers": {
            "this": {
                "host": host,
                "protocol": protocol,
                "description": "The server that served this document.",
            }
        },
        "defaultContentType": "application/json",
        "channels": {name: _channel(spec) for name, spec in specs.items()}
        | {MUX_ENDPOINT: _mux_channel()},
        "operations": {k: v for spec in specs.values() for k, v in _operations(spec).items()}
        | _mux_operations(),
        "components": {
            "schemas": {_title(spec): spec.message_schema for spec in specs.values()}
            | _mux_schemas(),
            "messages": {_title(spec): _message(spec) for spec in specs.values()} | _mux_messages(),
        },
        "x-close-codes": CLOSE_CODES,
    }
    # A copy of plain values: no shared sub-objects (YAML would write them as
    # aliases) and nothing a caller could change in the registry.
    copied: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return copied
