"""docs/graphql.md: every operation it shows runs on a real server as shown, and together
they use every root field of the schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from graphql import FieldNode, OperationDefinitionNode, parse

from aurigraph_stream.gql.schema import SCHEMA
from tests.support.graphqltools import GraphqlWs, graphql_http
from tests.support.server import ROOT, ServerProcess
from tests.support.streamtools import example_event, open_server, publish

DOC = (ROOT / "docs" / "graphql.md").read_text()
# A ```graphql block, and the ```json block of its variables when one follows at once.
BLOCKS = re.findall(r"```graphql\n(.*?)```\n(?:\n```json\n(.*?)```\n)?", DOC, re.DOTALL)


def _operation(document: str) -> OperationDefinitionNode:
    (operation,) = [
        d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode)
    ]
    return operation


def _root_fields(document: str) -> list[str]:
    operation = _operation(document)
    kind = operation.operation.value
    return [
        f"{kind}.{s.name.value}"
        for s in operation.selection_set.selections
        if isinstance(s, FieldNode)
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with open_server(tmp_path_factory.mktemp("graphql-doc")) as s:
        yield s


def test_the_document_shows_every_root_field() -> None:
    """Every query, the mutation and every subscription appear in an example."""
    shown = {name for document, _ in BLOCKS for name in _root_fields(document)}
    expected = {
        f"{kind}.{name}"
        for kind, root in (
            ("query", SCHEMA.query_type),
            ("mutation", SCHEMA.mutation_type),
            ("subscription", SCHEMA.subscription_type),
        )
        if root is not None
        for name in root.fields
    }
    assert expected <= shown, expected - shown


@pytest.mark.parametrize(
    ("document", "variables"),
    BLOCKS,
    ids=[_operation(d).name.value for d, _ in BLOCKS],  # type: ignore[union-attr]
)
def test_each_example_runs(server: ServerProcess, document: str, variables: str) -> None:
    """Queries and the mutation answer over HTTP without errors; a subscription receives
    the stream's example event (which its filters let through) with the selected fields."""
    values: dict[str, Any] | None = orjson.loads(variables) if variables else None
    operation = _operation(document)
    if operation.operation.value != "subscription":
        answer = graphql_http(server, document, values)
        assert answer.status_code == 200, answer.text
        assert "errors" not in answer.json(), answer.json()
        return
    (stream,) = [name.split(".")[1] for name in _root_fields(document)]
    with GraphqlWs(server) as client:
        client.subscribe("doc", document, values)
        client.subscribe("sync", "{ position(stream: metrics) { seq } }")  # answered in order:
        assert client.next("sync")  # by now the subscription has joined
        assert client.recv()["type"] == "complete"
        # metrics(every: 5) passes every fifth seq: publish until one does.
        sent = publish(server, stream, [example_event(stream)] * 5)
        result = client.next("doc")
    selected = operation.selection_set.selections[0]
    assert isinstance(selected, FieldNode)
    assert selected.selection_set is not None
    fields = [f.name.value for f in selected.selection_set.selections if isinstance(f, FieldNode)]
    data = result["data"][stream]
    assert list(data) == fields
    assert data["seq"] in [m["seq"] for m in sent]
    assert result["extensions"]["stream"]["recovered"] is True
