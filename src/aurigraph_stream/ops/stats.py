"""``GET /api/v11/websocket/stats``: what each endpoint is doing, as one JSON document.

Built on request from the counters the hub and connections already keep
(:class:`Stats`), the broadcast latency histograms and the ingest counters;
reading them costs the streams nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from aurigraph_stream import __version__
from aurigraph_stream.access.guard import Guard, authorize_ops
from aurigraph_stream.errors import AuthError
from aurigraph_stream.ops.latency import LatencyHistogram
from aurigraph_stream.ops.observability import Observability
from aurigraph_stream.streams import REGISTRY

__all__ = [
    "EndpointReport",
    "LatencyReport",
    "StatsReport",
    "build_report",
    "ops_refusal",
    "router",
]


class LatencyReport(BaseModel):
    """Broadcast latency of one stream, ms: from the broker accepting an event to its
    bytes being handed to every subscriber's socket. Events nobody was subscribed
    to are not counted. Percentiles come from buckets at most 14 % wide."""

    count: int = Field(description="events broadcast to at least one subscriber")
    p50: float
    p99: float
    p999: float = Field(description="99.9th percentile")
    max: float
    mean: float
    targetMs: float = Field(description="latency_target_ms in force")
    overTarget: int = Field(description="events broadcast later than the target")
    sloBurn: float = Field(description="share of events broadcast later than the target (0 to 1)")


class BytesSent(BaseModel):
    raw: int = Field(description="message payloads, before compression and framing")
    wire: int = Field(description="frames as written to sockets, after compression")


class EndpointReport(BaseModel):
    path: str
    connections: int = Field(description="open now")
    connects: int = Field(description="accepted since start")
    messagesSent: int
    bytesSent: BytesSent
    slowConsumerDisconnects: int = Field(description="closed with 4008")
    keepaliveDisconnects: int = Field(description="closed with 4009")
    protocolErrors: int
    failedSends: int = Field(description="deliveries dropped because the connection was closing")
    conflated: int = Field(
        description="latest-wins deliveries left out under load because a newer state "
        "of the stream went instead"
    )
    broadcastLatencyMs: LatencyReport


class IngestReport(BaseModel):
    accepted: dict[str, int] = Field(description="events accepted, per stream")
    rejected: dict[str, int] = Field(description="requests rejected, per error slug")


class Limits(BaseModel):
    maxConnections: int
    maxFrameSize: int
    maxMessageSize: int
    maxBufferedBytes: int
    pingInterval: float
    pingTimeout: float
    compression: bool
    compressionLevel: int
    broadcastEnabled: bool
    metricsInterval: float
    latencyTargetMs: float
    latencyGovernor: bool


class GraphqlReport(BaseModel):
    executed: dict[str, int] = Field(
        description="GraphQL operations run, by type (query, mutation, subscription)"
    )
    refused: dict[str, int] = Field(
        description="GraphQL operations refused before running, by error code"
    )


class GovernorReport(BaseModel):
    """The flush governor of this process (docs/operations.md)."""

    enabled: bool = Field(description="latency_governor")
    flushes: int = Field(description="flushes written since start")
    heldFlushes: int = Field(description="flushes held for more events under load")
    flushCostMs: float = Field(description="what a flush takes now, smoothed")
    lastHoldMs: float = Field(description="the latest hold")


class StatsReport(BaseModel):
    version: str
    profile: str
    startedAt: str = Field(description="ISO-8601 UTC")
    uptimeSeconds: float
    draining: bool = Field(description="shutting down: new connections are refused")
    connections: int = Field(description="open WebSocket connections, all endpoints")
    endpoints: dict[str, EndpointReport]
    refused: dict[str, int] = Field(description="connects refused before the upgrade, per reason")
    closes: dict[str, int] = Field(description="closed connections, per close code")
    ingest: IngestReport
    graphql: GraphqlReport
    governor: GovernorReport
    limits: Limits


def _latency(h: LatencyHistogram, target: float) -> LatencyReport:
    return LatencyReport(
        count=h.count,
        p50=round(h.percentile(0.5), 3),
        p99=round(h.percentile(0.99), 3),
        p999=round(h.percentile(0.999), 3),
        max=round(h.max, 3),
        mean=round(h.sum / h.count, 3) if h.count else 0.0,
        targetMs=target,
        overTarget=h.over_target,
        sloBurn=round(h.burn, 6),
    )


_NO_LATENCY = LatencyHistogram()


def build_report(obs: Observability) -> StatsReport:
    node = obs.node
    view = obs.view()  # with several workers: the whole node
    stats = view.stats
    s = node.settings
    endpoints = {
        name: EndpointReport(
            path=REGISTRY[name].path if name in REGISTRY else f"/{name}",  # /ws, /graphql
            connections=e.connections,
            connects=e.connects,
            messagesSent=e.messages_sent,
            bytesSent=BytesSent(raw=e.bytes_raw, wire=e.bytes_wire),
            slowConsumerDisconnects=e.slow_disconnects,
            keepaliveDisconnects=e.keepalive_disconnects,
            protocolErrors=e.protocol_errors,
            failedSends=e.failed_sends,
            conflated=e.conflated,
            # /ws and /graphql carry the streams' events: no latency of their own.
            broadcastLatencyMs=_latency(view.latency.get(name, _NO_LATENCY), s.latency_target_ms),
        )
        for name, e in stats.endpoints.items()
    }
    rejected: dict[str, int] = {}
    for (_, reason), n in view.rejected.items():
        rejected[reason] = rejected.get(reason, 0) + n
    graphql: dict[str, dict[str, int]] = {"executed": {}, "refused": {}}
    for (outcome, what), n in sorted(stats.graphql.items()):
        graphql[outcome][what] = n
    gov = node.hub.governor
    return StatsReport(
        version=__version__,
        profile=s.profile,
        startedAt=datetime.fromtimestamp(stats.started_at, UTC).isoformat().replace("+00:00", "Z"),
        uptimeSeconds=round(max(0.0, time.time() - stats.started_at), 3),
        draining=node.draining,
        connections=stats.connections,
        endpoints=endpoints,
        refused=dict(stats.refused),
        closes={str(code): n for code, n in sorted(stats.closes.items())},
        ingest=IngestReport(accepted=dict(view.accepted), rejected=rejected),
        graphql=GraphqlReport(**graphql),
        governor=GovernorReport(
            enabled=s.latency_governor,
            flushes=gov.flushes if gov is not None else 0,
            heldFlushes=gov.held if gov is not None else 0,
            flushCostMs=round(gov.cost * 1000, 3) if gov is not None else 0.0,
            lastHoldMs=round(gov.last_hold * 1000, 3) if gov is not None else 0.0,
        ),
        limits=Limits(
            maxConnections=s.max_connections,
            maxFrameSize=s.max_frame_size,
            maxMessageSize=s.max_message_size,
            maxBufferedBytes=s.max_buffered_bytes,
            pingInterval=s.ping_interval,
            pingTimeout=s.ping_timeout,
            compression=s.compression,
            compressionLevel=s.compression_level,
            broadcastEnabled=s.broadcast_enabled,
            metricsInterval=s.metrics_interval,
            latencyTargetMs=s.latency_target_ms,
            latencyGovernor=s.latency_governor,
        ),
    )


router = APIRouter(tags=["operations"])


@router.get(
    "/api/v11/websocket/stats",
    response_model=StatsReport,
    summary="Per-endpoint connections, traffic, disconnects, refusals and broadcast latency",
    description="With `ops_auth` (on in the prod profile), a token with the `ops` scope "
    "is needed (`Authorization: Bearer` or `?token=`): 401 without one, 403 without the scope.",
    responses={
        401: {"description": "ops_auth is on and the token is missing or invalid"},
        403: {"description": "ops_auth is on and the token lacks the ops scope"},
    },
)
async def websocket_stats(request: Request) -> StatsReport | JSONResponse:
    guard: Guard = request.app.state.guard
    try:
        authorize_ops(guard, request.headers, request.query_params)
    except AuthError as exc:
        return ops_refusal(exc)
    obs: Observability = request.app.state.observability
    return build_report(obs)


def ops_refusal(exc: AuthError) -> JSONResponse:
    """The JSON error body of a refused operator request (ops/ cannot use http/'s helper)."""
    return JSONResponse(
        {"error": exc.error, "detail": exc.detail}, exc.status, headers=dict(exc.headers)
    )
