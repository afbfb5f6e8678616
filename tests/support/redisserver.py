"""A real redis-server (Debian's), started on a free loopback port, stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.server import free_port

__all__ = ["RedisServer", "redis_server"]

REDIS_BINARY = "/usr/bin/redis-server"  # scripts/system-deps.sh installs it


class RedisServer:
    """One redis-server process on 127.0.0.1, restartable on the same port and directory.

    Args:
        aof: append-only file on (with ``appendfsync always``): a restart keeps
            every write; off, a restart loses everything, as a cache would.
        password: ``requirepass``: clients must authenticate.
        tls: (certificate chain, key, CA) files: TLS only (``rediss://``), no plain port.
    """

    def __init__(
        self,
        directory: Path,
        *,
        aof: bool = False,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.aof = aof
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}localhost:{self.port}/0?ssl_ca_certs={self.tls[2]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.tls is not None:
            return redis.Redis(
                host="localhost",
                port=self.port,
                password=self.password,
                socket_timeout=5,
                ssl=True,
                ssl_ca_certs=str(self.tls[2]),
            )
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5
        )

    def start(self) -> None:
        if self.tls is not None:
            cert, key, ca = self.tls
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(ca),
                "--tls-auth-clients",
                "no",
            ]
        else:
            listen = ["--port", str(self.port)]
        if self.password is not None:
            listen += ["--requirepass", self.password]
        args = [
            REDIS_BINARY,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """PING until it answers (bounded); fails early if the process died."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 1):
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log()}")
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        raise AssertionError(f"redis-server not answering PING within {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process by its PID (SIGKILL: a crash; SIGTERM: a clean shutdown)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            os.kill(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        """Crash it and start it again on the same port and directory."""
        self.stop(signal.SIGKILL)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: it still accepts connections (the kernel does) but answers nothing."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()


@contextmanager
def redis_server(
    directory: Path,
    *,
    aof: bool = False,
    password: str | None = None,
    tls: tuple[Path, Path, Path] | None = None,
) -> Iterator[RedisServer]:
    server = RedisServer(directory, aof=aof, password=password, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()
