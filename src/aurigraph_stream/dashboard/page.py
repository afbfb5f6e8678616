"""The live dashboard at ``/``.

TPS, CPU, memory and error rate as live charts, consensus, the validator set,
the connected peers, a filterable transaction feed and the connection's state:
a page that uses the TypeScript client (clients/js) over one ``/ws``
connection. Its script and stylesheet are built from clients/js/dashboard by
``make dashboard`` and committed under ``assets/``, so serving it needs no
Node; tests/integration/test_dashboard.py fails when they are stale.

The page carries a Content-Security-Policy that allows only this origin
(``connect-src 'self'`` covers the WebSocket to the same host and port), so a
browser refuses anything from elsewhere.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "CSP", "install_dashboard", "router"]

_HERE = Path(str(files("aurigraph_stream.dashboard")))
ASSETS = _HERE / "assets"
ASSETS_PATH = "/dashboard/assets"

CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    # Read per request: a small file, and an edited page shows without a restart.
    return HTMLResponse(
        (_HERE / "index.html").read_text(),
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"},
    )


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its assets under ``/dashboard/assets``."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="dashboard-assets")
