"""Run the server with uvicorn: FastAPI for HTTP, :class:`Connection` for WebSockets."""

from __future__ import annotations

import contextlib
import functools
import logging
import resource
import socket
from typing import Any

import uvicorn

from aurigraph_stream.config import Settings
from aurigraph_stream.server.app import create_app
from aurigraph_stream.server.connection import Connection
from aurigraph_stream.server.runtime import Runtime

__all__ = ["StreamServer", "build_server", "configure_logging", "raise_open_file_limit"]


class StreamServer(uvicorn.Server):
    """uvicorn's server, marking the runtime as draining before it closes connections."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.runtime.draining = True
        await super().shutdown(sockets)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit: each connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def build_server(settings: Settings) -> StreamServer:
    raise_open_file_limit()
    runtime = Runtime(settings)
    app = create_app(settings, runtime)
    ws: Any = functools.partial(Connection, runtime)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=ws,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout)),
        backlog=16384,
    )
    return StreamServer(config, runtime)
