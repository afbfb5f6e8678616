"""/q/openapi, /q/swagger-ui, /q/asyncapi and /q/dev/ on a real server, and both pages in
headless Chromium: no error, and nothing requested from anywhere but this machine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from playwright.sync_api import Browser
from websockets.sync.client import connect

from aurigraph_stream.contract import COMMAND_SCHEMA, MUX_PATH, CloseCode
from aurigraph_stream.streams import REGISTRY
from tests.support.browser import PageWatch, chromium
from tests.support.rawws import RawWebSocket
from tests.support.server import ROOT, ServerProcess, run_server
from tests.support.streamtools import example_event

ASYNCAPI_SCHEMA = (
    ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
)


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No simulator; the sampler publishes /ws/metrics every 0.2 s so pages have a live stream."""
    with run_server(
        "--no-simulate",
        "--metrics-interval",
        "0.2",
        "--log-level",
        "INFO",
        tmp_path=tmp_path_factory.mktemp("docs"),
    ) as server:
        yield server


def _get(server: ServerProcess, path: str) -> httpx.Response:
    response = httpx.get(f"{server.http}{path}", timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response


# -- OpenAPI --------------------------------------------------------------------
def test_openapi_documents_every_http_endpoint(docs_server: ServerProcess) -> None:
    """Health, stats, metrics, AsyncAPI, the stream list and the ingest API are all in
    /q/openapi; ingest once per stream with exactly the schema it validates with."""
    doc = _get(docs_server, "/q/openapi").json()
    assert doc["openapi"].startswith("3.1")
    paths = set(doc["paths"])
    expected = {
        "/q/health",
        "/q/health/live",
        "/q/health/ready",
        "/api/v11/websocket/stats",
        "/q/metrics",
        "/q/asyncapi",
        "/q/asyncapi.yaml",
        "/api/v11/streams",
        "/api/v11/streams/{stream}/schema",
        *(f"/api/v11/streams/{name}/events" for name in REGISTRY),
        "/graphql",
        "/graphql/schema.graphql",
    }
    assert expected <= paths, expected - paths
    components = doc["components"]["schemas"]
    for name, spec in REGISTRY.items():
        post = doc["paths"][f"/api/v11/streams/{name}/events"]["post"]
        body = post["requestBody"]["content"]["application/json"]
        ref = body["schema"]["oneOf"][0]["$ref"]
        assert components[ref.rsplit("/", 1)[1]] == spec.event_schema
        assert body["schema"]["oneOf"][1]["items"]["$ref"] == ref  # or a batch of them
        spec.validate(body["examples"]["one"]["value"])
        error = post["responses"]["422"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in components  # every error is documented as sent
    for old in ("/openapi.json", "/docs", "/redoc"):  # moved under /q/
        assert httpx.get(f"{docs_server.http}{old}").status_code == 404


def test_swagger_ui_is_served_from_local_assets(docs_server: ServerProcess) -> None:
    """The Swagger UI page refers only to this server's own files, and each of them loads."""
    page = _get(docs_server, "/q/swagger-ui")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    refs = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert len(refs) >= 3
    base = f"{docs_server.http}/q/swagger-ui"
    for ref in refs:
        url = urljoin(base, ref)
        assert urlsplit(url).netloc == f"127.0.0.1:{docs_server.port}", ref
        asset = httpx.get(url, timeout=10)
        assert asset.status_code == 200, url
        assert asset.content, url
    bundle = httpx.get(f"{docs_server.http}/q/swagger-ui/static/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content


# -- AsyncAPI -------------------------------------------------------------------
def test_asyncapi_document_is_valid_and_matches_the_server(docs_server: ServerProcess) -> None:
    """/q/asyncapi validates against the AsyncAPI 3.0.0 JSON Schema and carries the five
    channels and /ws with its commands, the server's own message and command schemas,
    valid examples and every close code."""
    doc: dict[str, Any] = _get(docs_server, "/q/asyncapi").json()
    validator = Draft7Validator(orjson.loads(ASYNCAPI_SCHEMA.read_bytes()))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert not validator.is_valid({k: v for k, v in doc.items() if k != "info"})  # it can fail
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["this"] == {
        "host": f"127.0.0.1:{docs_server.port}",
        "protocol": "ws",
        "description": "The server that served this document.",
    }
    paths = {s.path for s in REGISTRY.values()} | {MUX_PATH}
    assert {c["address"] for c in doc["channels"].values()} == paths
    for op, schema in COMMAND_SCHEMA["$defs"].items():
        # The commands /ws validates with, verbatim, as the messages a client sends there.
        assert doc["components"]["schemas"][schema["title"]] == schema
        assert doc["operations"][f"ws-{op}"]["action"] == "receive"
        assert schema["title"] in doc["channels"]["ws"]["messages"]
    for name, spec in REGISTRY.items():
        channel = doc["channels"][name]
        assert channel["bindings"]["ws"]["method"] == "GET"
        assert channel["bindings"]["ws"]["query"]["type"] == "object"
        title = spec.message_schema["title"]
        assert doc["components"]["schemas"][title] == spec.message_schema
        message = doc["components"]["messages"][title]
        assert message["payload"] == {"$ref": f"#/components/schemas/{title}"}
        for example in message["examples"]:
            Draft202012Validator(spec.message_schema).validate(example["payload"])
        assert doc["operations"][name]["action"] == "send"
    assert [c["code"] for c in doc["x-close-codes"]] == [int(c) for c in CloseCode]
    for code in CloseCode:
        assert f"| {int(code)} | {code.name} |" in doc["info"]["description"]
    # The GraphQL endpoint of the same streams, linked.
    graphql = doc["info"]["externalDocs"]["url"]
    assert graphql == f"http://127.0.0.1:{docs_server.port}/graphql"
    assert httpx.get(graphql, headers={"Accept": "text/html"}).status_code == 200
    assert "[/graphql/schema.graphql](/graphql/schema.graphql)" in doc["info"]["description"]


def test_asyncapi_yaml_is_the_same_document(docs_server: ServerProcess) -> None:
    """/q/asyncapi.yaml and /q/asyncapi?format=yaml parse to the JSON document."""
    as_json = _get(docs_server, "/q/asyncapi").json()
    for path in ("/q/asyncapi.yaml", "/q/asyncapi?format=yaml"):
        response = _get(docs_server, path)
        assert response.headers["content-type"].startswith("application/yaml")
        assert yaml.safe_load(response.text) == as_json
    bad = httpx.get(f"{docs_server.http}/q/asyncapi?format=xml")
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_request"


def test_dev_page_lists_every_stream_with_schema_and_example(docs_server: ServerProcess) -> None:
    """/q/dev/ shows each stream's path, example message and schema, and the close codes."""
    page = _get(docs_server, "/q/dev/").text
    for name, spec in REGISTRY.items():
        assert f"<code>{spec.path}</code>" in page
        assert f"data-stream='{name}' data-stat='connections'" in page
        assert f"&quot;{next(iter(spec.example))}&quot;" in page  # the example, escaped
        assert f"&quot;title&quot;: &quot;{spec.message_schema['title']}&quot;" in page
    for code in CloseCode:
        assert f"<td>{int(code)}</td><td>{code.name}</td>" in page
    assert "<a href='../../graphql'>GraphiQL</a>" in page
    assert "<a href='../../graphql/schema.graphql'>schema</a>" in page


# -- in a browser ---------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright; nothing is downloaded."""
    with chromium() as launched:
        yield launched


def test_swagger_ui_renders_and_publishes_in_chromium(
    docs_server: ServerProcess, browser: Browser
) -> None:
    """Swagger UI renders every operation, and "Try it out" on the transactions ingest
    publishes the example event, which a WebSocket client receives."""
    operations = sum(len(item) for item in _get(docs_server, "/q/openapi").json()["paths"].values())
    page = browser.new_page()
    watch = PageWatch(page, docs_server.port)
    with connect(docs_server.ws("/ws/transactions")) as subscriber:
        page.goto(f"{docs_server.http}/q/swagger-ui")
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() == operations
        block = page.locator("#operations-ingest-publish_transactions_events")
        block.locator(".opblock-summary").click()
        block.locator(".try-out__btn").click()
        block.locator(".execute").click()
        status = block.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=15_000)
        assert status.inner_text().strip().startswith("200")
        received = orjson.loads(subscriber.recv(timeout=10))
    assert {k: v for k, v in received.items() if k != "seq"} == example_event("transactions")
    page.close()
    watch.check()


def test_dev_page_shows_live_counts_and_messages_in_chromium(
    docs_server: ServerProcess, browser: Browser
) -> None:
    """/q/dev/ shows the open connection count from the stats endpoint and, on "Watch
    live", messages of the stream as they arrive."""
    page = browser.new_page()
    watch = PageWatch(page, docs_server.port)
    with RawWebSocket(docs_server.port) as one, RawWebSocket(docs_server.port) as two:
        one.open("/ws/network")
        two.open("/ws/network")
        page.goto(f"{docs_server.http}/q/dev/")
        page.wait_for_selector("#stats-status[data-loaded='true']", timeout=15_000)
        cell = page.locator("td[data-stream='network'][data-stat='connections']")
        assert cell.inner_text() == "2"
        page.click("button[data-watch='metrics']")
        page.wait_for_selector("[data-watch-status='metrics'][data-received]", timeout=15_000)
        shown = orjson.loads(page.locator("pre[data-live='metrics']").inner_text())
        assert set(shown) == set(REGISTRY["metrics"].message_schema["properties"])
        page.click("button[data-watch='metrics']")  # stop watching: closes with 1000
        page.wait_for_selector(
            "[data-watch-status='metrics']:has-text('closed (1000)')", timeout=10_000
        )
    page.close()
    watch.check()
