"""The ASGI application: FastAPI for HTTP, with a lifespan that runs the Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from aurigraph_stream import __version__
from aurigraph_stream.config import Settings
from aurigraph_stream.server.http import error_response, router
from aurigraph_stream.server.runtime import Runtime

__all__ = ["create_app"]


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the ASGI app. ``app.state.runtime`` is the running :class:`Runtime`."""
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Aurigraph Stream",
        version=__version__,
        description="Real-time WebSocket streams of the Aurigraph V11 platform.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.include_router(router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        slug = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, slug, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid_request", str(exc.errors()))

    return app
