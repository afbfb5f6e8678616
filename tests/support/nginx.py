"""Debian's nginx, run as the test's own process with deploy/nginx/aurigraph.conf.

The shipped file is templated for the test, and only where a machine differs:
the listening port, the upstream nodes' ports, and the paths nginx writes to
(pid, logs, temporary files, all in the test's directory). Every other line,
the WebSocket location, the headers, the rate limit and the timeouts, is the
file as shipped. nginx runs in the foreground (``daemon off``) and is stopped
by its PID.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.server import ROOT, free_port

__all__ = ["CONF", "NginxProcess", "render", "run_nginx"]

CONF = ROOT / "deploy" / "nginx" / "aurigraph.conf"


def render(upstreams: list[int], port: int, directory: Path) -> str:
    """The shipped configuration, listening on ``port``, in front of ``upstreams``."""
    text = CONF.read_text()
    servers = "".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in upstreams
    )
    text, n = re.subn(r"(?m)^\s*server 127\.0\.0\.1:\d+ [^\n]*\n", "", text)
    assert n >= 1, "no upstream server lines in the shipped configuration"
    text = text.replace("        least_conn;", "        least_conn;\n" + servers.rstrip("\n"), 1)
    text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", text)
    assert n == 1, "no 'listen 80;' in the shipped configuration"
    main = f"daemon off;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log info;\n"
    paths = "".join(
        f"    {kind}_temp_path {directory}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    http = f"http {{\n    access_log {directory}/access.log;\n{paths}"
    assert "http {\n" in text
    return main + text.replace("http {\n", http, 1)


@dataclass
class NginxProcess:
    proc: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def run_nginx(directory: Path, upstreams: list[int]) -> Iterator[NginxProcess]:
    """nginx with the shipped configuration in front of ``upstreams``, until the block ends."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "aurigraph.conf"
    conf.write_text(render(upstreams, port, directory))
    log = (directory / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [nginx, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = NginxProcess(proc, port, directory)
    try:
        deadline = time.monotonic() + 15
        for _ in range(1000):
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {server.error_log()}")
            try:
                httpx.get(f"{server.http}/q/health/live", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx not answering: {server.error_log()}") from None
                time.sleep(0.02)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown, workers included
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
