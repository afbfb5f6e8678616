"""The deployment files that are not nginx's: the systemd unit and the Grafana dashboard."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ROOT, ServerProcess

UNIT = ROOT / "deploy" / "systemd" / "aurigraph-stream.service"
DASHBOARD = ROOT / "deploy" / "grafana" / "aurigraph-stream.json"
SHIPPED_BINARY = "/opt/aurigraph-stream/.venv/bin/aurigraph-stream"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_systemd_unit_raises_the_descriptor_limit_and_restarts() -> None:
    """LimitNOFILE for 10,000 connections, a restart policy, SIGTERM (which drains)."""
    service = _unit()["Service"]
    assert int(service["LimitNOFILE"]) >= 20_000
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].startswith(SHIPPED_BINARY + " serve")


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointing at this checkout's command (the
    shipped path, /opt/..., is where an install puts it). Skipped only where the tool
    is absent."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not verified here")
    local = str(Path(sys.executable).parent / "aurigraph-stream")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(SHIPPED_BINARY, local))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    assert UNIT.name not in result.stderr, result.stderr


_SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def _exported(server: ServerProcess) -> set[str]:
    """Every series name /q/metrics exports, those of families with no sample yet included
    (a counter of refusals before the first refusal)."""
    text = httpx.get(f"{server.http}/q/metrics", timeout=10).text
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in _SERIES.get(family.type, ("",))}
    return names


def test_every_metric_the_dashboard_queries_is_exported(live_server: ServerProcess) -> None:
    """Each series name in the dashboard's PromQL is one a real server's /q/metrics has."""
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    used = {
        name
        for expr in exprs
        for name in re.findall(r"\b((?:aurigraph|process)_[a-z0-9_]+)\b", expr)
    }
    assert "aurigraph_websocket_broadcast_latency_ms_bucket" in used
    missing = used - _exported(live_server)
    assert not missing, f"the dashboard queries series the server does not export: {missing}"
