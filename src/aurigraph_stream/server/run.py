"""Run the server with uvicorn: FastAPI for HTTP, :class:`Connection` for WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import resource
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn

from aurigraph_stream.config import Settings
from aurigraph_stream.errors import ConfigError
from aurigraph_stream.server.app import create_app
from aurigraph_stream.server.auth import install_log_redaction
from aurigraph_stream.server.connection import Accept, Connection
from aurigraph_stream.server.httpproto import http_protocol
from aurigraph_stream.server.runtime import Runtime

__all__ = [
    "StreamServer",
    "build_server",
    "check_tls",
    "raise_open_file_limit",
]

logger = logging.getLogger("aurigraph_stream.server")


class StreamServer(uvicorn.Server):
    """uvicorn's server, marking the runtime as draining before it closes connections."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.runtime.draining = True  # readiness DOWN, new WebSockets refused with 503
        delay = self.runtime.settings.shutdown_delay
        if delay > 0:
            # Keep serving while load balancers see readiness DOWN and stop routing here.
            logger.info("draining", extra={"shutdown_delay_s": delay})
            steps = max(1, math.ceil(delay / 0.1))
            for _ in range(steps):
                if self.force_exit:  # a second Ctrl+C: stop waiting
                    break
                await asyncio.sleep(delay / steps)
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's handlers, minus its re-raising of the signal after shutdown.

        SIGTERM and SIGINT are how this server is told to stop; once it has
        closed every connection with 1001, that is a success, so the process
        exits 0 instead of dying of the re-raised signal.
        """
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit: each connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def check_tls(settings: Settings) -> None:
    """Load the certificate and key once, so a bad pair stops the start with a clear message."""
    if settings.tls_key is not None and settings.tls_cert is None:
        raise ConfigError("tls_key needs tls_cert")
    if settings.tls_cert is None:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load tls_cert/tls_key: {exc}") from None


def build_server(settings: Settings) -> StreamServer:
    """The uvicorn server for ``settings``.

    Raises:
        ConfigError: for settings that only show as wrong when used (keys, certificates).
    """
    check_tls(settings)
    raise_open_file_limit()
    install_log_redaction()
    runtime = Runtime(settings)
    app = create_app(runtime)
    ws: Any = functools.partial(Connection, runtime)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=ws,
        # Every socket starts as a WebSocket Connection; other requests fall back to
        # httptools, with a request deadline and a head limit added.
        http=Accept(runtime, http_protocol(settings)),  # type: ignore[arg-type]
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        loop="uvloop",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout)),
        backlog=16384,
    )
    return StreamServer(config, runtime)
