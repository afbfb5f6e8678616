"""From a request's text to an operation ready to run: limits, parsing, validation.

Checks run cheapest first, and each refusal is a :class:`RequestError` whose
GraphQL errors carry a slug in ``extensions.code``::

    query not a string, operationName not a string   invalid_request
    document over graphql_max_document_size bytes   document_too_large
    not GraphQL                                      syntax_error
    more than graphql_max_selections selections      too_many_selections
    selections nested deeper than graphql_max_depth  too_deep
    invalid against the schema                       invalid_document
    no operation by that name, or several unnamed    unknown_operation

Validation is the costly step (OverlappingFieldsCanBeMerged compares fields
pairwise), which is why selections are counted before it, and why a parsed
and validated document is kept by its text: a thousand subscribers of one
document cost one validation. Only short documents are kept (a parsed
document, with its source locations, takes about 80 times its text): at most
128 of up to 1 KiB, some 10 MB in the worst case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_operation_ast,
    parse,
    print_ast,
    validate,
)

__all__ = ["Limits", "Operation", "RequestError", "measure", "prepare"]

_MAX_VALIDATION_ERRORS = 20
_CACHED_DOCUMENTS = 128
_CACHED_TEXT = 1024  # longer documents are checked every time


@dataclass(frozen=True, slots=True)
class Limits:
    """What one document may ask for (the ``graphql_max_*`` settings)."""

    max_size: int = 8192
    max_depth: int = 15
    max_selections: int = 100


class RequestError(Exception):
    """A request refused before execution; ``errors`` go to the client as they are."""

    def __init__(self, errors: Sequence[GraphQLError]) -> None:
        super().__init__(errors[0].message)
        self.errors = list(errors)

    @classmethod
    def single(cls, message: str, code: str) -> RequestError:
        """One error with ``code`` as its ``extensions.code``."""
        return cls([GraphQLError(message, extensions={"code": code})])

    @property
    def code(self) -> str:
        extensions = self.errors[0].extensions or {}
        return str(extensions.get("code", "invalid_document"))


@dataclass(frozen=True, slots=True)
class Operation:
    """A valid document and the operation of it to run."""

    document: DocumentNode
    operation: OperationDefinitionNode
    canonical: str  # the document printed without layout or comments: its identity

    @property
    def kind(self) -> str:
        """``query``, ``mutation`` or ``subscription``."""
        return self.operation.operation.value

    @property
    def name(self) -> str | None:
        return self.operation.name.value if self.operation.name else None


def measure(document: DocumentNode) -> tuple[int, int]:
    """(selections, depth) of ``document``: each fragment's selections counted once.

    Depth is the deepest chain of fields of any operation, through fragments
    (a fragment that spreads itself counts once: validation refuses it anyway).
    """
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    selections = 0
    depth_of_fragment: dict[str, int] = {}

    def depth(selection_set: SelectionSetNode, visiting: frozenset[str]) -> int:
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                below = selection.selection_set
                d = 1 + (depth(below, visiting) if below is not None else 0)
            elif isinstance(selection, InlineFragmentNode):
                d = depth(selection.selection_set, visiting)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visiting or name not in fragments:
                    d = 0
                elif name in depth_of_fragment:
                    d = depth_of_fragment[name]
                else:
                    d = depth_of_fragment[name] = depth(
                        fragments[name].selection_set, visiting | {name}
                    )
            else:  # pragma: no cover - the AST has no other selection
                d = 0
            deepest = max(deepest, d)
        return deepest

    def count(selection_set: SelectionSetNode) -> int:
        n = 0
        for selection in selection_set.selections:
            n += 1
            below = getattr(selection, "selection_set", None)
            if below is not None:
                n += count(below)
        return n

    deepest = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            selections += count(definition.selection_set)
        if isinstance(definition, OperationDefinitionNode):
            deepest = max(deepest, depth(definition.selection_set, frozenset()))
    return selections, deepest


def _checked(schema: GraphQLSchema, limits: Limits, text: str) -> tuple[DocumentNode, str]:
    """Parse, measure and validate ``text``.

    Raises:
        RequestError: the first check it fails.
    """
    try:
        document = parse(text)
    except GraphQLSyntaxError as error:
        located = GraphQLError(
            error.message,
            source=error.source,
            positions=error.positions,
            extensions={"code": "syntax_error"},
        )
        raise RequestError([located]) from None
    selections, depth = measure(document)
    if selections > limits.max_selections:
        raise RequestError.single(
            f"the document has {selections} selections; at most {limits.max_selections} "
            "are allowed",
            "too_many_selections",
        )
    if depth > limits.max_depth:
        raise RequestError.single(
            f"the document nests selections {depth} deep; at most {limits.max_depth} is allowed",
            "too_deep",
        )
    errors = validate(schema, document, max_errors=_MAX_VALIDATION_ERRORS)
    if errors:
        raise RequestError(
            [
                GraphQLError(
                    e.message,
                    e.nodes,
                    e.source,
                    e.positions,
                    extensions={**(e.extensions or {}), "code": "invalid_document"},
                )
                for e in errors
            ]
        )
    return document, print_ast(document)


# Refusals are not kept (lru_cache keeps results, not exceptions): a cache of them could be
# filled at will, and they are rare.
_kept = lru_cache(maxsize=_CACHED_DOCUMENTS)(_checked)


def prepare(schema: GraphQLSchema, limits: Limits, query: Any, operation_name: Any) -> Operation:
    """Check ``query`` (the document's text) and pick the operation to run.

    Raises:
        RequestError: the first check it fails (see the module docstring).
    """
    if not isinstance(query, str):
        raise RequestError.single(
            "query must be a string holding a GraphQL document", "invalid_request"
        )
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError.single("operationName must be a string or null", "invalid_request")
    size = len(query.encode())
    if size > limits.max_size:
        raise RequestError.single(
            f"the document is {size} bytes; at most {limits.max_size} are allowed",
            "document_too_large",
        )
    check = _kept if len(query) <= _CACHED_TEXT else _checked
    document, canonical = check(schema, limits, query)
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        which = (
            f"no operation named {operation_name!r}"
            if operation_name
            else ("several operations and no operationName to choose one")
        )
        raise RequestError.single(f"the document has {which}", "unknown_operation")
    return Operation(document, operation, canonical)
