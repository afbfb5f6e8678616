"""``GET /q/metrics``: Prometheus text exposition, read from the live counters at scrape time.

A custom collector turns :class:`Stats`, the latency histograms and the
ingest counters into metric families when Prometheus scrapes; nothing is
incremented twice, so the fan-out hot path pays nothing for being exported.
The names the spec gives are kept exactly:

- ``aurigraph_websocket_connections_total{endpoint}``: open connections now
  (a gauge, whatever the suffix says: the spec calls it the connection count);
- ``aurigraph_websocket_broadcast_latency_ms{endpoint}``: a histogram;
- ``aurigraph_websocket_messages_sent_total{endpoint}``: a counter.

Process CPU and memory come from prometheus-client's own process collector.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from aurigraph_stream import __version__
from aurigraph_stream.access.guard import Guard, authorize_ops
from aurigraph_stream.contract import CloseCode
from aurigraph_stream.errors import AuthError
from aurigraph_stream.ops.observability import Observability
from aurigraph_stream.ops.stats import ops_refusal

__all__ = ["StreamCollector", "build_registry", "router"]

_CLOSE_CODES = {int(c): c for c in CloseCode}


def _code_label(code: int) -> tuple[str, str]:
    """(code, reason) labels; codes outside RFC 6455's and ours collapse into one series."""
    if code in _CLOSE_CODES:
        return str(code), _CLOSE_CODES[code].reason
    if code == 1006:
        return "1006", "closed without a close frame"
    if 1000 <= code <= 1015:
        return str(code), "sent by the client"
    return "other", "sent by the client"


class StreamCollector:
    """Metric families built from the node's counters on every collect."""

    def __init__(self, obs: Observability) -> None:
        self._obs = obs

    def collect(self) -> Iterator[Metric]:
        obs = self._obs
        node = obs.node
        view = obs.view()  # with several workers: the whole node
        stats = view.stats
        ep = ["endpoint"]

        connections = GaugeMetricFamily(
            "aurigraph_websocket_connections_total", "Open WebSocket connections.", labels=ep
        )
        opened = CounterMetricFamily(
            "aurigraph_websocket_connections_opened", "WebSocket connections accepted.", labels=ep
        )
        messages = CounterMetricFamily(
            "aurigraph_websocket_messages_sent", "Messages handed to client sockets.", labels=ep
        )
        payload = CounterMetricFamily(
            "aurigraph_websocket_payload_bytes_sent",
            "Message payload bytes sent, before compression and framing.",
            labels=ep,
        )
        wire = CounterMetricFamily(
            "aurigraph_websocket_wire_bytes_sent",
            "Frame bytes written to client sockets, after compression.",
            labels=ep,
        )
        slow = CounterMetricFamily(
            "aurigraph_websocket_slow_consumer_disconnects",
            "Connections closed with 4008 because their unsent bytes passed the cap.",
            labels=ep,
        )
        keepalive = CounterMetricFamily(
            "aurigraph_websocket_keepalive_disconnects",
            "Connections closed with 4009 because a ping went unanswered.",
            labels=ep,
        )
        protocol = CounterMetricFamily(
            "aurigraph_websocket_protocol_errors",
            "Connections that broke the WebSocket protocol.",
            labels=ep,
        )
        failed = CounterMetricFamily(
            "aurigraph_websocket_failed_sends",
            "Deliveries dropped because the connection was closing.",
            labels=ep,
        )
        conflated = CounterMetricFamily(
            "aurigraph_websocket_conflated",
            "Latest-wins deliveries left out under load because a newer state went instead.",
            labels=ep,
        )
        over_target = CounterMetricFamily(
            "aurigraph_websocket_broadcast_over_target",
            "Events broadcast later than latency_target_ms (the SLO burn's numerator).",
            labels=ep,
        )
        burn = GaugeMetricFamily(
            "aurigraph_websocket_slo_burn_ratio",
            "Share of events since start broadcast later than latency_target_ms.",
            labels=ep,
        )
        latency = HistogramMetricFamily(
            "aurigraph_websocket_broadcast_latency_ms",
            "Milliseconds from the broker accepting an event to its bytes being handed to "
            "every subscriber's socket (events with at least one subscriber).",
            labels=ep,
        )
        for name, e in stats.endpoints.items():
            connections.add_metric([name], e.connections)
            opened.add_metric([name], e.connects)
            messages.add_metric([name], e.messages_sent)
            payload.add_metric([name], e.bytes_raw)
            wire.add_metric([name], e.bytes_wire)
            slow.add_metric([name], e.slow_disconnects)
            keepalive.add_metric([name], e.keepalive_disconnects)
            protocol.add_metric([name], e.protocol_errors)
            failed.add_metric([name], e.failed_sends)
            conflated.add_metric([name], e.conflated)
            h = view.latency.get(name)
            if h is not None:  # the multiplexed endpoint has none: its events are the streams'
                over_target.add_metric([name], h.over_target)
                burn.add_metric([name], h.burn)
                buckets = [
                    ("+Inf" if le == math.inf else str(le), n) for le, n in h.export_buckets()
                ]
                latency.add_metric([name], buckets, h.sum)
        yield from (connections, opened, messages, payload, wire, latency)
        yield from (slow, keepalive, protocol, failed, conflated, over_target, burn)

        gov = node.hub.governor
        if gov is not None:
            yield CounterMetricFamily(
                "aurigraph_hub_flushes", "Hub flushes written.", value=gov.flushes
            )
            yield CounterMetricFamily(
                "aurigraph_hub_held_flushes",
                "Hub flushes held for more events under load (the flush governor).",
                value=gov.held,
            )
            yield GaugeMetricFamily(
                "aurigraph_hub_flush_cost_ms",
                "What one hub flush takes now, smoothed.",
                value=gov.cost * 1000,
            )

        closes = CounterMetricFamily(
            "aurigraph_websocket_disconnects",
            "Closed WebSocket connections by close code.",
            labels=["code", "reason"],
        )
        by_label: dict[tuple[str, str], int] = {}
        for code, n in stats.closes.items():
            key = _code_label(code)
            by_label[key] = by_label.get(key, 0) + n
        for labels, n in sorted(by_label.items()):
            closes.add_metric(list(labels), n)
        yield closes

        refused = CounterMetricFamily(
            "aurigraph_websocket_refused",
            "WebSocket connects refused before the upgrade, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(stats.refused.items()):
            refused.add_metric([reason], n)
        yield refused

        accepted = CounterMetricFamily(
            "aurigraph_ingest_events_accepted",
            "Events accepted by the ingest API and broadcast.",
            labels=["stream"],
        )
        for stream, n in sorted(view.accepted.items()):
            accepted.add_metric([stream], n)
        rejected = CounterMetricFamily(
            "aurigraph_ingest_requests_rejected",
            "Ingest requests refused, by stream and error slug.",
            labels=["stream", "reason"],
        )
        for (stream, reason), n in sorted(view.rejected.items()):
            rejected.add_metric([stream, reason], n)
        yield from (accepted, rejected)

        operations = CounterMetricFamily(
            "aurigraph_graphql_operations",
            "GraphQL operations run (over HTTP and /graphql sockets), by type.",
            labels=["type"],
        )
        refused_operations = CounterMetricFamily(
            "aurigraph_graphql_refused",
            "GraphQL operations refused before running, by error code.",
            labels=["reason"],
        )
        for (outcome, what), n in sorted(stats.graphql.items()):
            family = operations if outcome == "executed" else refused_operations
            family.add_metric([what], n)
        yield from (operations, refused_operations)

        yield CounterMetricFamily(
            "aurigraph_background_task_restarts",
            "Background tasks (simulator, sampler, sweeps) restarted after a failure.",
            value=stats.task_restarts,
        )
        loop = obs.loop
        yield GaugeMetricFamily(
            "aurigraph_event_loop_lag_seconds",
            "How late the event loop ran its latest timer.",
            value=loop.lag,
        )
        info = GaugeMetricFamily(
            "aurigraph_stream_info",
            "Version and settings profile of this server.",
            labels=["version", "profile"],
        )
        info.add_metric([__version__, node.settings.profile], 1)
        started = GaugeMetricFamily(
            "aurigraph_stream_start_time_seconds",
            "Unix time the server started.",
            value=stats.started_at,
        )
        yield from (info, started)


def build_registry(obs: Observability) -> CollectorRegistry:
    """A registry of this app's own: several apps in one process do not collide."""
    registry = CollectorRegistry()
    registry.register(StreamCollector(obs))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


router = APIRouter(tags=["operations"])


@router.get(
    "/q/metrics",
    response_class=Response,
    summary="Prometheus metrics (text exposition format 0.0.4)",
    responses={
        200: {
            "description": "Every metric family, in the Prometheus text format",
            "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}},
        },
        401: {"description": "ops_auth is on and the token is missing or invalid"},
        403: {"description": "ops_auth is on and the token lacks the ops scope"},
    },
)
async def metrics(request: Request) -> Response:
    guard: Guard = request.app.state.guard
    try:
        authorize_ops(guard, request.headers, request.query_params)
    except AuthError as exc:
        return ops_refusal(exc)
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
