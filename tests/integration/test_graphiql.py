"""GraphiQL at /graphql: served from this server's files, the committed bundle is what the
build makes from package-lock.json, its licences allow it, and in Chromium it loads with the
example tabs and runs a query and a subscription, with no request leaving the machine."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from aurigraph_stream.gql.examples import EXAMPLES
from tests.support.browser import PageWatch, chromium
from tests.support.server import ROOT, ServerProcess
from tests.support.streamtools import address, open_server, publish, tx

ASSETS = ROOT / "src" / "aurigraph_stream" / "apidocs" / "assets" / "graphiql"
BUNDLE = ("graphiql.js", "graphiql.css", "LICENSES.txt")
PERMISSIVE = {"MIT", "ISC", "0BSD", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0"}
ETHER = 10**18


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with open_server(tmp_path_factory.mktemp("graphiql")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_committed_bundle_is_a_fresh_build(tmp_path: Path) -> None:
    """node scripts/graphiql/build.mjs, from the locked npm packages, makes exactly the
    committed files; rebuild and commit them when this fails."""
    subprocess.run(
        ["node", "scripts/graphiql/build.mjs", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    for name in BUNDLE:
        assert (tmp_path / name).read_bytes() == (ASSETS / name).read_bytes(), name


def test_every_bundled_package_has_a_permissive_licence() -> None:
    """LICENSES.txt lists each package in the bundle with its licence, all permissive."""
    text = (ASSETS / "LICENSES.txt").read_text()
    licences = re.findall(r"^License: (.+)$", text, re.MULTILINE)
    assert len(licences) > 50
    assert set(licences) <= PERMISSIVE, set(licences) - PERMISSIVE
    for name in ("graphiql@", "react@", "graphql@", "graphql-ws@", "codemirror@"):
        assert f"\n{name}" in text or text.startswith(name), name


def test_graphiql_page_is_served_from_this_server(server: ServerProcess) -> None:
    """A browser's GET /graphql is GraphiQL: its assets are local and load, the CSP allows
    only this origin, and the example operations are in the page."""
    page = httpx.get(f"{server.http}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    refs = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    for ref in (r for r in refs if not r.startswith("data:")):
        url = urljoin(f"{server.http}/graphql", ref)
        assert urlsplit(url).netloc == f"127.0.0.1:{server.port}", ref
        assert httpx.get(url).status_code == 200, url
    block = re.search(r"<script type='application/json' id='examples'>(.*?)</script>", page.text)
    assert block is not None
    assert orjson.loads(block.group(1)) == [example.tab() for example in EXAMPLES]


def _run_tab(page: Page, name: str) -> None:
    """Open the tab of operation ``name`` and press run.

    GraphiQL takes the operation's name from the editor a moment after a tab opens (and
    then stores it): a run before that would name the previous tab's operation.
    """
    page.locator(".graphiql-tab", has_text=name).click()
    page.wait_for_function(
        f"() => localStorage.getItem('graphiql:operationName') === '{name}'", timeout=10_000
    )
    page.locator(".graphiql-execute-button").click()


def _result(page: Page) -> str:
    return page.locator(".result-window").inner_text().replace("\xa0", " ")


def test_graphiql_runs_a_query_and_a_subscription_in_chromium(
    server: ServerProcess, browser: Browser
) -> None:
    """GraphiQL opens with the five example tabs, runs the current-state query over HTTP and
    the large-transactions subscription over graphql-transport-ws, which shows a transaction
    published meanwhile; every request stays on this machine."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    watch = PageWatch(page, server.port)
    page.goto(f"{server.http}/graphql")
    page.wait_for_selector(".graphiql-container", timeout=15_000)
    tabs = page.locator(".graphiql-tab")
    names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
    assert names == [
        "CurrentState",
        "RecentTransactions",
        "LargeTransactions",
        "Consensus",
        "PublishTransaction",
    ]
    shown = ""
    # GraphiQL takes the operation name from the editor a moment after a tab opens: a run
    # before that names the previous tab's operation, and is simply run again.
    for _ in range(20):
        _run_tab(page, "CurrentState")
        page.locator(".result-window:has-text('{')").wait_for(timeout=10_000)
        shown = _result(page)
        if '"position"' in shown:
            break
    assert '"validators"' in shown
    small, large = tx(1, address(1), address(2), "1"), tx(2, address(1), address(2), str(ETHER))
    for _ in range(40):  # until the subscription shows the large transaction (bounded)
        if (
            "unknown_operation" in shown
            or "LargeTransactions" not in page.locator(".graphiql-tab-active").inner_text()
        ):
            _run_tab(page, "LargeTransactions")
        publish(server, "transactions", [small, large])
        try:
            page.locator(".result-window:has-text('txHash')").wait_for(timeout=500)
        except PlaywrightTimeout:
            shown = _result(page)
            continue
        shown = _result(page)
        break
    assert large["txHash"] in shown
    assert small["txHash"] not in shown
    page.close()
    watch.check()
