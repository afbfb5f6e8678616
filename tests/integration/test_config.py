"""Settings through the real command: each layer's effect observed on the wire.

defaults < profile < TOML file < AURIGRAPH_* environment < CLI flags; the
tests run ``aurigraph-stream serve`` and read the metrics interval and the
listening port. tests/unit/test_config.py drives load_settings itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import websockets

from aurigraph_stream.config import FIELDS, KINDS
from tests.support.server import ROOT, ServerProcess, free_port, run_server, wait_ready


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aurigraph.toml"
    path.write_text(text)
    return path


# -- the real CLI ----------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    return subprocess.run(
        [sys.executable, "-m", "aurigraph_stream", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
        cwd=ROOT,
        check=False,
    )


def test_serve_help_lists_every_setting() -> None:
    """`aurigraph-stream serve --help` documents each Settings field as a flag."""
    result = _cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for name in FIELDS:
        flag = "--" + name.replace("_", "-")
        assert flag in text, f"{flag} missing from --help"
        if KINDS[name][0] is bool:
            assert "--no-" + name.replace("_", "-") in text
        assert "AURIGRAPH_" + name.upper() in text
    assert "--config" in text


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--port", "notaport"), {}, "port: expected int, got 'notaport'"),
        (("--max-connections", "0"), {}, "max_connections must be at least 1"),
        (("--profile", "staging"), {}, "profile must be one of"),
        ((), {"AURIGRAPH_METRICS_INTERVAL": "fast"}, "metrics_interval: expected float"),
        (("--config", "/nonexistent/aurigraph.toml"), {}, "cannot read config file"),
    ],
)
def test_bad_value_exits_2_with_a_clear_message(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    """The CLI refuses a bad setting before starting: exit 2 and one line naming it."""
    result = _cli("serve", *args, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("aurigraph-stream: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def _metrics_interval(server: ServerProcess, count: int = 4) -> float:
    """The mean gap between the timestamps of ``count`` consecutive /ws/metrics messages.

    The sampler keeps a drift-free schedule, so the span divided by the gaps is
    accurate even when one sample is late.
    """

    async def collect() -> list[float]:
        stamps: list[float] = []
        async with websockets.connect(server.ws("/ws/metrics")) as ws:
            for _ in range(count):
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                stamps.append(_epoch(message["timestamp"]))
        return stamps

    stamps = asyncio.run(collect())
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(
    ("file_value", "env_value", "cli_value", "expected"),
    [
        ("0.25", None, None, 0.25),  # file over the dev profile's 2 s
        ("0.5", "0.15", None, 0.15),  # env over file
        ("0.5", "0.15", "0.35", 0.35),  # CLI over env
    ],
)
def test_precedence_seen_on_the_metrics_stream(
    tmp_path: Path,
    file_value: str,
    env_value: str | None,
    cli_value: str | None,
    expected: float,
) -> None:
    """The interval the real server broadcasts at comes from the highest layer that sets it."""
    config = _toml(tmp_path, f"metrics_interval = {file_value}\n")
    env = {"AURIGRAPH_METRICS_INTERVAL": env_value} if env_value else {}
    args = ["--profile", "dev", "--no-simulate", "--config", str(config)]
    if cli_value:
        args += ["--metrics-interval", cli_value]
    with run_server(*args, tmp_path=tmp_path, env=env) as server:
        assert _metrics_interval(server) == pytest.approx(expected, abs=0.05)


def test_dev_profile_broadcasts_metrics_every_2_seconds(tmp_path: Path) -> None:
    """`serve --profile dev` sends /ws/metrics every 2 s."""
    with run_server("--profile", "dev", "--no-simulate", tmp_path=tmp_path) as server:
        assert _metrics_interval(server, count=2) == pytest.approx(2.0, abs=0.2)


def test_port_from_env_beats_the_file_and_the_flag_beats_env(tmp_path: Path) -> None:
    """AURIGRAPH_PORT overrides the file's port; --port overrides AURIGRAPH_PORT."""
    file_port, env_port = free_port(), free_port()
    config = _toml(tmp_path, f"port = {file_port}\n")
    log_path = tmp_path / "env-port.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AURIGRAPH_")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aurigraph_stream", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**clean, "AURIGRAPH_PORT": str(env_port), "AURIGRAPH_SIMULATE": "false"},
            cwd=ROOT,
        )
    server = ServerProcess(proc, env_port, log_path)
    try:
        wait_ready(server)
        assert f"'port': {env_port}" in server.log()
        assert f"'port': {file_port}" not in server.log()
        assert server.stop() == 0
    finally:
        if not server.stopped:
            server.stop(signal.SIGKILL)
    # run_server passes --port; the environment's port must lose to it.
    with run_server(
        "--no-simulate", tmp_path=tmp_path, env={"AURIGRAPH_PORT": str(env_port)}
    ) as flagged:
        assert flagged.port != env_port
        assert f"'port': {flagged.port}" in flagged.log()


def test_prod_profile_through_the_cli(tmp_path: Path) -> None:
    """`serve --profile prod`: simulator off (tps stays 0) and max_connections 10000."""
    # prod refuses to start without authentication unless told to serve without it.
    args = ("--profile", "prod", "--auth", "none", "--no-ops-auth", "--metrics-interval", "0.1")
    with run_server(*args, tmp_path=tmp_path) as server:
        line = next(line for line in server.log().splitlines() if "settings={" in line)
        assert "'simulate': False" in line
        assert "'max_connections': 10000" in line
        assert "profile=prod" in line

        async def tps() -> list[float]:
            async with websockets.connect(server.ws("/ws/metrics")) as ws:
                return [orjson.loads(await asyncio.wait_for(ws.recv(), 5))["tps"] for _ in range(5)]

        assert asyncio.run(tps()) == [0, 0, 0, 0, 0]
