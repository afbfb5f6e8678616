"""The streams described over HTTP, and 426 for a plain GET on a WebSocket path."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from aurigraph_stream.contract import stream_path
from aurigraph_stream.http.errors import error_response, unknown_stream
from aurigraph_stream.streams import REGISTRY

__all__ = ["router"]

router = APIRouter()


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
        return unknown_stream(stream)
    return JSONResponse(spec.message_schema)


@router.get("/ws/{stream}", include_in_schema=False)
async def plain_get_on_stream(stream: str) -> Response:
    if stream not in REGISTRY:
        return unknown_stream(stream)
    return error_response(
        426,
        "upgrade_required",
        f"{stream_path(stream)} is a WebSocket endpoint: connect with a WebSocket client "
        f"(for example: wscat -c ws://HOST:PORT{stream_path(stream)})",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
    )
