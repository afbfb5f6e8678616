"""The GraphQL schema against the streams' JSON Schemas and filters, the committed SDL, and
the checks a document passes before it runs (size, depth, selections, validation)."""

from __future__ import annotations

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLType,
    get_introspection_query,
    get_named_type,
    parse,
)

from aurigraph_stream.filters import OPTIONS
from aurigraph_stream.gql.examples import EXAMPLES
from aurigraph_stream.gql.operations import Limits, RequestError, measure, prepare
from aurigraph_stream.gql.schema import ENUM_NAMES, SCHEMA, TYPE_NAMES, sdl
from aurigraph_stream.streams import REGISTRY
from tests.support.server import ROOT

JSON_TO_GRAPHQL = {"string": "String", "integer": "Long", "number": "Float", "boolean": "Boolean"}


def _named(field_type: GraphQLType) -> str:
    return get_named_type(field_type).name


@pytest.mark.parametrize("stream", list(REGISTRY))
def test_each_stream_type_has_exactly_the_message_fields(stream: str) -> None:
    """Object type = message schema: the same fields, non-null, the mapped scalar or the enum
    with the schema's values; the input type is the event schema (no seq)."""
    spec = REGISTRY[stream]
    obj = SCHEMA.get_type(TYPE_NAMES[stream])
    assert isinstance(obj, GraphQLObjectType)
    props = spec.message_schema["properties"]
    assert list(obj.fields) == list(props)
    for name, prop in props.items():
        field_type = obj.fields[name].type
        assert isinstance(field_type, GraphQLNonNull)
        if "enum" in prop:
            enum = get_named_type(field_type)
            assert isinstance(enum, GraphQLEnumType)
            assert enum.name == ENUM_NAMES[(stream, name)]
            assert list(enum.values) == prop["enum"]
        else:
            assert _named(field_type) == JSON_TO_GRAPHQL[prop["type"]]
    inp = SCHEMA.get_type(TYPE_NAMES[stream] + "Input")
    assert isinstance(inp, GraphQLInputObjectType)
    assert list(inp.fields) == list(spec.event_schema["properties"])
    assert "seq" not in inp.fields


@pytest.mark.parametrize("stream", list(REGISTRY))
def test_subscription_arguments_are_the_selecting_filters(stream: str) -> None:
    """A stream's subscription takes each filter option that selects messages (projections
    are the selection set's job) plus since; list options are lists of the field's type."""
    field = SCHEMA.subscription_type.fields[stream]  # type: ignore[union-attr]
    selecting = [n for n, o in OPTIONS[stream].items() if o.kind in ("list", "wei", "bool", "int")]
    assert list(field.args) == [*selecting, "since"]
    for name in selecting:
        if OPTIONS[stream][name].kind == "list":
            assert isinstance(field.args[name].type, GraphQLList)
    assert _named(field.type) == TYPE_NAMES[stream]


def test_root_fields() -> None:
    """The queries, the mutation and the subscriptions the documentation promises."""
    assert set(SCHEMA.query_type.fields) == {  # type: ignore[union-attr]
        "metrics",
        "consensus",
        "validators",
        "peers",
        "transactions",
        "position",
    }
    assert set(SCHEMA.mutation_type.fields) == {"publish"}  # type: ignore[union-attr]
    assert set(SCHEMA.subscription_type.fields) == set(REGISTRY)  # type: ignore[union-attr]
    publish = SCHEMA.mutation_type.fields["publish"]  # type: ignore[union-attr]
    assert list(publish.args) == list(REGISTRY)


def test_committed_sdl_is_current() -> None:
    """docs/schema.graphql is the schema the server serves; regenerate it when this fails:
    .venv/bin/python -m aurigraph_stream.gql > docs/schema.graphql"""
    assert (ROOT / "docs" / "schema.graphql").read_text() == sdl()


def _refused(query: str, name: str | None = None) -> str:
    with pytest.raises(RequestError) as caught:
        prepare(SCHEMA, Limits(), query, name)
    return caught.value.code


def test_documents_are_refused_with_the_slug_of_the_first_check_they_fail() -> None:
    """Each limit and each kind of bad document has its own code."""
    assert _refused(123) == "invalid_request"  # type: ignore[arg-type]
    assert _refused("{ metrics { seq } }", name=5) == "invalid_request"  # type: ignore[arg-type]
    assert _refused("{ metrics { seq " + " " * 9000 + "} }") == "document_too_large"
    assert _refused("{ metrics { ") == "syntax_error"
    assert _refused("{ nope }") == "invalid_document"
    assert _refused("{ metrics { nope } }") == "invalid_document"
    assert _refused("query A { metrics { seq } } query B { metrics { seq } }") == (
        "unknown_operation"
    )
    assert _refused("query A { metrics { seq } }", name="B") == "unknown_operation"
    many = "{ " + " ".join(f"m{i}: metrics {{ seq }}" for i in range(60)) + " }"
    assert _refused(many) == "too_many_selections"
    deep = "{ __schema { types { fields { type " + "{ ofType " * 12 + "{ name }" + " }" * 16
    assert _refused(deep) == "too_deep"


def test_depth_and_selections_count_through_fragments() -> None:
    """A fragment's selections count once; its depth counts where it is spread."""
    doc = parse(
        "query { ...A metrics { ...B } } fragment A on Query { consensus { seq } } "
        "fragment B on Metrics { tps seq }"
    )
    assert measure(doc) == (7, 2)  # ...A metrics ...B; consensus seq; tps seq
    cyclic = parse("query { ...A } fragment A on Query { ...A }")
    assert measure(cyclic) == (2, 0)  # counted without looping; validation refuses it


def test_introspection_passes_the_default_limits() -> None:
    """GraphiQL and code generators introspect: the full introspection query fits."""
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    assert prepare(SCHEMA, Limits(), query, None).kind == "query"


def test_a_valid_document_is_kept_by_its_text() -> None:
    """Preparing the same text twice parses and validates once: the same document object."""
    text = "subscription S { transactions { txHash } }"
    first = prepare(SCHEMA, Limits(), text, None)
    second = prepare(SCHEMA, Limits(), text, "S")
    assert first.document is second.document
    assert (first.kind, second.name) == ("subscription", "S")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.query.split("{")[0].split()[-1])
def test_graphiql_examples_are_valid(example: object) -> None:
    """The operations GraphiQL opens with pass every check."""
    prepare(SCHEMA, Limits(), example.query, None)  # type: ignore[attr-defined]
