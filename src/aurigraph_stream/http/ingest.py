"""The ingest API: ``POST /api/v11/streams/{stream}/events`` publishes one event or a batch."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from aurigraph_stream.access.guard import Guard, authorize_publish
from aurigraph_stream.errors import AuthError, BrokerUnavailable, UnknownStream, ValidationError
from aurigraph_stream.http.errors import error_response, unknown_stream
from aurigraph_stream.node import Node
from aurigraph_stream.streams import get

__all__ = ["router"]

router = APIRouter()


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _guard(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


def _too_big(limit: int) -> JSONResponse:
    return error_response(413, "payload_too_large", f"request body over the {limit} byte limit")


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
        503: {
            "description": "The broker (Redis) cannot be reached: nothing of the request was "
            "stored or broadcast; retry after Retry-After seconds"
        },
    },
)
async def ingest(stream: str, request: Request) -> Response:
    node = _node(request)
    settings = node.settings
    try:  # a token with the publish scope, or X-Publisher-Key when JWT is off
        authorize_publish(_guard(request), request.headers, request.query_params)
    except AuthError as exc:
        return error_response(exc.status, exc.error, exc.detail, headers=dict(exc.headers))
    try:
        get(stream)
    except UnknownStream:
        return unknown_stream(stream)
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
        seqs = await node.publish(stream, events)
    except ValidationError as exc:
        return error_response(
            422, "validation_failed", exc.message, field=exc.field, index=exc.index
        )
    except BrokerUnavailable:
        # Acknowledged means stored: nothing of this request was, so none of it is broadcast.
        return error_response(
            503,
            "broker_unavailable",
            "the broker cannot be reached; nothing of this request was published, retry later",
            headers={"Retry-After": str(settings.retry_after)},
        )
    return JSONResponse({"stream": stream, "accepted": len(seqs), "seqs": seqs})
