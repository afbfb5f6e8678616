"""CORS for the HTTP endpoints, configured as the spec's ``quarkus.http.cors.*`` keys.

Starlette's middleware does the work. The one change: a refused preflight
gets this server's JSON error body instead of plain text. WebSocket upgrades
never reach it (browsers do not use CORS for WebSockets; the upgrade path
checks ``Origin`` itself), but an ``OPTIONS /ws/metrics`` preflight does, so
the spec's troubleshooting command answers as a browser expects.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from aurigraph_stream.config import Settings, split_list
from aurigraph_stream.http.errors import error_response

__all__ = ["JsonErrorCORSMiddleware", "add_cors"]


class JsonErrorCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
        }
        return error_response(
            response.status_code,
            "cors_preflight_refused",
            f"this cross-origin request is not allowed: its {refused} "
            "is not in the server's CORS settings",
            headers=headers,
        )


def add_cors(app: FastAPI, settings: Settings) -> None:
    """Install CORS unless no origin is configured (then browsers get no CORS headers)."""
    origins = split_list(settings.cors_origins)
    if not origins:
        return
    app.add_middleware(
        JsonErrorCORSMiddleware,
        allow_origins=origins,
        allow_methods=[m.upper() for m in split_list(settings.cors_methods)],
        allow_headers=split_list(settings.cors_headers),
        allow_credentials=settings.cors_credentials,
    )
