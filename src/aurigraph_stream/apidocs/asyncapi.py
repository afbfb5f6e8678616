"""The AsyncAPI 3 document of the WebSocket side, built from the stream registry.

Everything in it comes from the objects the server runs on: channel
addresses and triggers from :data:`REGISTRY`, message payloads from the same
JSON Schemas the server validates with (verbatim), examples from the
registry's examples, close codes from :class:`CloseCode`. So the document
cannot drift from the behaviour.

Query parameters are listed in :data:`QUERY_PARAMETERS`: one JSON Schema per
parameter, for every stream (key ``"*"``) or one stream (its name).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson

from aurigraph_stream import __version__
from aurigraph_stream.contract import CloseCode
from aurigraph_stream.streams import REGISTRY, StreamSpec
from aurigraph_stream.subscription import query_parameters

__all__ = ["CLOSE_CODES", "QUERY_PARAMETERS", "build_asyncapi", "close_codes"]

Schema = dict[str, Any]

#: Query parameters of the stream endpoints, ``{stream or "*": {name: schema}}``.
QUERY_PARAMETERS: dict[str, dict[str, Schema]] = query_parameters()  # docs/protocol.md


def close_codes() -> list[dict[str, Any]]:
    """Every close code the server sends, with its reason and whether to reconnect."""
    return [
        {"code": int(code), "name": code.name, "reason": code.reason, "reconnect": code.reconnect}
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


def _channel(spec: StreamSpec) -> Schema:
    title = _title(spec)
    return {
        "address": spec.path,
        "title": f"{spec.name.title()} stream",
        "description": f"One JSON text frame per event, sent {spec.trigger}. "
        "`seq` increases by one per message of this stream.",
        "messages": {title: {"$ref": f"#/components/messages/{title}"}},
        "bindings": {
            "ws": {"method": "GET", "query": _query_schema(spec.name), "bindingVersion": "0.1.0"}
        },
    }


def _operation(spec: StreamSpec) -> Schema:
    title = _title(spec)
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{spec.name}"},
        "title": f"Broadcast {spec.name}",
        "summary": f"The server sends every {spec.name} event to each subscriber of {spec.path}.",
        "messages": [{"$ref": f"#/channels/{spec.name}/messages/{title}"}],
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


def _description() -> str:
    codes = "\n".join(
        f"| {c['code']} | {c['name']} | {c['reason']} | {'yes' if c['reconnect'] else 'no'} |"
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
        "## Close codes\n\n| code | name | reason | reconnect? |\n|---|---|---|---|\n"
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
        },
        "servers": {
            "this": {
                "host": host,
                "protocol": protocol,
                "description": "The server that served this document.",
            }
        },
        "defaultContentType": "application/json",
        "channels": {name: _channel(spec) for name, spec in specs.items()},
        "operations": {name: _operation(spec) for name, spec in specs.items()},
        "components": {
            "schemas": {_title(spec): spec.message_schema for spec in specs.values()},
            "messages": {_title(spec): _message(spec) for spec in specs.values()},
        },
        "x-close-codes": CLOSE_CODES,
    }
    # A copy of plain values: no shared sub-objects (YAML would write them as
    # aliases) and nothing a caller could change in the registry.
    copied: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return copied
