"""The live dashboard at ``/``: served from committed assets that match a fresh build,
under a strict CSP, and live in headless Chromium: charts and numbers move, the address
filter is the server's, and a server restart shows as a reconnect and an announced gap."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, WebSocket

from aurigraph_stream.dashboard.page import ASSETS
from tests.conftest import LIVE_ARGS
from tests.support.browser import PageWatch, chromium
from tests.support.server import ROOT, ServerProcess, free_port, run_server
from tests.support.streamtools import example_event

JS = ROOT / "clients" / "js"
ADDRESS = "0x" + "ab" * 20
# Chromium's own line when a WebSocket cannot connect (the server is down): the
# browser's network log, not an error of the page.
TPS = "figure[data-metric='tps']"
BROWSER_WS_FAILURE = re.compile(r"^console: WebSocket connection to 'ws://[^']+/ws' failed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _build_check(outdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", "scripts/build-dashboard.mjs", "--check", "--outdir", str(outdir)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_committed_assets_match_a_fresh_build(tmp_path: Path) -> None:
    """`make dashboard` would change nothing: the committed bundle is today's sources'
    build; a bundle that differs by one byte is reported as stale."""
    fresh = _build_check(ASSETS)
    assert fresh.returncode == 0, fresh.stderr
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS, copy)
    with (copy / "dashboard.js").open("ab") as bundle:
        bundle.write(b"\n")
    stale = _build_check(copy)
    assert stale.returncode == 1
    assert "dashboard.js" in stale.stderr


def test_page_and_assets_are_local_under_a_strict_csp(live_server: ServerProcess) -> None:
    """`/` carries a CSP of 'self' only (no inline script or style), and every asset it
    names is served by this server."""
    page = httpx.get(f"{live_server.http}/", timeout=10)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "connect-src 'self'", "script-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    refs = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    local = [r for r in refs if not r.startswith("data:")]
    assert {"/dashboard/assets/dashboard.js", "/dashboard/assets/dashboard.css"} <= set(local)
    for ref in local:
        url = urljoin(f"{live_server.http}/", ref)
        if urlsplit(url).path.startswith("/q/"):
            continue  # links to the documentation pages, tested with them
        asset = httpx.get(url, timeout=10)
        assert asset.status_code == 200, url
        assert asset.content, url


def _until(page: Page, check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``check`` (bounded) until it holds. The page's CSP forbids eval, so
    Playwright's wait_for_function cannot run there; this reads the DOM from here."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        if check():
            return
        if time.monotonic() > deadline:
            break
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _feed_has(page: Page, rows: int, timeout: float = 5.0) -> None:
    page.locator("#tx-feed tbody tr").nth(rows - 1).wait_for(timeout=timeout * 1000)


def _texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def _figures(page: Page) -> dict[str, tuple[str, str]]:
    """Each chart's shown value and the number of points it has been given."""
    out = {}
    for name in ("tps", "cpu", "memory", "errorRate"):
        figure = page.locator(f"figure[data-metric='{name}']")
        out[name] = (
            figure.locator("[data-value]").inner_text(),
            figure.get_attribute("data-received") or "0",
        )
    return out


def test_dashboard_is_live_in_chromium(live_server: ServerProcess, browser: Browser) -> None:
    """Within 5 s the four charts grow and their numbers are shown, consensus, validators
    (stake, uptime) and peers are filled, transactions flow; no console error, nothing
    requested from off the machine."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = PageWatch(page, live_server.port)
    page.goto(f"{live_server.http}/")
    page.wait_for_selector("#connection[data-state='connected']", timeout=10_000)
    _until(page, lambda: min(int(n) for _, n in _figures(page).values()) >= 2, "charts")
    first = _figures(page)
    first_round = page.locator("#consensus [data-field='round']").inner_text()
    most = max(int(n) for _, n in first.values())
    _until(page, lambda: min(int(n) for _, n in _figures(page).values()) > most, "new points")
    _until(
        page,
        lambda: page.locator("#consensus [data-field='round']").inner_text() != first_round,
        "a new consensus round",
    )
    later = _figures(page)
    assert all(value != "-" for value, _ in later.values()), later
    assert later["memory"][0] != "-"
    for field in ("epoch", "round", "state", "leader"):
        assert page.locator(f"#consensus [data-field='{field}']").inner_text() != "-"
    assert page.locator("#consensus [data-field='state']").inner_text() in (
        "PROPOSING",
        "VOTING",
        "COMMITTED",
        "VIEW_CHANGE",
    )
    page.wait_for_selector("#validators tbody tr", timeout=5_000)
    validator_rows = page.locator("#validators tbody tr")
    assert validator_rows.count() == 21  # the simulator's set, from the snapshot
    status, stake, uptime = (
        validator_rows.first.locator("td").nth(i).inner_text() for i in (1, 2, 3)
    )
    assert status in ("ACTIVE", "INACTIVE", "JAILED")
    assert int(stake.replace(",", "")) > 0
    assert 0 <= float(uptime) <= 100
    page.wait_for_selector("#peers tbody tr", timeout=5_000)
    assert page.locator("#peers tbody tr").count() >= 1
    _feed_has(page, 3)
    page.close()
    watch.check()


def test_address_filter_is_applied_by_the_server(
    live_server: ServerProcess, browser: Browser
) -> None:
    """With an address in the filter box, the page subscribes with that address as the
    server's filter, the server sends only transactions from or to it, and the feed shows
    only those, including ones published for it now."""
    page = browser.new_page()
    watch = PageWatch(page, live_server.port)
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: sent.append(orjson.loads(payload)))
        socket.on("framereceived", lambda payload: received.append(orjson.loads(payload)))

    page.on("websocket", on_socket)
    page.goto(f"{live_server.http}/")
    _feed_has(page, 3, timeout=10)
    typed = ADDRESS.upper().replace("0X", "0x")
    page.fill("#tx-filter", typed)
    page.wait_for_selector(f"#tx-filter-status[data-filter='{typed}']")
    event = example_event("transactions") | {"from": ADDRESS, "txHash": "0x" + "cd" * 32}
    for _ in range(3):
        response = httpx.post(
            f"{live_server.http}/api/v11/streams/transactions/events", json=event, timeout=10
        )
        assert response.status_code == 200
    _feed_has(page, 3)
    rows = page.locator("#tx-feed tbody tr")
    for i in range(rows.count()):
        row = rows.nth(i)
        assert ADDRESS in (row.get_attribute("data-from"), row.get_attribute("data-to"))
    subscribe = [c for c in sent if c.get("filter") == {"address": typed}]
    assert len(subscribe) == 1, sent
    sub_id = subscribe[0]["id"]
    mine = [f["data"] for f in received if f.get("type") == "message" and f["id"] == sub_id]
    assert len(mine) >= 3
    assert all(ADDRESS in (tx["from"].lower(), tx["to"].lower()) for tx in mine)
    page.fill("#tx-filter", "")  # back to everything: the simulator's transactions return
    others = f"#tx-feed tbody tr:not([data-from='{ADDRESS}']):not([data-to='{ADDRESS}'])"
    page.wait_for_selector(others, timeout=5_000)
    assert {"op": "unsubscribe", "id": sub_id} in sent
    page.close()
    watch.check()


def test_a_server_restart_shows_a_reconnect_then_a_gap_and_a_live_feed(
    browser: Browser, tmp_path: Path
) -> None:
    """The server stops (1001) and comes back on the same port with a new, empty history:
    the page says reconnecting, then announces the gap on each stream, and the feed and
    charts go on; no error of the page's own."""
    port = free_port()
    page = browser.new_page()
    with run_server(*LIVE_ARGS, tmp_path=tmp_path, port=port) as first:
        watch = PageWatch(page, port)
        page.goto(f"{first.http}/")
        page.wait_for_selector("#connection[data-state='connected']", timeout=10_000)
        _feed_has(page, 3, timeout=10)
        first.stop()
    page.wait_for_selector("#connection[data-state='reconnecting']", timeout=10_000)
    assert page.locator("#log li[data-kind='reconnecting']").count() >= 1
    with run_server(*LIVE_ARGS, tmp_path=tmp_path, port=port):
        page.wait_for_selector("#log li[data-kind='gap']", timeout=20_000)
        gaps = _texts(page, "#log li[data-kind='gap']")
        assert any("transactions: gap" in g for g in gaps), gaps
        page.wait_for_selector("#tx-feed tbody tr.gap", timeout=5_000)
        # After the gap row, new transactions of the new server arrive.
        newer = page.locator("#tx-feed tbody tr:has(~ tr.gap)")  # rows above the gap row
        _until(page, lambda: newer.count() >= 2, "transactions after the gap", timeout=10)
        received = int(page.locator(TPS).get_attribute("data-received") or 0)
        _until(
            page,
            lambda: int(page.locator(TPS).get_attribute("data-received") or 0) > received,
            "the charts to go on",
        )
        assert page.locator("#connection").get_attribute("data-state") != "closed"
    page.close()
    watch.errors = [e for e in watch.errors if not BROWSER_WS_FAILURE.match(e)]
    watch.failed = [f for f in watch.failed if "/ws" not in f]
    watch.check()
