"""The GraphQL schema, derived from the streams' JSON Schemas and their filters.

Nothing here is written twice. Each stream's message schema
(:mod:`aurigraph_stream.streams.schemas`) becomes an object type, its event
schema (the message without ``seq``) the input type ``publish`` takes, and
its filter options (:data:`aurigraph_stream.filters.OPTIONS`) the arguments
of its subscription, validated by the same ``parse_filter`` as on the
WebSocket endpoints. So the JSON endpoints, the JSON Schemas and GraphQL
cannot disagree.

JSON Schema to GraphQL::

    string             String        (an enum: an enum type, ENUM_NAMES)
    integer            Long          (64 bits: GraphQL's Int has 32, and seq outgrows it)
    number             Float
    boolean            Boolean
    required           non-null (every message field is required)
    description        description

The SDL is served at ``/graphql/schema.graphql`` and committed as
``docs/schema.graphql`` (``python -m aurigraph_stream.gql`` prints it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    IntValueNode,
    ValueNode,
    print_schema,
)

from aurigraph_stream.filters import MAX_EVERY, MAX_VALUES, OPTIONS
from aurigraph_stream.gql import resolvers
from aurigraph_stream.streams import REGISTRY

__all__ = ["ENUM_NAMES", "SCHEMA", "TYPE_NAMES", "sdl"]

F = TypeVar("F", GraphQLField, GraphQLInputField)

#: The object type of each stream's messages.
TYPE_NAMES = {
    "metrics": "Metrics",
    "transactions": "Transaction",
    "validators": "Validator",
    "consensus": "ConsensusState",
    "network": "Peer",
}
#: Enum types by (stream, field); a new enum field needs a name here.
ENUM_NAMES = {
    ("transactions", "status"): "TransactionStatus",
    ("validators", "status"): "ValidatorStatus",
    ("consensus", "state"): "ConsensusPhase",
}
_SNAPSHOT_QUERIES = {"validators": "validators", "network": "peers"}
_LATEST_QUERIES = ("metrics", "consensus")
_HISTORY_QUERIES = ("transactions",)

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _long(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not _LONG_MIN <= value <= _LONG_MAX:
        raise GraphQLError(f"Long cannot represent {value!r}: a 64-bit integer is expected")
    return value


def _long_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError("Long cannot represent a non-integer value", node)
    return _long(int(node.value))


LONG = GraphQLScalarType(
    "Long",
    description="A whole number of up to 64 bits, as a JSON number (GraphQL's Int has 32).",
    serialize=_long,
    parse_value=_long,
    parse_literal=_long_literal,
)

_ENUMS: dict[tuple[str, str], GraphQLEnumType] = {}


def _enum(stream: str, field: str, values: list[str]) -> GraphQLEnumType:
    key = (stream, field)
    if key not in _ENUMS:
        if key not in ENUM_NAMES:
            raise KeyError(
                f"no GraphQL name for the enum of {stream}.{field}: add it to ENUM_NAMES"
            )
        _ENUMS[key] = GraphQLEnumType(ENUM_NAMES[key], {v: GraphQLEnumValue(v) for v in values})
    return _ENUMS[key]


def _scalar(stream: str, field: str, schema: Mapping[str, Any]) -> Any:
    """The GraphQL type of one message field, from its JSON Schema (see the module docstring)."""
    if "enum" in schema:
        return _enum(stream, field, list(schema["enum"]))
    kind = schema.get("type")
    if kind == "string":
        return GraphQLString
    if kind == "integer":
        return LONG
    if kind == "number":
        return GraphQLFloat
    if kind == "boolean":
        return GraphQLBoolean
    raise TypeError(f"{stream}.{field}: no GraphQL type for JSON Schema type {kind!r}")


def _fields(stream: str, schema: Mapping[str, Any], field: Callable[..., F]) -> dict[str, F]:
    """The fields of an object or input type: one per property of the JSON Schema."""
    required = set(schema["required"])
    fields = {}
    for name, prop in schema["properties"].items():
        kind = _scalar(stream, name, prop)
        fields[name] = field(
            GraphQLNonNull(kind) if name in required else kind,
            description=prop.get("description"),
        )
    return fields


def _object_type(stream: str) -> GraphQLObjectType:
    spec = REGISTRY[stream]
    return GraphQLObjectType(
        TYPE_NAMES[stream],
        _fields(stream, spec.message_schema, GraphQLField),
        description=f"A message of the {stream} stream ({spec.path}), sent {spec.trigger}.",
    )


def _input_type(stream: str) -> GraphQLInputObjectType:
    spec = REGISTRY[stream]
    return GraphQLInputObjectType(
        f"{TYPE_NAMES[stream]}Input",
        _fields(stream, spec.event_schema, GraphQLInputField),
        description=f"An event to publish on the {stream} stream: a message without seq, "
        "which the server assigns. Checked against the same JSON Schema as the ingest API.",
    )


OBJECTS = {stream: _object_type(stream) for stream in REGISTRY}
INPUTS = {stream: _input_type(stream) for stream in REGISTRY}

STREAM = GraphQLEnumType(
    "Stream",
    {name: GraphQLEnumValue(name, description=f"{spec.path}") for name, spec in REGISTRY.items()},
    description="The five streams, by the name of their WebSocket endpoint.",
)
POSITION = GraphQLObjectType(
    "Position",
    {
        "seq": GraphQLField(
            GraphQLNonNull(LONG), description="The seq of the stream's latest message."
        ),
        "epoch": GraphQLField(
            GraphQLNonNull(GraphQLString),
            description="The history the seqs belong to; it changes when the history is lost.",
        ),
    },
    description="Where a stream is: resume a subscription with since: SEQ:EPOCH from it.",
)
PUBLISH_RESULT = GraphQLObjectType(
    "PublishResult",
    {
        "stream": GraphQLField(GraphQLNonNull(STREAM)),
        "accepted": GraphQLField(GraphQLNonNull(GraphQLInt), description="Events broadcast."),
        "seqs": GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(LONG))),
            description="The seq assigned to each event, in order.",
        ),
    },
)

_SINCE = GraphQLArgument(
    GraphQLString,
    description="SEQ:EPOCH (or SEQ): only messages after this one. Resume a subscription with "
    "the seq of the last message received and the epoch of the first message's "
    "extensions.stream.position.",
)


def _filter_argument(stream: str, name: str) -> GraphQLArgument:
    """One filter option as an argument, described by what it passes (docs/protocol.md)."""
    option = OPTIONS[stream][name]
    props = REGISTRY[stream].message_schema["properties"]
    if option.kind == "list":
        prop = props[option.prop]
        item = _enum(stream, option.prop, prop["enum"]) if "enum" in prop else GraphQLString
        fields = " or ".join(option.matches)
        case = " (compared without regard to case)" if option.lower else ""
        return GraphQLArgument(
            GraphQLList(GraphQLNonNull(item)),
            description=f"Only messages whose {fields} is one of these{case}; "
            f"at most {MAX_VALUES} values.",
        )
    if option.kind == "wei":
        return GraphQLArgument(
            GraphQLString,
            description="Only messages whose value is at least this many wei (a decimal string).",
        )
    if option.kind == "int":
        return GraphQLArgument(
            GraphQLInt,
            description=f"One message per N: those whose seq is divisible by N (1 to {MAX_EVERY}).",
        )
    if name == "latest":
        return GraphQLArgument(
            GraphQLBoolean,
            description="Latest-wins: a client that reads too slowly gets the newest state "
            "when it catches up, not a backlog, and is never closed as slow for it.",
        )
    return GraphQLArgument(
        GraphQLBoolean, description=f"Only messages whose {option.prop} equals this."
    )


def _query() -> GraphQLObjectType:
    fields: dict[str, GraphQLField] = {}
    for stream in _LATEST_QUERIES:
        fields[stream] = GraphQLField(
            OBJECTS[stream],
            resolve=resolvers.latest(stream),
            description=f"The latest {stream} message; null before the first.",
        )
    for stream, name in _SNAPSHOT_QUERIES.items():
        fields[name] = GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(OBJECTS[stream]))),
            args={n: _filter_argument(stream, n) for n in resolvers.QUERY_FILTERS[stream]},
            resolve=resolvers.snapshot(stream),
            description=f"The snapshot of {REGISTRY[stream].path}: every "
            + ("validator as last published." if stream == "validators" else "connected peer."),
        )
    for stream in _HISTORY_QUERIES:
        args = {n: _filter_argument(stream, n) for n in resolvers.QUERY_FILTERS[stream]}
        args["since"] = _SINCE
        args["last"] = GraphQLArgument(
            GraphQLInt, description="Only the newest N of the messages that pass (0 to 100000)."
        )
        fields[stream] = GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(OBJECTS[stream]))),
            args=args,
            resolve=resolvers.history(stream),
            description=f"The {stream} messages the server still keeps (its history), "
            "oldest first.",
        )
    fields["position"] = GraphQLField(
        GraphQLNonNull(POSITION),
        args={"stream": GraphQLArgument(GraphQLNonNull(STREAM))},
        resolve=resolvers.position,
        description="Where a stream is now. Asked in the same query as a snapshot, it is the "
        "position of that snapshot.",
    )
    return GraphQLObjectType("Query", fields)


def _mutation() -> GraphQLObjectType:
    return GraphQLObjectType(
        "Mutation",
        {
            "publish": GraphQLField(
                GraphQLNonNull(PUBLISH_RESULT),
                args={
                    stream: GraphQLArgument(GraphQLList(GraphQLNonNull(INPUTS[stream])))
                    for stream in REGISTRY
                },
                resolve=resolvers.publish,
                description="Publish events on one stream (give exactly one argument), in "
                "order, as the ingest API does. Needs the publish scope.",
            )
        },
    )


def _subscription() -> GraphQLObjectType:
    fields = {}
    for stream, spec in REGISTRY.items():
        args = {n: _filter_argument(stream, n) for n in resolvers.SUBSCRIPTION_FILTERS[stream]}
        args["since"] = _SINCE
        fields[stream] = GraphQLField(
            GraphQLNonNull(OBJECTS[stream]),
            args=args,
            subscribe=resolvers.subscribe(stream),
            resolve=resolvers.event,
            description=f"The messages of {spec.path}, sent {spec.trigger}. The first "
            "result's extensions.stream says where it started (position, recovered).",
        )
    return GraphQLObjectType("Subscription", fields)


SCHEMA = GraphQLSchema(
    query=_query(),
    mutation=_mutation(),
    subscription=_subscription(),
    description="Aurigraph V11 streams: query the current state, subscribe to changes.",
)


def sdl() -> str:
    """The schema in the GraphQL schema definition language."""
    return print_schema(SCHEMA) + "\n"
