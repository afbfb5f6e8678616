"""Headless Chromium for page tests: Debian's /usr/bin/chromium driven by Playwright (nothing
is downloaded), and a watch on a page that fails the test if it logs an error, a request
fails, or anything is requested from off this machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "PageWatch", "chromium"]

CHROMIUM = "/usr/bin/chromium"
# What this machine needs: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, until the block ends."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/system-deps.sh)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class PageWatch:
    """Everything a page did that a test must see: errors and where it went."""

    def __init__(self, page: Page, port: int) -> None:
        self.errors: list[str] = []
        self.off_machine: list[str] = []
        self.failed: list[str] = []
        self.origin = f"127.0.0.1:{port}"
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.route("**/*", self._route)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _failed(self, request: Request) -> None:
        self.failed.append(f"{request.url}: {request.failure}")

    def _route(self, route: Route) -> None:
        netloc = urlsplit(route.request.url).netloc
        if route.request.url.startswith("data:") or netloc == self.origin:
            route.continue_()
        else:  # never let it out, and fail the test
            self.off_machine.append(route.request.url)
            route.abort()

    def check(self) -> None:
        assert self.off_machine == [], self.off_machine
        assert self.errors == [], self.errors
        assert self.failed == [], self.failed
