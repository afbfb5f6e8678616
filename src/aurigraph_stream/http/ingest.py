"""The ingest API: ``POST /api/v11/streams/{stream}/events`` publishes one event or a batch.

The checks, cheapest first, each answered with the JSON error body::

    Origin           the WebSocket allow-list; same-origin and no Origin pass  -> 403
    Content-Type     application/json (charset utf-8 if given)                   -> 415
    credential       token with the publish scope, or X-Publisher-Key            -> 401/403
    stream           one of the five                                             -> 404
    draining         the server got SIGTERM                                      -> 503
    Idempotency-Key  well formed; a replay answers from the key                  -> 400/409/422
    body             at most max_message_size, strict JSON, events that match    -> 413/400/422

The last two make ingest safe against cross-site forgery: browsers send a
``text/plain``, form or multipart POST from any page without asking (no
preflight), but never an ``application/json`` one; and a page that could
send one anyway is refused by its ``Origin``.

Draining is checked again right before publishing: a request whose body was
still arriving when SIGTERM came must not be told 200 for events that no
subscriber will receive (every connection is being closed with 1001). So is
the connection: every request either gets its answer (with the seqs), or
nothing of it is published.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from aurigraph_stream.access.guard import Guard, authorize_publish
from aurigraph_stream.errors import (
    AuthError,
    BrokerUnavailable,
    HandshakeRejected,
    UnknownStream,
    ValidationError,
)
from aurigraph_stream.http.errors import error_response, unknown_stream
from aurigraph_stream.http.idempotency import IdempotencyKeys, check_key
from aurigraph_stream.node import Node
from aurigraph_stream.streams import get
from aurigraph_stream.streams.body import BodyError, parse_events

__all__ = ["DESCRIPTION", "router"]

router = APIRouter()

DESCRIPTION = """\
Publishes one event (a JSON object) or a batch (a non-empty JSON array), validated
against the stream's schema; nothing of a request is published if one event is invalid.
The answer lists the `seq` each event was broadcast with.

- `Content-Type` must be `application/json` (415 otherwise); a browser page from a site
  not on the server's origin list is refused (403 `origin_not_allowed`).
- Integers are from 0 to 2^53-1, other numbers at most 2^53-1 (422 otherwise); a whole
  float in an integer field (`21000.0`) is published as the integer. A key may appear
  once per event (422 otherwise).
- `Idempotency-Key` (optional, 1 to 255 visible ASCII characters): a retry with the same
  key and body answers with the original seqs and publishes nothing (header
  `Idempotent-Replayed: true`); keys are kept as long as the stream's history window. The
  same key with another body: 422 `idempotency_key_reused`; while the first is still
  being published: 409 `idempotency_key_in_use`.
- While the server shuts down: 503 `shutting_down` with `Retry-After`, and nothing is
  published.
"""


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _guard(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


def _keys(request: Request) -> IdempotencyKeys:
    keys: IdempotencyKeys = request.app.state.idempotency
    return keys


def _too_big(limit: int) -> JSONResponse:
    return error_response(413, "payload_too_large", f"request body over the {limit} byte limit")


def _shutting_down(node: Node) -> JSONResponse:
    return error_response(
        503,
        "shutting_down",
        "the server is shutting down and publishes nothing more: send the request to "
        "another instance, or retry",
        headers={"Retry-After": str(node.settings.retry_after)},
    )


def _json_media_type(value: str | None) -> bool:
    """``application/json``, with no parameter but an optional ``charset=utf-8``."""
    if value is None:
        return False
    media, *params = value.split(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params:
        name, _, v = param.partition("=")
        if name.strip().lower() != "charset" or v.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def _accepted(stream: str, seqs: Sequence[int], *, replayed: bool = False) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(
        {"stream": stream, "accepted": len(seqs), "seqs": list(seqs)}, headers=headers
    )


@router.post(
    "/api/v11/streams/{stream}/events",
    tags=["ingest"],
    summary="Publish one event or a batch (JSON array)",
    description=DESCRIPTION,
    responses={
        200: {"description": "Broadcast; the response lists the assigned seqs"},
        400: {"description": "Body is not JSON, or not an object or array; bad Idempotency-Key"},
        401: {"description": "Missing or invalid token, or wrong X-Publisher-Key"},
        403: {"description": "The token lacks the publish scope, or a foreign Origin"},
        404: {"description": "Unknown stream"},
        409: {"description": "A request with this Idempotency-Key is still being published"},
        413: {"description": "Body over max_message_size"},
        415: {"description": "Content-Type is not application/json"},
        422: {
            "description": "An event does not match the stream's schema, repeats a key, or "
            "the Idempotency-Key was used with another body"
        },
        503: {
            "description": "The server is shutting down, or the broker (Redis) cannot be "
            "reached: nothing of the request was stored or broadcast (Retry-After)"
        },
    },
)
async def ingest(stream: str, request: Request) -> Response:
    node = _node(request)
    settings = node.settings
    guard = _guard(request)
    headers = request.headers
    try:
        guard.check_origin(headers, "publish events")
    except HandshakeRejected as exc:
        return error_response(exc.status, exc.error, exc.detail)
    if not _json_media_type(headers.get("content-type")):
        return error_response(
            415,
            "unsupported_media_type",
            "send the events as Content-Type: application/json",
        )
    try:  # a token with the publish scope, or X-Publisher-Key when JWT is off
        principal = authorize_publish(guard, headers, request.query_params)
    except AuthError as exc:
        return error_response(exc.status, exc.error, exc.detail, headers=dict(exc.headers))
    try:
        get(stream)
    except UnknownStream:
        return unknown_stream(stream)
    if node.draining:
        return _shutting_down(node)
    key = headers.get("idempotency-key")
    if key is not None and (why := check_key(key)) is not None:
        return error_response(400, "invalid_idempotency_key", why)
    limit = settings.max_message_size
    declared = headers.get("content-length")
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
        events = parse_events(body)
    except BodyError as exc:
        return error_response(400, exc.error, exc.detail)
    except ValidationError as exc:
        return error_response(
            422, "validation_failed", exc.message, field=exc.field, index=exc.index or 0
        )
    # Checked again after the body's awaits: SIGTERM may have come while it arrived.
    if node.draining:
        return _shutting_down(node)
    # A publisher that can no longer read the answer would not learn the seqs (and
    # would retry): publish nothing for it. One receive() that does not wait.
    if await request.is_disconnected():
        return error_response(400, "incomplete_body", "the connection closed before the answer")
    keys = _keys(request)
    claim = None
    if key is not None:
        claim = keys.claim(stream, principal.subject, key, body)
        if claim.seqs is not None:
            return _accepted(stream, claim.seqs, replayed=True)
        if claim.conflict == "idempotency_key_reused":
            return error_response(
                422,
                claim.conflict,
                "this Idempotency-Key was used with another body: use a new key for a new request",
            )
        if claim.conflict is not None:
            return error_response(
                409,
                claim.conflict,
                "a request with this Idempotency-Key is still being published; retry",
                headers={"Retry-After": "1"},
            )
    try:
        seqs = await node.publish(stream, events)
    except ValidationError as exc:
        if claim is not None:
            keys.release(claim)
        return error_response(
            422, "validation_failed", exc.message, field=exc.field, index=exc.index
        )
    except BrokerUnavailable:
        if claim is not None:
            keys.release(claim)
        # Acknowledged means stored: nothing of this request was, so none of it is broadcast.
        return error_response(
            503,
            "broker_unavailable",
            "the broker cannot be reached; nothing of this request was published, retry later",
            headers={"Retry-After": str(settings.retry_after)},
        )
    except BaseException:
        if claim is not None:
            keys.release(claim)
        raise
    if claim is not None:
        keys.finish(claim, seqs)
    return _accepted(stream, seqs)
