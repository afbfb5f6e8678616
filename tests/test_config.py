"""Settings: defaults < profile < TOML file < AURIGRAPH_* environment < CLI flags.

Unit tests drive config.load_settings; the CLI tests run the real command and
observe the result on the wire (the metrics interval, the listening port).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import websockets

from aurigraph_stream.config import FIELDS, KINDS, PROFILES, Settings, load_settings
from aurigraph_stream.errors import ConfigError
from tests.server import ROOT, ServerProcess, free_port, run_server, wait_ready


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aurigraph.toml"
    path.write_text(text)
    return path


# -- load_settings -------------------------------------------------------------


def test_defaults_and_the_dev_profile() -> None:
    """With nothing set the profile is dev: 2 s metrics and the simulator on."""
    settings = load_settings(environ={})
    assert settings.profile == "dev"
    assert settings.metrics_interval == 2.0
    assert settings.simulate is True
    assert settings.port == 9003
    assert settings.host == "127.0.0.1"
    assert settings.max_connections == 5000
    assert settings.max_frame_size == 65536
    assert settings.max_message_size == 1048576
    assert settings.compression is True
    assert settings.compression_level == 6
    assert Settings().metrics_interval == 1.0  # the field default, under the profile


def test_prod_profile_turns_the_simulator_off_and_raises_max_connections() -> None:
    """prod: no simulator, 10,000 connections, metrics every 1 s."""
    settings = load_settings(environ={}, overrides={"profile": "prod"})
    assert settings.profile == "prod"
    assert settings.simulate is False
    assert settings.max_connections == 10000
    assert settings.metrics_interval == 1.0


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    """metrics_interval: default 1 < dev 2 < file 3 < file [dev] 4 < env 5 < CLI 6."""
    plain = _toml(tmp_path, "metrics_interval = 3\n")
    assert load_settings(environ={}).metrics_interval == 2.0
    assert load_settings(config_file=plain, environ={}).metrics_interval == 3.0
    tabled = tmp_path / "tabled.toml"
    tabled.write_text("metrics_interval = 3\n[dev]\nmetrics_interval = 4\n[prod]\nport = 1\n")
    assert load_settings(config_file=tabled, environ={}).metrics_interval == 4.0
    assert load_settings(config_file=tabled, environ={}).port == 9003  # [prod] not applied
    env = {"AURIGRAPH_METRICS_INTERVAL": "5"}
    assert load_settings(config_file=tabled, environ=env).metrics_interval == 5.0
    cli = {"metrics_interval": "6"}
    assert load_settings(config_file=tabled, environ=env, overrides=cli).metrics_interval == 6.0


def test_file_beats_the_profile_and_chooses_it(tmp_path: Path) -> None:
    """A file may pick the profile; its own values still win over the profile's."""
    path = _toml(tmp_path, 'profile = "prod"\nmax_connections = 300\n[prod]\nretry_after = 9\n')
    settings = load_settings(config_file=path, environ={})
    assert settings.profile == "prod"
    assert settings.simulate is False  # from the prod profile
    assert settings.max_connections == 300  # the file over the profile
    assert settings.retry_after == 9
    cli = load_settings(config_file=path, environ={}, overrides={"profile": "dev"})
    assert cli.profile == "dev"
    assert cli.simulate is True
    assert cli.retry_after == 5


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    """AURIGRAPH_CONFIG names the file when --config is not given."""
    path = _toml(tmp_path, "history_size = 77\n")
    assert load_settings(environ={"AURIGRAPH_CONFIG": str(path)}).history_size == 77


def test_environment_values_are_coerced() -> None:
    """Env strings become bools, ints, floats; an empty optional is None."""
    settings = load_settings(
        environ={
            "AURIGRAPH_COMPRESSION": "false",
            "AURIGRAPH_SIMULATE": "0",
            "AURIGRAPH_MAX_CONNECTIONS": "42",
            "AURIGRAPH_PING_INTERVAL": "2.5",
            "AURIGRAPH_SEED": "9",
            "AURIGRAPH_PUBLISHER_KEY": "",
        }
    )
    assert settings.compression is False
    assert settings.simulate is False
    assert settings.max_connections == 42
    assert settings.ping_interval == 2.5
    assert settings.seed == 9
    assert settings.publisher_key is None


@pytest.mark.parametrize(
    ("environ", "overrides", "message"),
    [
        ({"AURIGRAPH_PORT": "http"}, {}, "port: expected int, got 'http'"),
        ({"AURIGRAPH_COMPRESSION": "maybe"}, {}, "compression: expected bool"),
        ({}, {"max_connections": "0"}, "max_connections must be at least 1, not 0"),
        ({}, {"compression_level": "10"}, "compression_level must be at most 9, not 10"),
        ({}, {"port": "2.5"}, "port: expected int"),
        ({}, {"profile": "staging"}, "profile must be one of"),
        ({"AURIGRAPH_NO_SUCH_SETTING": "1"}, {}, "unknown setting 'no_such_setting'"),
        ({}, {"log_level": "LOUD"}, "unknown level 'LOUD'"),
    ],
)
def test_bad_values_raise_config_error(
    environ: dict[str, str], overrides: dict[str, str], message: str
) -> None:
    """A wrong type, an out-of-range value, an unknown key: ConfigError naming the setting."""
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ, overrides=overrides)
    assert message in str(info.value)


def test_bad_config_files_raise_config_error(tmp_path: Path) -> None:
    """A missing file, invalid TOML or an unknown key in the file: ConfigError."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="config file"):
        load_settings(config_file=_toml(tmp_path, "port = = 1"), environ={})
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings(config_file=_toml(tmp_path, "prot = 1"), environ={})
    with pytest.raises(ConfigError, match="port: expected int"):
        load_settings(config_file=_toml(tmp_path, 'port = "x"'), environ={})


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
    args = ("--profile", "prod", "--auth", "none", "--metrics-interval", "0.1")
    with run_server(*args, tmp_path=tmp_path) as server:
        line = next(line for line in server.log().splitlines() if "settings={" in line)
        assert "'simulate': False" in line
        assert "'max_connections': 10000" in line
        assert "profile=prod" in line

        async def tps() -> list[float]:
            async with websockets.connect(server.ws("/ws/metrics")) as ws:
                return [orjson.loads(await asyncio.wait_for(ws.recv(), 5))["tps"] for _ in range(5)]

        assert asyncio.run(tps()) == [0, 0, 0, 0, 0]


def test_every_setting_has_help_and_a_profile_key_is_a_field() -> None:
    """Each field carries help text, and profiles only set fields that exist."""
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f.name
    for overrides in PROFILES.values():
        assert set(overrides) <= set(FIELDS)
