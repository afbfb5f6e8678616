"""GraphQL over HTTP: ``POST /graphql`` and ``GET /graphql?query=...``, and its schema.

Requests follow the GraphQL-over-HTTP draft: a JSON body ``{"query",
"variables"?, "operationName"?}`` (``Content-Type: application/json``), or the
same as query parameters on GET (queries only: a mutation over GET is 405).
Subscriptions need a WebSocket (the same path, graphql-transport-ws). The
answer is ``{"data", "errors"?}``; a request refused before execution (not
GraphQL, invalid, over a limit) is HTTP 400 with ``{"errors": [...]}``, each
error naming its slug in ``extensions.code``. What is not a GraphQL request
at all (not JSON, a body too large, no token) gets the server's usual
``{"error", "detail"}``.

A browser asking for HTML (``Accept: text/html``) and no query gets GraphiQL.
"""

from __future__ import annotations

from inspect import isawaitable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from graphql import ExecutionResult
from starlette.requests import ClientDisconnect

from aurigraph_stream.apidocs.pages import graphiql_page
from aurigraph_stream.contract import GRAPHQL_PATH, GRAPHQL_SCHEMA_PATH
from aurigraph_stream.errors import AuthError
from aurigraph_stream.gql.operations import RequestError
from aurigraph_stream.gql.schema import sdl
from aurigraph_stream.gql.service import GraphqlService
from aurigraph_stream.http.errors import error_response

__all__ = ["router"]

router = APIRouter(tags=["graphql"])

GRAPHQL_RESPONSE = "application/graphql-response+json"
_SDL = sdl()
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result: data, and errors raised while executing",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    400: {
        "description": "Refused before execution: {errors: [...]}; or not a GraphQL request: "
        "{error, detail}",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["errors"],
                            "properties": {"errors": {"type": "array"}},
                        },
                        {"$ref": "#/components/schemas/Error"},
                    ]
                }
            }
        },
    },
    405: {"description": "A mutation over GET: {errors: [...]}, Allow: POST"},
    401: {"description": "Missing or invalid token"},
    413: {"description": "Body over max_message_size"},
    415: {"description": "Body not application/json"},
}


def _service(request: Request) -> GraphqlService:
    service: GraphqlService = request.app.state.graphql
    return service


def _json(body: Any, status: int, request: Request) -> Response:
    accept = request.headers.get("accept", "")
    media = GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in accept else "application/json"
    return Response(orjson.dumps(body), status, media_type=media)


def _refused(
    service: GraphqlService, exc: RequestError, request: Request, status: int = 400
) -> Response:
    service.count("refused", exc.code)
    return _json({"errors": [e.formatted for e in exc.errors]}, status, request)


async def _run(
    request: Request, query: Any, variables: Any, operation_name: Any, *, get: bool
) -> Response:
    service = _service(request)
    try:
        principal = service.authenticate(request.headers, request.query_params)
    except AuthError as exc:
        return error_response(exc.status, exc.error, exc.detail, headers=dict(exc.headers))
    try:
        operation = service.prepare(query, operation_name)
        if operation.kind == "subscription":
            raise RequestError.single(
                f"subscriptions need a WebSocket: {GRAPHQL_PATH} with the graphql-transport-ws "
                "subprotocol",
                "subscription_over_http",
            )
        if get and operation.kind == "mutation":
            refusal = RequestError.single("mutations need POST", "method_not_allowed")
            response = _refused(service, refusal, request, 405)
            response.headers["Allow"] = "POST"
            return response
        context = service.context(principal, request.headers, request.query_params)
        result = service.execute(operation, service.variables(variables), context)
    except RequestError as exc:
        return _refused(service, exc, request)
    if isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    return _json(result.formatted, 200, request)


_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "description": "The GraphQL document."},
        "variables": {"type": ["object", "null"]},
        "operationName": {"type": ["string", "null"]},
    },
}
_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": f"GET only: {what}",
        }
        for name, what in (
            ("query", "the document (a query; mutations need POST)"),
            ("variables", "the variables, as JSON text"),
            ("operationName", "the operation to run"),
        )
    ],
    "requestBody": {
        "required": False,
        "description": "POST: the request as JSON.",
        "content": {"application/json": {"schema": _REQUEST}},
    },
}


@router.api_route(
    GRAPHQL_PATH,
    methods=["GET", "POST"],
    summary="Run a GraphQL query or mutation (a browser's GET: GraphiQL)",
    description="GraphQL over HTTP: POST a JSON request, or GET with the query in the query "
    "string (queries only). Subscriptions need a WebSocket on the same path with the "
    "graphql-transport-ws subprotocol. The schema: " + GRAPHQL_SCHEMA_PATH + ".",
    responses=_RESPONSES,
    openapi_extra=_OPENAPI,
)
async def graphql_endpoint(request: Request) -> Response:
    if request.method == "POST":
        return await _post(request)
    return await _get(request)


async def _post(request: Request) -> Response:
    service = _service(request)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        return error_response(
            415, "unsupported_media_type", "send the request as Content-Type: application/json"
        )
    limit = service.node.settings.max_message_size
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return error_response(
                    413, "payload_too_large", f"request body over the {limit} byte limit"
                )
    except ClientDisconnect:
        return error_response(400, "incomplete_body", "the connection closed before the body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error_response(400, "invalid_json", f"body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return error_response(
            400, "invalid_body", 'body must be one request: {"query": ..., "variables": ...}'
        )
    return await _run(
        request, data.get("query"), data.get("variables"), data.get("operationName"), get=False
    )


async def _get(request: Request) -> Response:
    params = request.query_params
    if "query" not in params:
        if "text/html" in request.headers.get("accept", ""):
            return graphiql_page()
        return error_response(
            400,
            "missing_query",
            f"a GraphQL request: GET {GRAPHQL_PATH}?query=..., POST {GRAPHQL_PATH} with a JSON "
            f"body, or a WebSocket on {GRAPHQL_PATH} (graphql-transport-ws); GraphiQL for a "
            "browser",
        )
    raw = params.get("variables")
    try:
        variables = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return _refused(
            _service(request),
            RequestError.single("variables must be a JSON object", "invalid_request"),
            request,
        )
    return await _run(request, params["query"], variables, params.get("operationName"), get=True)


@router.get(
    GRAPHQL_SCHEMA_PATH,
    summary="The GraphQL schema, in the schema definition language",
    response_class=PlainTextResponse,
)
async def graphql_schema() -> PlainTextResponse:
    return PlainTextResponse(_SDL)
