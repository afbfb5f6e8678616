"""Settings without I/O: defaults < profile < TOML file < AURIGRAPH_* environment < overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aurigraph_stream.config import FIELDS, PROFILES, Settings, load_settings
from aurigraph_stream.errors import ConfigError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aurigraph.toml"
    path.write_text(text)
    return path


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ping_interval = nan", "ping_interval must be a finite number, not nan"),
        ("close_timeout = inf", "close_timeout must be a finite number, not inf"),
        ("latency_target_ms = -inf", "latency_target_ms must be a finite number"),
        ("history_max_age = nan", "history_max_age must be a finite number"),
        ("history_size = 1e300", "history_size must be at most 9223372036854775807"),
        ("max_connections = " + "9" * 30, "max_connections must be at most"),
        ("ping_interval = 1" + "0" * 400, "ping_interval: expected float, got 1000"),
        ("port = inf", "port: expected int, got inf"),
        ('history_streams = "transactions=10:inf"', "SECONDS >= 0 and finite"),
        ('history_streams = "transactions=10:nan"', "SECONDS >= 0 and finite"),
        ('history_streams = "transactions=' + "9" * 30 + '"', "SIZE from 1 to"),
    ],
)
def test_numbers_no_setting_can_use_are_refused_at_load(
    tmp_path: Path, text: str, message: str
) -> None:
    """NaN passes every bound check and infinity every minimum; a TOML integer too large for
    a float, or a size too large for a C integer, overflowed later (the history's deque at
    start). Each is a ConfigError naming the setting, with the value cut short."""
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=_toml(tmp_path, text), environ={})
    assert message in str(info.value)
    assert len(str(info.value)) < 200


def test_every_setting_has_help_and_a_profile_key_is_a_field() -> None:
    """Each field carries help text, and profiles only set fields that exist."""
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f.name
    for overrides in PROFILES.values():
        assert set(overrides) <= set(FIELDS)


def test_more_than_one_worker_needs_a_broker_that_processes_share() -> None:
    """workers > 1 is refused unless the broker is shared (redis://, rediss://), whatever
    else the URL names: each process would number its own events."""
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380/1"):
        assert Settings(workers=4, broker_url=url).workers == 4
    assert Settings(workers=1, broker_url="memory://").workers == 1
    for url in ("memory://", "nats://127.0.0.1:4222"):
        with pytest.raises(ConfigError, match="needs a shared broker"):
            Settings(workers=2, broker_url=url)
