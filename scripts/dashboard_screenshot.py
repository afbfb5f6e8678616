"""Take the README's screenshot of the live dashboard (docs/images/dashboard.png).

Starts the server with the simulated network on a free loopback port, opens ``/`` in
Debian's headless Chromium (Playwright, from the test extras), waits until the charts
hold a minute of points, and saves a PNG. Run it from the repository root with the
test environment: ``.venv/bin/python scripts/dashboard_screenshot.py [OUT.png]``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "dashboard.png"
CHROMIUM = "/usr/bin/chromium"
POINTS = 60  # metrics messages on each chart before the picture is taken


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise SystemExit(f"the server did not answer {url} within {timeout}s")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aurigraph_stream",
            "serve",
            "--port",
            str(port),
            "--profile",
            "dev",
            "--simulate",
            "--seed",
            "11",
            "--metrics-interval",
            "0.25",
            "--sim-tx-rate",
            "40",
            "--sim-block-time",
            "0.5",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(f"{base}/api/v11/streams", server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/")
            tps = page.locator("figure[data-metric='tps']")
            for _ in range(600):  # at most 60 s
                if int(tps.get_attribute("data-received") or 0) >= POINTS:
                    break
                page.wait_for_timeout(100)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(20)
    print(out)


if __name__ == "__main__":
    main()
