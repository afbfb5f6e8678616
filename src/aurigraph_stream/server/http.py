"""HTTP endpoints: ingest, stream descriptions, and 426 for plain GETs on stream paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from aurigraph_stream.errors import AuthError, UnknownStream, ValidationError
from aurigraph_stream.server.runtime import Runtime
from aurigraph_stream.server.security import authorize_publish
from aurigraph_stream.streams import REGISTRY, get

__all__ = ["error_response", "router"]

router = APIRouter()


def error_response(
    status: int,
    error: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Every HTTP error this server sends has this JSON shape."""
    return JSONResponse({"error": error, "detail": detail, **extra}, status, headers=headers)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _unknown(name: str) -> JSONResponse:
    return error_response(
        404, "unknown_stream", f"no stream named {name!r}; streams: {', '.join(REGISTRY)}"
    )


def _too_big(limit: int) -> JSONResponse:
    return error_response(413, "payload_too_large", f"request body over the {limit} byte limit")


@router.get("/api/v11/streams", tags=["streams"], summary="List the streams")
async def list_streams() -> dict[str, Any]:
    return {
        "streams": [
            {"name": s.name, "path": s.path, "trigger": s.trigger, "example": s.example}
            for s in REGISTRY.values()
        ]
    }


@router.get(
    "/api/v11/streams/{stream}/schema",
    tags=["streams"],
    summary="JSON Schema of a stream's messages",
)
async def stream_schema(stream: str) -> Response:
    spec = REGISTRY.get(stream)
    if spec is None:
        return _unknown(stream)
    return JSONResponse(spec.message_schema)


@router.post(
    "/api/v11/streams/{stream}/events",
    tags=["ingest"],
    summary="Publish one event or a batch (JSON array)",
    responses={
        200: {"description": "Broadcast; the response lists the assigned seqs"},
        400: {"description": "Body is not JSON, or not an object or array"},
        401: {"description": "Missing or invalid token, or wrong X-Publisher-Key"},
        403: {"description": "The token lacks the publish scope"},
        404: {"description": "Unknown stream"},
        413: {"description": "Body over max_message_size"},
        422: {"description": "An event does not match the stream's schema"},
    },
)
async def ingest(stream: str, request: Request) -> Response:
    runtime = _runtime(request)
    settings = runtime.settings
    try:  # a token with the publish scope, or X-Publisher-Key when JWT is off
        authorize_publish(runtime, request.headers, request.query_params)
    except AuthError as exc:
        return error_response(exc.status, exc.error, exc.detail, headers=dict(exc.headers))
    try:
        get(stream)
    except UnknownStream:
        return _unknown(stream)
    limit = settings.max_message_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _too_big(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _too_big(limit)
    except ClientDisconnect:  # closed mid-body (by the client, or at the request deadline)
        return error_response(400, "incomplete_body", "the connection closed before the body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error_response(400, "invalid_json", f"body is not valid JSON: {exc}")
    if isinstance(data, dict):
        events = [data]
    elif isinstance(data, list) and data:
        events = data
    else:
        return error_response(
            400, "invalid_body", "body must be one event (object) or a non-empty array of events"
        )
    try:
        seqs = await runtime.publish(stream, events)
    except ValidationError as exc:
        return error_response(
            422, "validation_failed", exc.message, field=exc.field, index=exc.index
        )
    return JSONResponse({"stream": stream, "accepted": len(seqs), "seqs": seqs})


@router.get("/ws/{stream}", include_in_schema=False)
async def plain_get_on_stream(stream: str) -> Response:
    if stream not in REGISTRY:
        return _unknown(stream)
    return error_response(
        426,
        "upgrade_required",
        f"/ws/{stream} is a WebSocket endpoint: connect with a WebSocket client "
        f"(for example: wscat -c ws://HOST:PORT/ws/{stream})",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
    )
