"""The one shape of every HTTP error this server sends: ``{"error": slug, "detail": sentence}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from aurigraph_stream.streams import REGISTRY

__all__ = ["error_response", "unknown_stream"]


def error_response(
    status: int,
    error: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Every HTTP error this server sends has this JSON shape."""
    return JSONResponse({"error": error, "detail": detail, **extra}, status, headers=headers)


def unknown_stream(name: str) -> JSONResponse:
    """404 for a stream name that is not one of the streams."""
    return error_response(
        404, "unknown_stream", f"no stream named {name!r}; streams: {', '.join(REGISTRY)}"
    )
