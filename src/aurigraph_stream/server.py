"""The server: a node, its WebSockets and its HTTP app, wired into uvicorn.

This is where the parts meet. :func:`build_server` makes the node
(broker, hub, sources), the access guard, the WebSocket context and the
FastAPI app, and hands uvicorn two protocol factories: every accepted socket
starts as a WebSocket :class:`~aurigraph_stream.ws.connection.Connection`,
which falls back to uvicorn's HTTP protocol for anything that is not a
complete upgrade head. The app's lifespan starts and stops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import resource
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from aurigraph_stream.access.guard import Guard
from aurigraph_stream.config import Settings
from aurigraph_stream.errors import ConfigError
from aurigraph_stream.http.app import create_app
from aurigraph_stream.http.protocol import http_protocol
from aurigraph_stream.node import Node, WorkerIdentity
from aurigraph_stream.ops.observability import Observability
from aurigraph_stream.ws.connection import Accept, Connection
from aurigraph_stream.ws.context import WsContext

__all__ = [
    "StreamServer",
    "build_server",
    "check_tls",
    "raise_open_file_limit",
]

logger = logging.getLogger("aurigraph_stream.server")


class StreamServer(uvicorn.Server):
    """uvicorn's server, marking the node as draining before it closes connections.

    ``node`` is the embedding API: ``await server.node.publish(stream, events)``.
    """

    def __init__(self, config: uvicorn.Config, node: Node) -> None:
        super().__init__(config)
        self.node = node

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Readiness DOWN, new WebSockets and ingest refused with 503; what the hub
        # holds is written before any connection gets its 1001.
        self.node.begin_drain()
        delay = self.node.settings.shutdown_delay
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


def build_server(settings: Settings, identity: WorkerIdentity | None = None) -> StreamServer:
    """The uvicorn server for ``settings``; ``identity`` when it is one worker of several.

    Raises:
        ConfigError: for settings that only show as wrong when used (keys, certificates).
    """
    check_tls(settings)
    raise_open_file_limit()
    node = Node(settings, identity)
    guard = Guard(settings)  # raises ConfigError for bad security settings
    websockets = WsContext(node, guard)
    observability = Observability(node, websockets.open)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        websockets.start()
        observability.start()
        try:
            yield
        finally:
            await node.stop()

    app = create_app(node, guard, observability, websockets.graphql, lifespan)
    ws: Any = functools.partial(Connection, websockets)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=ws,
        # Every socket starts as a WebSocket Connection; other requests fall back to
        # httptools, with a request deadline and a head limit added.
        http=Accept(websockets, http_protocol(settings)),  # type: ignore[arg-type]
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
    return StreamServer(config, node)
