"""The ASGI application: FastAPI for HTTP, on the same port as the WebSockets."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from aurigraph_stream import __version__
from aurigraph_stream.access.guard import Guard
from aurigraph_stream.apidocs.pages import install_docs
from aurigraph_stream.dashboard import install_dashboard
from aurigraph_stream.gql.service import GraphqlService
from aurigraph_stream.http import graphql, ingest, streams
from aurigraph_stream.http.cors import add_cors
from aurigraph_stream.http.errors import error_response
from aurigraph_stream.http.idempotency import IdempotencyKeys
from aurigraph_stream.node import Node
from aurigraph_stream.ops import health, stats, telemetry
from aurigraph_stream.ops.observability import IngestOutcomes, Observability

__all__ = ["Lifespan", "create_app"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    node: Node,
    guard: Guard,
    observability: Observability,
    graphql_service: GraphqlService,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """Build the ASGI app; ``lifespan`` starts and stops what it serves (aurigraph_stream.server).

    ``app.state`` holds the ``node``, the access ``guard``, the ``observability``
    recorders, the ingest API's ``idempotency`` keys and the ``graphql`` service
    (shared with the /graphql sockets), for the route handlers.
    """
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
    app.state.node = node
    app.state.guard = guard
    app.state.observability = observability
    app.state.idempotency = IdempotencyKeys(node.settings.history_policies())
    app.state.graphql = graphql_service
    app.state.metrics_registry = telemetry.build_registry(observability)
    app.include_router(streams.router)
    app.include_router(ingest.router)
    app.include_router(graphql.router)
    app.include_router(health.router)
    app.include_router(stats.router)
    app.include_router(telemetry.router)
    install_docs(app)
    install_dashboard(app)
    app.add_middleware(IngestOutcomes, counters=observability.ingest)
    add_cors(app, node.settings)  # added last: outermost, so error answers get CORS headers too

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        slug = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, slug, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid_request", str(exc.errors()))

    return app
