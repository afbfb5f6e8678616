"""The ASGI application: FastAPI for HTTP, with a lifespan that runs the Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from aurigraph_stream import __version__
from aurigraph_stream.server import health, stats_api, telemetry
from aurigraph_stream.server.cors import add_cors
from aurigraph_stream.server.docs import install_docs
from aurigraph_stream.server.http import error_response, router
from aurigraph_stream.server.observability import IngestOutcomes, Observability
from aurigraph_stream.server.runtime import Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime) -> FastAPI:
    """Build the ASGI app. ``app.state.runtime`` is the running :class:`Runtime`."""
    observability = Observability(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        await observability.start()
        try:
            yield
        finally:
            await observability.stop()
            await runtime.stop()

    app = FastAPI(
        title="Aurigraph Stream",
        version=__version__,
        description="Real-time WebSocket streams of the Aurigraph V11 platform.",
        lifespan=lifespan,
        # Operator endpoints live under /q/, as in the spec (Quarkus' layout).
        openapi_url="/q/openapi",
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.observability = observability
    app.state.metrics_registry = telemetry.build_registry(observability)
    app.include_router(router)
    app.include_router(health.router)
    app.include_router(stats_api.router)
    app.include_router(telemetry.router)
    install_docs(app)
    app.add_middleware(IngestOutcomes, counters=observability.ingest)
    add_cors(app, runtime.settings)  # added last: outermost, so error answers get CORS headers too

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        slug = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, slug, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid_request", str(exc.errors()))

    return app
