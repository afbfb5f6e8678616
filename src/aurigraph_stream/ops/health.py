"""Health checks, MicroProfile Health shape: ``/q/health``, ``/q/health/live``, ``/q/health/ready``.

Liveness answers "should this process be restarted?": it is DOWN only when
the event loop is stuck: when a timer ran later than ``loop_lag_threshold``
within the last ten lag readings (:class:`LoopMonitor`, one reading every
``loop_lag_interval``). Readiness answers "should traffic be sent here?": it
is DOWN while the broker does not answer, while the server drains on
shutdown (``shutdown_delay`` keeps it serving, DOWN, so a load balancer can
notice), and while it holds its maximum of WebSocket connections. A DOWN
answer is HTTP 503, so a checker that only reads status codes works too.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aurigraph_stream.node import Node
from aurigraph_stream.ops.observability import Observability

__all__ = ["Check", "Health", "liveness", "readiness", "router"]

BROKER_PING_TIMEOUT = 2.0  # seconds; a broker slower than this is as good as unreachable

Status = Literal["UP", "DOWN"]


class Check(BaseModel):
    """One procedure's result; ``data`` holds the figures it was decided on."""

    name: str
    status: Status
    data: dict[str, str | int | float | bool] = {}


class Health(BaseModel):
    """UP when every check is UP."""

    status: Status
    checks: list[Check]


def _up(ok: bool) -> Status:
    return "UP" if ok else "DOWN"


def liveness(obs: Observability) -> list[Check]:
    settings = obs.node.settings
    monitor = obs.loop
    worst = monitor.current(asyncio.get_running_loop().time())
    return [
        Check(
            name="event-loop",
            status=_up(worst <= settings.loop_lag_threshold),
            data={
                "lagMs": round(monitor.lag * 1000, 3),  # the latest reading
                "windowLagMs": round(worst * 1000, 3),  # what the status is decided on
                "windowSeconds": round(monitor.WINDOW * monitor.interval, 3),
                "thresholdMs": round(settings.loop_lag_threshold * 1000, 3),
            },
        )
    ]


async def _broker_check(node: Node) -> Check:
    data: dict[str, str | int | float | bool] = {
        # Only the scheme: a broker URL may carry a password.
        "broker": node.settings.broker_url.partition("://")[0],
    }
    try:
        ok = await asyncio.wait_for(node.broker.ping(), BROKER_PING_TIMEOUT)
    except TimeoutError:
        ok = False
        data["error"] = f"no answer within {BROKER_PING_TIMEOUT:g}s"
    except Exception as exc:  # any failure to reach it means not ready
        ok = False
        data["error"] = type(exc).__name__
    return Check(name="broker", status=_up(ok), data=data)


async def readiness(obs: Observability) -> list[Check]:
    node = obs.node
    settings = node.settings
    open_connections = len(obs.connections)
    return [
        await _broker_check(node),
        Check(
            name="shutdown",
            status=_up(not node.draining),
            data={"draining": node.draining},
        ),
        Check(
            name="websocket-capacity",
            status=_up(open_connections < settings.max_connections),
            data={"connections": open_connections, "maxConnections": settings.max_connections},
        ),
    ]


def _answer(checks: list[Check]) -> JSONResponse:
    health = Health(status=_up(all(c.status == "UP" for c in checks)), checks=checks)
    return JSONResponse(health.model_dump(), 200 if health.status == "UP" else 503)


def _obs(request: Request) -> Observability:
    obs: Observability = request.app.state.observability
    return obs


_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Every check is UP"},
    503: {"model": Health, "description": "At least one check is DOWN"},
}

router = APIRouter(tags=["health"])


@router.get(
    "/q/health",
    response_model=Health,
    responses=_RESPONSES,
    summary="All checks: liveness and readiness",
)
async def health(request: Request) -> JSONResponse:
    obs = _obs(request)
    return _answer(liveness(obs) + await readiness(obs))


@router.get(
    "/q/health/live",
    response_model=Health,
    responses=_RESPONSES,
    summary="Liveness: DOWN when the event loop is stuck",
)
async def live(request: Request) -> JSONResponse:
    return _answer(liveness(_obs(request)))


@router.get(
    "/q/health/ready",
    response_model=Health,
    responses=_RESPONSES,
    summary="Readiness: DOWN when the broker is unreachable, on shutdown, or when full",
)
async def ready(request: Request) -> JSONResponse:
    return _answer(await readiness(_obs(request)))
