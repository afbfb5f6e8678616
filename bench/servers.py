"""The servers under test, each started as its own process on a free loopback port.

* :class:`Aurigraph`: this repository's server (``aurigraph-stream serve``),
  fed through its real ingest API; :class:`AurigraphOff` the same with the
  flush governor off (``--no-latency-governor``); :class:`AurigraphRedis` on a
  Redis broker of its own (:class:`RedisProcess`), with one worker or
  (:class:`AurigraphRedis2`) two.
* :class:`WebsocketsRef`: :mod:`bench.refserver`, ``websockets.broadcast()``.
* :class:`Nchan`: nginx with the nchan module, configured in a temporary
  directory and run in the foreground (``daemon off``) as our own process.
* :class:`Floor`: :mod:`bench.floorserver`, the bare uvloop loop (one frame,
  ``transport.write`` on every subscriber): the floor a Python fan-out can reach.

Each is stopped by its PID. RSS and CPU are read from /proc for the process
and its children (nginx's workers).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, ClassVar

from bench.gcwatch import FREEZE_ENV
from bench.procstat import tree_cpu, tree_rss
from bench.publisher import Target

__all__ = [
    "SERVERS",
    "Aurigraph",
    "AurigraphOff",
    "AurigraphRedis",
    "AurigraphRedis2",
    "BenchServer",
    "Floor",
    "Nchan",
    "RedisProcess",
    "WebsocketsRef",
    "free_port",
]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
REDIS_BINARY = Path("/usr/bin/redis-server")  # Debian's redis-server (scripts/system-deps.sh)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _http_get_status(port: int, path: str) -> int:
    """Status of a plain GET, 0 when nothing answers (readiness probe)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
            )
            head = sock.recv(64)
    except OSError:
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _nofile_limit() -> int:
    """The open-file limit nginx may raise itself to (it cannot pass the hard limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1_048_576 if hard == resource.RLIM_INFINITY else hard


def _await_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], step: float
) -> str | None:
    """Poll ``ready()`` every ``step`` s until it holds (``None``), the process exits or
    ``STARTUP_TIMEOUT`` passes (what went wrong)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for _ in range(int(STARTUP_TIMEOUT / step) + 1):
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        if ready():
            return None
        if time.monotonic() > deadline:
            break
        time.sleep(step)
    return f"not ready within {STARTUP_TIMEOUT}s"


class BenchServer:
    """A server process under test."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    ready_path: ClassVar[str] = "/"

    def __init__(self, workdir: Path, source: Path | None = None) -> None:
        self.workdir = workdir
        self.source = source  # Aurigraph only: run the server from this source tree
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- what subclasses define ----------------------------------------------------
    def command(self, simulate: bool) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def ws_path(self, stream: str) -> str:
        return f"/ws/{stream}"

    def publish_target(self, stream: str, *, pipelined: bool = False) -> Target:
        """Where a publisher sends; ``pipelined``: one HTTP request per message, pipelined."""
        if pipelined:
            raise ValueError(f"{self.name} takes no HTTP publishing requests")
        return Target("ws", HOST, self.port, f"/publish/{stream}")

    def ready(self) -> bool:
        return _http_get_status(self.port, self.ready_path) > 0

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, *, simulate: bool = False) -> None:
        self.port = free_port()
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(simulate),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=self.env(),
        )
        problem = _await_ready(self.proc, self.ready, step=0.05)
        if problem is not None:
            self.stop()
            raise RuntimeError(f"{self.name} {problem}: {self.tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- measurements ---------------------------------------------------------------------
    def rss(self) -> int:
        return tree_rss(self.pid)

    def cpu(self) -> float:
        return tree_cpu(self.pid)


class Aurigraph(BenchServer):
    name = "aurigraph"
    label = "aurigraph-stream"
    ready_path = "/api/v11/streams"

    # Production settings, except what would stop one machine from playing 10,000 clients
    # (per-IP limits: every client here is 127.0.0.1) or that the references do not do
    # either (authentication). Flags the server does not have are left out, so older trees
    # run too.
    OPTIONAL_FLAGS: ClassVar[tuple[tuple[str, str | None], ...]] = (
        ("--auth", "none"),
        ("--no-ops-auth", None),  # prod keeps stats behind a token, which needs auth
        ("--handshake-rate", "0"),
        ("--max-connections-per-ip", "0"),
    )

    gc_watch = False  # run through bench.gcwatch, which logs garbage-collector pauses
    extra_args: tuple[str, ...] = ()  # more `serve` flags, for what-if runs
    gc_freeze = 0.0  # with gc_watch: gc.freeze() every this many seconds (what-if)

    def command(self, simulate: bool) -> list[str]:
        base = [sys.executable, "-m", "aurigraph_stream", "serve"]
        help_text = subprocess.run(
            [*base, "--help"], capture_output=True, text=True, env=self.env(), cwd=ROOT, timeout=60
        ).stdout
        if self.gc_watch:
            base = [sys.executable, "-m", "bench.gcwatch", "serve"]
        optional = [
            part
            for flag, value in self.OPTIONAL_FLAGS
            if re.search(rf"{re.escape(flag)}\b", help_text)
            for part in ((flag,) if value is None else (flag, value))
        ]
        return [
            *base,
            "--profile",
            "prod",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--max-connections",
            "30000",
            "--log-level",
            "WARNING",
            *optional,
            "--simulate" if simulate else "--no-simulate",
            *self.extra_args,
        ]

    def env(self) -> dict[str, str] | None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
        if self.source is not None:
            env["PYTHONPATH"] = os.pathsep.join((str(self.source / "src"), str(ROOT)))
        if self.gc_freeze > 0:
            env[FREEZE_ENV] = str(self.gc_freeze)
        return env

    def ready(self) -> bool:
        return _http_get_status(self.port, self.ready_path) == 200

    def publish_target(self, stream: str, *, pipelined: bool = False) -> Target:
        kind = "pipelined" if pipelined else "ingest"
        return Target(kind, HOST, self.port, f"/api/v11/streams/{stream}/events")


class AurigraphOff(Aurigraph):
    """Our server with the flush governor off: every flush at the end of its tick."""

    name = "aurigraph-off"
    label = "aurigraph-stream, governor off"

    def command(self, simulate: bool) -> list[str]:
        return [*super().command(simulate), "--no-latency-governor"]


class RedisProcess:
    """A redis-server of the run's own: a free loopback port, no persistence, stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """Why Redis cannot run here, or None if it can."""
        if not REDIS_BINARY.exists():
            return f"{REDIS_BINARY} missing (Debian package redis-server)"
        return None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.port = free_port()
        directory = self.workdir / f"redis-{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(REDIS_BINARY),
                "--port", str(self.port),
                "--bind", HOST,
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--logfile", str(directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        problem = _await_ready(self.proc, self._pong, step=0.02)
        if problem is not None:
            self.stop()
            raise RuntimeError(f"redis-server {problem} (answering PING)")

    def _pong(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def cpu(self) -> float:
        return tree_cpu(self.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class AurigraphRedis(Aurigraph):
    """Our server on a Redis broker of its own, with ``workers`` processes on one port."""

    name = "aurigraph-redis"
    label = "aurigraph-stream on Redis, 1 worker"
    workers = 1

    def __init__(self, workdir: Path, source: Path | None = None) -> None:
        super().__init__(workdir, source)
        self.redis = RedisProcess(workdir)

    def command(self, simulate: bool) -> list[str]:
        return [
            *super().command(simulate),
            "--broker-url",
            self.redis.url,
            "--workers",
            str(self.workers),
        ]

    def start(self, *, simulate: bool = False) -> None:
        self.redis.start()
        try:
            super().start(simulate=simulate)
        except BaseException:
            self.redis.stop()
            raise

    def stop(self) -> None:
        super().stop()
        self.redis.stop()


class AurigraphRedis2(AurigraphRedis):
    name = "aurigraph-redis-2w"
    label = "aurigraph-stream on Redis, 2 workers"
    workers = 2


class WebsocketsRef(BenchServer):
    name = "websockets"
    label = "websockets broadcast()"

    def command(self, simulate: bool) -> list[str]:
        return [sys.executable, "-m", "bench.refserver", "--host", HOST, "--port", str(self.port)]


class Floor(BenchServer):
    """The bare uvloop fan-out loop: what the event loop and the kernel cost, nothing more."""

    name = "floor"
    label = "bare uvloop loop"

    def command(self, simulate: bool) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.floorserver",
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]


NGINX_CONF = """\
load_module {module};
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections {nofile};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    nchan_shared_memory_size 256m;
    # One publisher connection carries every request of a run (nginx closes a
    # keep-alive connection after 1,000 by default).
    keepalive_requests 10000000;
    server {{
        listen {host}:{port} backlog=4096;
        location = / {{
            return 200 "nchan\\n";
        }}
        location ~ ^/publish/(\\w+)$ {{
            nchan_publisher websocket http;
            nchan_channel_id $1;
            nchan_message_buffer_length 100;
            nchan_message_timeout 60s;
        }}
        location ~ ^/ws/(\\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_deflate_message_for_websocket on;
        }}
    }}
}}
"""


class Nchan(BenchServer):
    """nginx + nchan; one worker process by default, like the single-process Python servers."""

    name = "nchan"
    label = "nginx + nchan"
    workers = 1

    @staticmethod
    def available() -> str | None:
        """Why nchan cannot run here, or None if it can."""
        if shutil.which("nginx") is None:
            return "nginx is not installed (Debian package nginx)"
        if not NCHAN_MODULE.exists():
            return f"{NCHAN_MODULE} missing (Debian package libnginx-mod-nchan)"
        return None

    def publish_target(self, stream: str, *, pipelined: bool = False) -> Target:
        if pipelined:  # nchan_publisher http: one POST per message, numbered by the publisher
            return Target("pipelined-post", HOST, self.port, f"/publish/{stream}")
        return super().publish_target(stream)

    def command(self, simulate: bool) -> list[str]:
        conf_dir = self.workdir / "nginx"
        conf_dir.mkdir(exist_ok=True)
        conf = conf_dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                module=NCHAN_MODULE,
                workers=self.workers,
                nofile=_nofile_limit(),
                dir=conf_dir,
                host=HOST,
                port=self.port,
            )
        )
        nginx = shutil.which("nginx") or "nginx"
        return [nginx, "-p", str(conf_dir), "-c", str(conf), "-e", str(conf_dir / "error.log")]


SERVERS: dict[str, type[BenchServer]] = {
    "aurigraph": Aurigraph,
    "websockets": WebsocketsRef,
    "nchan": Nchan,
    "floor": Floor,
    # Not in the default --servers: the scenarios that compare them start them themselves.
    "aurigraph-off": AurigraphOff,
    "aurigraph-redis": AurigraphRedis,
    "aurigraph-redis-2w": AurigraphRedis2,
}
