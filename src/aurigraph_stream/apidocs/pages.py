"""API documentation, all served from this process: nothing comes from a CDN.

- ``/q/openapi``: FastAPI's OpenAPI document, completed here: the ingest
  route appears once per stream with that stream's event schema (the one
  ingest validates with) and examples, and every error answer is described
  by the ``Error`` schema the server really sends.
- ``/q/swagger-ui``: Swagger UI, from the ``swagger-ui-bundle-v2`` package's files.
- ``/q/asyncapi`` (JSON) and ``/q/asyncapi.yaml`` (or ``?format=yaml``):
  the AsyncAPI 3 document of the WebSocket streams (:mod:`.asyncapi`).
- ``/q/dev/``: a page for people: each stream, its schema, an example, and
  live connection counts read from the stats endpoint.
- GraphiQL, served at ``/graphql`` to browsers (``http/graphql.py`` decides):
  the bundle built from npm's ``graphiql`` (``scripts/graphiql/``) and
  committed under ``assets/graphiql/``, with the example operations as tabs.

The HTML pages carry a Content-Security-Policy that allows only this origin,
so a browser would refuse to load anything from elsewhere.
"""

from __future__ import annotations

import copy
import html
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from aurigraph_stream import __version__
from aurigraph_stream.apidocs.asyncapi import CLOSE_CODES, QUERY_PARAMETERS, build_asyncapi
from aurigraph_stream.contract import GRAPHQL_PATH, GRAPHQL_SCHEMA_PATH
from aurigraph_stream.gql.examples import EXAMPLES
from aurigraph_stream.streams import REGISTRY

__all__ = ["graphiql_page", "install_docs", "router"]

ASSETS = Path(str(files("aurigraph_stream.apidocs") / "assets"))
INGEST_PATH = "/api/v11/streams/{stream}/events"

CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# GraphiQL's stylesheet carries its fonts inline (data: URLs).
GRAPHIQL_CSP = CSP.replace("img-src 'self' data:;", "img-src 'self' data:; font-src 'self' data:;")

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every error answer: a machine-readable slug and a sentence for people.",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "Machine-readable slug."},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "field": {"type": "string", "description": "validation_failed: JSON path of the field."},
        "index": {
            "type": ["integer", "null"],
            "description": "validation_failed: position of the event in the batch.",
        },
    },
}

INGEST_RESULT: dict[str, Any] = {
    "title": "IngestResult",
    "type": "object",
    "required": ["stream", "accepted", "seqs"],
    "properties": {
        "stream": {"type": "string"},
        "accepted": {"type": "integer", "minimum": 1, "description": "Events broadcast."},
        "seqs": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "description": "The seq assigned to each event, in order.",
        },
    },
}

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


# -- OpenAPI ------------------------------------------------------------------
def _describe_errors(operation: dict[str, Any]) -> None:
    """Give every 4xx/5xx answer of ``operation`` the Error body, unless it has its own."""
    for code, answer in operation.get("responses", {}).items():
        if not str(code).startswith(("4", "5")):
            continue
        content = answer.setdefault("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        if not schema or schema.get("$ref", "").endswith("/HTTPValidationError"):
            content["application/json"] = {"schema": _ERROR_REF}


def _ingest_operations(schema: dict[str, Any]) -> None:
    """Replace ``POST /api/v11/streams/{stream}/events`` by one operation per stream."""
    paths: dict[str, Any] = schema["paths"]
    template = paths.pop(INGEST_PATH, {}).get("post")
    if template is None:
        return
    components = schema["components"]["schemas"]
    components["IngestResult"] = INGEST_RESULT
    for name, spec in REGISTRY.items():
        title = str(spec.event_schema["title"])
        components[title] = copy.deepcopy(dict(spec.event_schema))
        ref = {"$ref": f"#/components/schemas/{title}"}
        example = {k: v for k, v in spec.example.items() if k != "seq"}
        op = copy.deepcopy(template)
        op["operationId"] = f"publish_{name}_events"
        op["summary"] = f"Publish {name} events: one, or a batch (JSON array)"
        op["description"] = (
            f"Validates each event against `{title}` and broadcasts them in order on "
            f"`{spec.path}`; `seq` is assigned by the server. Nothing of a request with an "
            "invalid event is broadcast."
        )
        params = [p for p in op.get("parameters", []) if p.get("name") != "stream"]
        if params:
            op["parameters"] = params
        else:
            op.pop("parameters", None)
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [ref, {"type": "array", "minItems": 1, "items": ref}],
                    },
                    "examples": {
                        "one": {"summary": "One event", "value": example},
                        "batch": {"summary": "A batch of two", "value": [example, example]},
                    },
                }
            },
        }
        ok = op.setdefault("responses", {}).setdefault("200", {"description": "Broadcast"})
        ok["content"] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}
        }
        paths[f"/api/v11/streams/{name}/events"] = {"post": op}


def complete_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Patch FastAPI's generated document in place (see the module docstring)."""
    schema["info"]["description"] = (
        f"{schema['info'].get('description', '')}\n\nThis document covers the HTTP API. "
        "The WebSocket streams are described by the AsyncAPI document at "
        "[/q/asyncapi](/q/asyncapi) ([YAML](/q/asyncapi.yaml)) and, for people, on "
        "[/q/dev/](/q/dev/)."
    ).lstrip()
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    _ingest_operations(schema)
    for path, item in schema["paths"].items():
        for operation in item.values():
            if "{stream}" in path:
                operation["responses"].setdefault("404", {"description": "No stream by that name"})
            _describe_errors(operation)
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's, now unreferenced
        if f"#/components/schemas/{unused}".encode() not in orjson.dumps(schema):
            components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete_openapi(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- pages --------------------------------------------------------------------
def _page(body: str, title: str, csp: str = CSP) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{html.escape(title)}</title>\n{body}\n</html>\n",
        headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"},
    )


def graphiql_page() -> HTMLResponse:
    """GraphiQL on ``/graphql``, from this server's files, with the example operations as tabs.

    Paths are relative to ``/graphql``; the examples are a JSON data block
    (not a script: nothing inline runs), read by ``graphiql/graphiql.js``.
    """
    tabs = orjson.dumps([example.tab() for example in EXAMPLES]).decode()
    tabs = tabs.replace("<", "\\u003c")  # no "</script>" can end the block early
    endpoint = GRAPHQL_PATH.lstrip("/")
    return _page(
        "<link rel='stylesheet' href='q/assets/graphiql/graphiql.css'>\n"
        "<link rel='icon' href='data:,'>\n"
        "<style>html, body, #graphiql { height: 100%; margin: 0; }</style>\n"
        f"</head>\n<body data-endpoint='{endpoint}'>\n"
        "<div id='graphiql'>Loading GraphiQL...</div>\n"
        f"<script type='application/json' id='examples'>{tabs}</script>\n"
        "<script src='q/assets/graphiql/graphiql.js'></script>\n</body>",
        "Aurigraph Stream: GraphQL",
        GRAPHIQL_CSP,
    )


def swagger_page() -> HTMLResponse:
    return _page(
        "<link rel='stylesheet' href='swagger-ui/static/swagger-ui.css'>\n"
        "<link rel='icon' type='image/png' href='swagger-ui/static/favicon-32x32.png'>\n"
        "</head>\n<body data-openapi-url='openapi'>\n<div id='swagger-ui'></div>\n"
        "<script src='swagger-ui/static/swagger-ui-bundle.js'></script>\n"
        "<script src='assets/swagger-init.js'></script>\n</body>",
        "Aurigraph Stream API",
    )


def _json_block(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return f"<pre class='json'>{html.escape(text)}</pre>"


def dev_page(host: str, scheme: str) -> HTMLResponse:
    rows = []
    sections = []
    for name, spec in REGISTRY.items():
        n = html.escape(name)
        rows.append(
            f"<tr><td><a href='#stream-{n}'>{n}</a></td><td><code>{spec.path}</code></td>"
            f"<td>{html.escape(spec.trigger)}</td>"
            f"<td class='num' data-stream='{n}' data-stat='connections'>-</td>"
            f"<td class='num' data-stream='{n}' data-stat='messagesSent'>-</td>"
            f"<td class='num' data-stream='{n}' data-stat='p99'>-</td></tr>"
        )
        params = {**QUERY_PARAMETERS.get("*", {}), **QUERY_PARAMETERS.get(name, {})}
        query = (
            "".join(
                f"<li><code>{html.escape(p)}</code>: "
                f"{html.escape(str(s.get('description', s.get('type', ''))))}</li>"
                for p, s in params.items()
            )
            if params
            else "<li>none: any given are ignored</li>"
        )
        url = f"{scheme}://{host}{spec.path}"
        sections.append(
            f"<section id='stream-{n}'>\n<h2>{n} <code>{spec.path}</code></h2>\n"
            f"<p>Sent {html.escape(spec.trigger)}. Open now: "
            f"<strong data-stream='{n}' data-stat='connections'>-</strong>.</p>\n"
            f"<p>Try it: <code>wscat -c {html.escape(url)}</code></p>\n"
            f"<p><button type='button' data-watch='{n}' data-path='{spec.path}'>Watch live"
            f"</button> <span class='status' data-watch-status='{n}'></span></p>\n"
            f"<pre class='live' data-live='{n}' hidden></pre>\n"
            f"<h3>Query parameters</h3>\n<ul>{query}</ul>\n"
            f"<h3>Example message</h3>\n{_json_block(dict(spec.example))}\n"
            f"<details><summary>JSON Schema of the messages</summary>\n"
            f"{_json_block(dict(spec.message_schema))}</details>\n</section>"
        )
    codes = "".join(
        f"<tr><td>{c['code']}</td><td>{c['name']}</td><td>{html.escape(c['reason'])}</td>"
        f"<td>{'yes' if c['reconnect'] else 'no'}</td></tr>"
        for c in CLOSE_CODES
    )
    body = f"""<link rel='stylesheet' href='../assets/dev.css'>
<link rel='icon' href='data:,'>
</head>
<body data-stats-url='../../api/v11/websocket/stats'>
<header>
<h1>Aurigraph Stream <small>{__version__}</small></h1>
<p>Five WebSocket streams. Machine-readable: <a href='../asyncapi'>AsyncAPI (JSON)</a>,
<a href='../asyncapi.yaml'>AsyncAPI (YAML)</a>, <a href='../openapi'>OpenAPI</a>;
<a href='../swagger-ui'>Swagger UI</a> for the HTTP API;
GraphQL: <a href='../..{GRAPHQL_PATH}'>GraphiQL</a> (queries and subscriptions over the
same streams), <a href='../..{GRAPHQL_SCHEMA_PATH}'>schema</a>;
<a href='../health'>health</a>, <a href='../metrics'>Prometheus metrics</a>,
<a href='../../api/v11/websocket/stats'>stats</a>.</p>
</header>
<main>
<section>
<h2>Streams</h2>
<table id='streams'>
<thead><tr><th>stream</th><th>path</th><th>sent</th><th>open connections</th>
<th>messages sent</th><th>p99 latency, ms</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
<p class='status' id='stats-status'>loading live figures...</p>
</section>
{"".join(sections)}
<section id='close-codes'>
<h2>Close codes</h2>
<table><thead><tr><th>code</th><th>name</th><th>reason</th><th>reconnect?</th></tr></thead>
<tbody>{codes}</tbody></table>
</section>
</main>
<script src='../assets/dev.js'></script>
</body>"""
    return _page(body, "Aurigraph Stream: WebSocket streams")


def _host_and_scheme(request: Request) -> tuple[str, str]:
    """``host:port`` and ws/wss as the client sees this server (nginx sets the headers)."""
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    forwarded = request.headers.get("x-forwarded-proto", request.url.scheme)
    return host, "wss" if forwarded in ("https", "wss") else "ws"


router = APIRouter(tags=["documentation"])

_ASYNCAPI_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The AsyncAPI 3.0.0 document",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            # A YAML body parses to the same object as the JSON one.
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}


@router.get(
    "/q/asyncapi",
    summary="AsyncAPI 3 document of the WebSocket streams (JSON; ?format=yaml for YAML)",
    response_class=JSONResponse,
    responses=_ASYNCAPI_RESPONSES,
)
async def asyncapi(request: Request, format: Literal["json", "yaml"] = Query("json")) -> Response:
    host, scheme = _host_and_scheme(request)
    doc = build_asyncapi(host, scheme)
    if format == "yaml":
        return _yaml(doc)
    return JSONResponse(doc)


@router.get(
    "/q/asyncapi.yaml",
    summary="AsyncAPI 3 document of the WebSocket streams (YAML)",
    response_class=Response,
    responses={
        200: {
            "description": "The AsyncAPI 3.0.0 document",
            "content": {"application/yaml": {"schema": {"type": "object"}}},
        }
    },
)
async def asyncapi_yaml(request: Request) -> Response:
    host, scheme = _host_and_scheme(request)
    return _yaml(build_asyncapi(host, scheme))


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the Markdown descriptions) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(doc: dict[str, Any]) -> Response:
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return Response(text, media_type="application/yaml")


@router.get("/q/swagger-ui", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return swagger_page()


@router.get("/q/dev/", include_in_schema=False)
async def dev(request: Request) -> HTMLResponse:
    host, scheme = _host_and_scheme(request)
    return dev_page(host, scheme)


def install_docs(app: FastAPI) -> None:
    """Add the documentation routes and their local assets to ``app``."""
    install_openapi(app)
    app.include_router(router)
    app.mount("/q/swagger-ui/static", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    app.mount("/q/assets", StaticFiles(directory=ASSETS), name="assets")
