"""``--workers N``: N server processes on one port, each fed by the shared broker.

The parent only supervises: it starts N workers, replaces one that dies (each
on its own back-off, so one that keeps dying delays no other), and on SIGTERM or
SIGINT tells each to drain, then waits for them. Each worker is
a whole server (node, hub, broker reader, WebSockets, HTTP) that binds the
port itself with ``SO_REUSEPORT``, so the kernel spreads new connections over
the workers and no process hands sockets to another. The broker must be
shared (``redis://``): it gives every worker the same seq order and history
(config.py refuses ``memory://`` with more than one worker).

A worker started by the parent knows its node (the parent) and its index, so
the operator endpoints can add up the figures of every worker of the node
(``ops/workers.py``).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import threading
import time
from types import FrameType

from aurigraph_stream.config import Settings
from aurigraph_stream.node.identity import WorkerIdentity

__all__ = ["bind_shared", "serve_workers"]

logger = logging.getLogger("aurigraph_stream.workers")

RESTART_BACKOFF_MAX = 10.0  # seconds between restarts of a worker that keeps dying at start


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT: every worker binds one on the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(settings: Settings, identity: WorkerIdentity) -> None:
    """One worker process: a whole server on its own SO_REUSEPORT socket."""
    from aurigraph_stream.ops.logs import configure_logging
    from aurigraph_stream.server import build_server

    configure_logging(settings)
    _exit_with_parent()
    sock = bind_shared(settings.host, settings.port)
    server = build_server(settings, identity)
    logging.getLogger("aurigraph_stream.workers").info(
        "worker started", extra={"worker": identity.index, "pid": os.getpid()}
    )
    server.run(sockets=[sock])
    raise SystemExit(0 if server.started else 1)


def _exit_with_parent() -> None:
    """Drain (SIGTERM to itself) if the parent dies without telling: a worker never
    outlives its supervisor, even one killed with SIGKILL."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    # Ctrl+C in a terminal signals the whole process group; only the parent should
    # act on it, or a worker would see two signals and skip its graceful close.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.workers: dict[int, multiprocessing.process.BaseProcess] = {}
        self.started_at: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.due: dict[int, float] = {}  # a dead worker's index -> when to start another
        # Reserves the port (and resolves port 0) for as long as the parent runs.
        self.anchor = bind_shared(settings.host, settings.port)
        self.port = int(self.anchor.getsockname()[1])
        self.node = f"{socket.gethostname()}:{self.port}:{secrets.token_hex(3)}"

    def start(self, index: int) -> None:
        settings = self.settings.replace(port=self.port)
        identity = WorkerIdentity(self.node, index, self.settings.workers)
        process = self.context.Process(
            target=run_worker, args=(settings, identity), name=f"aurigraph-worker-{index}"
        )
        process.start()
        self.workers[index] = process
        self.started_at[index] = time.monotonic()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def run(self) -> int:
        for index in range(self.settings.workers):
            self.start(index)
        logger.info(
            "workers started",
            extra={"workers": self.settings.workers, "port": self.port, "node": self.node},
        )
        while not self.stopping.is_set():
            sentinels = [p.sentinel for i, p in self.workers.items() if i not in self.due]
            timeout = 0.5
            if self.due:
                timeout = min(timeout, max(0.0, min(self.due.values()) - time.monotonic()))
            multiprocessing.connection.wait(sentinels, timeout=timeout)
            self.check(time.monotonic())
        return self.drain()

    def check(self, now: float) -> None:
        """Schedule the replacement of each worker that died; start those that are due."""
        for index, process in list(self.workers.items()):
            if self.stopping.is_set():
                return
            due = self.due.get(index)
            if due is None:
                if not process.is_alive():
                    self.due[index] = now + self.backoff(index, process.exitcode, now)
            elif now >= due:
                del self.due[index]
                self.start(index)

    def backoff(self, index: int, exitcode: int | None, now: float) -> float:
        """A worker died: how long until another starts in its place (longer while each
        one it starts dies at once)."""
        lived = now - self.started_at[index]
        self.failures[index] = self.failures.get(index, 0) + 1 if lived < 5 else 0
        delay = min(RESTART_BACKOFF_MAX, 0.1 * 2.0 ** self.failures[index])
        logger.warning(
            "worker died; replacing it",
            extra={"worker": index, "exitcode": exitcode, "restart_in_s": round(delay, 2)},
        )
        return delay

    def drain(self) -> int:
        """SIGTERM to every worker (each drains: readiness DOWN, close 1001), then wait."""
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        budget = self.settings.shutdown_delay + self.settings.shutdown_timeout + 5
        deadline = time.monotonic() + budget
        for process in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
        stragglers = [p for p in self.workers.values() if p.is_alive()]
        for process in stragglers:
            process.kill()
            process.join(5)
        self.anchor.close()
        logger.info("workers stopped", extra={"killed": len(stragglers)})
        return 1 if stragglers else 0


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes until SIGTERM or SIGINT; the exit code."""
    supervisor = _Supervisor(settings)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    return supervisor.run()
