"""Settings: defaults < profile < TOML file < ``AURIGRAPH_*`` environment < CLI flags.

Profiles mirror the spec's ``%dev`` and ``%prod``. A TOML file sets keys at
top level and per profile in ``[dev]`` / ``[prod]`` tables, like Quarkus'
``%dev.`` prefixes. Every field's ``help`` is also its CLI ``--help`` text.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aurigraph_stream.broker import is_shared
from aurigraph_stream.broker.history import HistoryPolicy, parse_policies
from aurigraph_stream.errors import ConfigError, shown
from aurigraph_stream.streams import NAMES

__all__ = ["KINDS", "PROFILES", "Settings", "coerce", "load_settings", "split_list"]

ENV_PREFIX = "AURIGRAPH_"


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the settings hold comma-separated lists."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _opt(default: Any, help: str, **bounds: float) -> Any:
    return field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True, slots=True)
class Settings:
    profile: str = _opt("dev", "settings profile: dev or prod")
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(9003, "TCP port to listen on", min=0, max=65535)
    max_frame_size: int = _opt(
        65536, "largest inbound frame, bytes; larger closes with 1009", min=125
    )
    max_message_size: int = _opt(
        1048576, "largest inbound message or request body, bytes; larger gets 1009 or 413", min=125
    )
    max_connections: int = _opt(5000, "open WebSocket connections; one more gets HTTP 503", min=1)
    compression: bool = _opt(True, "offer permessage-deflate to clients that ask for it")
    compression_level: int = _opt(6, "zlib level for permessage-deflate", min=1, max=9)
    broadcast_enabled: bool = _opt(True, "broadcast events to WebSocket subscribers")
    metrics_interval: float = _opt(1.0, "seconds between /ws/metrics messages", min=0.05)
    latency_target_ms: float = _opt(
        100.0,
        "broadcast latency target, ms: the flush governor holds it, and stats report the "
        "share of events over it",
        min=0,
    )
    latency_governor: bool = _opt(
        True,
        "under load, hold the next flush briefly so that queued events share one write per "
        "subscriber, and conflate the latest-wins streams (metrics, consensus), keeping "
        "broadcast latency under latency_target_ms (off: write at the end of every tick)",
    )
    max_buffered_bytes: int = _opt(
        1048576, "unsent bytes a subscriber may hold before it is closed as slow (4008)", min=1024
    )
    fanout_tick_budget: int = _opt(
        100_000,
        "work the hub does per event-loop tick before the rest of a batch waits for the "
        "next tick: one unit per delivery, 100 per frame built",
        min=1000,
    )
    ping_interval: float = _opt(30.0, "seconds between keepalive pings", min=0.05)
    ping_timeout: float = _opt(30.0, "seconds to wait for a pong before closing (4009)", min=0.05)
    close_timeout: float = _opt(5.0, "seconds to wait for a client's close reply", min=0.01)
    shutdown_timeout: float = _opt(10.0, "seconds SIGTERM waits for connections to close", min=0.1)
    retry_after: int = _opt(5, "Retry-After seconds sent with 503 when full", min=0)
    broker_url: str = _opt(
        "memory://",
        "broker: memory:// (one process) or redis://[:PASSWORD@]HOST:PORT/DB "
        "(rediss:// for TLS): one seq order and history shared by every process and node",
    )
    workers: int = _opt(
        1,
        "worker processes serving one port (SO_REUSEPORT); above 1 needs a redis:// broker",
        min=1,
        max=256,
    )
    history_size: int = _opt(1000, "events kept per stream for replay", min=1)
    history_max_age: float = _opt(
        0.0, "seconds an event stays in a stream's replay history (0: no time limit)", min=0
    )
    history_streams: str = _opt(
        "",
        "per-stream history bounds, STREAM=SIZE[:SECONDS],... "
        "(e.g. transactions=5000:300,metrics=600); others get history_size/history_max_age",
    )
    max_subscriptions: int = _opt(
        100, "subscriptions one connection may hold on the multiplexed /ws endpoint", min=1
    )
    max_connection_memory: int = _opt(
        524288,
        "bytes one connection's subscriptions (their filters' values) may hold; a subscribe "
        "over it gets memory_budget_exceeded",
        min=16384,
    )
    # GraphQL (docs/graphql.md): what one document and one /graphql connection may ask for.
    graphql_max_document_size: int = _opt(
        8192, "largest GraphQL document (the query text), bytes; larger is refused", min=64
    )
    graphql_max_depth: int = _opt(
        15, "deepest nesting of selections in a GraphQL document; deeper is refused", min=2
    )
    graphql_max_selections: int = _opt(
        100,
        "fields, fragment spreads and inline fragments in one GraphQL document; more is refused "
        "(validation cost grows with their square)",
        min=10,
    )
    graphql_max_operations: int = _opt(
        100, "operations one /graphql WebSocket may run at once (subscriptions included)", min=1
    )
    graphql_init_timeout: float = _opt(
        10.0, "seconds a /graphql WebSocket has to send connection_init; else close 4408", min=0.05
    )
    publisher_key: str | None = _opt(
        None, "shared key ingest requests must send in X-Publisher-Key (unset: no key)"
    )
    # Security (docs/security.md): who may connect and publish, and how much.
    ops_auth: bool = _opt(
        False,
        "stats (/api/v11/websocket/stats) and metrics (/q/metrics) need a token with the "
        "ops scope (prod: on; needs JWT)",
    )
    auth: str | None = _opt(
        None,
        "client authentication: jwt or none (unset: jwt when a JWT key is set, else none "
        "in dev; prod refuses to start)",
    )
    jwt_secret: str | None = _opt(None, "HS256 shared secret for access tokens")
    jwt_public_key: str | None = _opt(
        None, "PEM public key file for access tokens (RSA: RS256, EC P-256: ES256)"
    )
    jwt_jwks_file: str | None = _opt(None, "local JWKS file of access-token keys, chosen by kid")
    jwt_issuer: str | None = _opt(None, "required iss claim (unset: not checked)")
    jwt_audience: str | None = _opt(None, "required aud claim (unset: not checked)")
    jwt_leeway: float = _opt(0.0, "seconds of clock skew allowed on exp and nbf", min=0)
    jwt_require_exp: bool = _opt(True, "refuse access tokens without an exp claim")
    auth_expiry_grace: float = _opt(
        0.0, "seconds a WebSocket may outlive its token's exp before closing with 4001", min=0
    )
    ws_origins: str | None = _opt(
        None,
        "comma-separated Origins allowed to open WebSockets (* for any; unset: cors_origins); "
        "same-origin and Origin-less requests are always allowed",
    )
    trusted_proxies: str = _opt(
        "", "comma-separated proxy addresses or networks whose X-Forwarded-For is believed"
    )
    handshake_rate: float = _opt(
        10.0, "WebSocket handshakes per second per client IP (0: no limit); over: 429", min=0
    )
    handshake_burst: int = _opt(20, "handshakes a client IP may make at once", min=1)
    max_connections_per_ip: int = _opt(
        200, "open WebSockets per client IP (0: no limit); one more gets 429", min=0
    )
    inbound_message_rate: float = _opt(
        50.0, "messages per second one WebSocket may send (0: no limit); over: 4029", min=0
    )
    inbound_message_burst: int = _opt(100, "messages a client may send at once", min=1)
    inbound_frame_rate: float = _opt(
        200.0,
        "frames (data and control) per second one WebSocket may send (0: no limit); over: 4029",
        min=0,
    )
    inbound_frame_burst: int = _opt(400, "frames a client may send at once", min=1)
    max_fragments: int = _opt(
        64, "frames one inbound message may be split into; more closes with 1009", min=1
    )
    handshake_timeout: float = _opt(
        10.0, "seconds a client has to send a whole request head, else dropped", min=0.05
    )
    max_head_size: int = _opt(16384, "largest request head, bytes; larger gets 431", min=1024)
    tls_cert: str | None = _opt(None, "PEM certificate chain file: serve https:// and wss://")
    tls_key: str | None = _opt(None, "PEM private key file of --tls-cert")
    simulate: bool = _opt(False, "feed the streams from the built-in simulated network")
    seed: int | None = _opt(None, "random seed for the simulator (reproducible runs)")
    sim_tx_rate: float = _opt(20.0, "simulated new transactions per second", min=0)
    sim_validators: int = _opt(21, "simulated validators", min=1, max=10000)
    sim_peers: int = _opt(16, "simulated peers connected at start", min=0, max=100000)
    sim_block_time: float = _opt(1.0, "seconds per simulated consensus round", min=0.05)
    log_level: str = _opt("INFO", "log level: DEBUG, INFO, WARNING, ERROR")
    log_format: str = _opt("text", "log lines: text (readable) or json (one object per line)")
    cors_origins: str = _opt(
        "https://dlt.aurigraph.io,http://localhost:5173",
        "comma-separated origins allowed by CORS on the HTTP endpoints (* for any; empty: none)",
    )
    cors_methods: str = _opt("GET,POST,PUT,DELETE,OPTIONS", "comma-separated CORS methods")
    cors_headers: str = _opt("Content-Type,Authorization", "comma-separated CORS request headers")
    cors_credentials: bool = _opt(True, "CORS: allow credentials (cookies, Authorization)")
    loop_lag_threshold: float = _opt(
        5.0, "event-loop lag, seconds, past which /q/health/live reports DOWN", min=0.001
    )
    loop_lag_interval: float = _opt(0.5, "seconds between event-loop lag readings", min=0.01)
    shutdown_delay: float = _opt(
        0.0,
        "seconds SIGTERM keeps serving with readiness DOWN before closing connections",
        min=0,
    )
    gc_freeze_interval: float = _opt(
        2.0,
        "seconds between collecting young garbage and freezing survivors (0: off)",
        min=0,
    )
    gc_full_interval: float = _opt(
        600.0, "seconds between full garbage collections of frozen objects (0: never)", min=0
    )

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"profile must be one of {sorted(PROFILES)}, not {self.profile!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"log_level: unknown level {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, not {self.log_format!r}")
        self.history_policies()  # raises ConfigError for a bad history_streams
        if self.workers > 1 and not is_shared(self.broker_url):
            scheme = self.broker_url.partition("://")[0]
            raise ConfigError(
                f"workers = {self.workers} needs a shared broker: with {scheme}:// each process "
                "would number and keep its own events; use --broker-url redis://HOST:PORT/DB"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            # NaN passes every comparison below, and infinity every minimum; an integer
            # past a C size would overflow where it is used, long after the start.
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, not {value}")
            if abs(value) > sys.maxsize:
                raise ConfigError(f"{f.name} must be at most {sys.maxsize}, not {shown(value)}")
            if "min" in f.metadata and value < f.metadata["min"]:
                raise ConfigError(f"{f.name} must be at least {f.metadata['min']}, not {value}")
            if "max" in f.metadata and value > f.metadata["max"]:
                raise ConfigError(f"{f.name} must be at most {f.metadata['max']}, not {value}")

    def history_policies(self) -> dict[str, HistoryPolicy]:
        """Each stream's history bounds: ``history_streams`` over the two defaults."""
        default = HistoryPolicy(self.history_size, self.history_max_age)
        return parse_policies(self.history_streams, NAMES, default)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# The spec's %dev and %prod overrides, applied over the field defaults.
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {
        "metrics_interval": 2.0,
        "log_level": "DEBUG",
        "log_format": "text",
        "simulate": True,
        # Local tools and test suites open many connections from one address.
        "handshake_rate": 0.0,
        "max_connections_per_ip": 0,
    },
    "prod": {
        "max_connections": 10000,
        # Connection counts, refusals, limits and process details are for operators.
        "ops_auth": True,
        "log_level": "INFO",
        "log_format": "json",
        "simulate": False,
    },
}

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _kinds() -> dict[str, tuple[type, bool]]:
    """Each setting's value type and whether it may be unset (``None``), from its type hint."""
    kinds: dict[str, tuple[type, bool]] = {}
    for name, hint in typing.get_type_hints(Settings).items():
        args = typing.get_args(hint)
        if type(None) in args:  # ``X | None``
            (base,) = (a for a in args if a is not type(None))
            kinds[name] = (base, True)
        else:
            kinds[name] = (hint, False)
    return kinds


#: name -> (value type, optional): what ``coerce`` converts to.
KINDS = _kinds()

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


def coerce(name: str, raw: Any) -> Any:
    """Convert a value from TOML, the environment or the CLI to the field's type.

    Raises:
        ConfigError: for an unknown key or a value of the wrong type.
    """
    if name not in KINDS:
        raise ConfigError(f"unknown setting {name!r}")
    kind, optional = KINDS[name]
    if raw is None or (optional and raw == ""):
        if optional:
            return None
        raise ConfigError(f"{name} needs a value")
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError(raw)
        if isinstance(raw, bool):  # a TOML true is not a number
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError(raw)
        return raw
    except (ValueError, OverflowError):  # OverflowError: float() of a huge TOML integer
        raise ConfigError(f"{name}: expected {kind.__name__}, got {shown(raw)}") from None


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge every source of settings, lowest precedence first.

    ``overrides`` are CLI flags (or keyword arguments when embedding).
    The config file may also come from ``AURIGRAPH_CONFIG``.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    env = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG"
    }
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    file_values: dict[str, Any] = {}
    file_profiles: dict[str, dict[str, Any]] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in data.items():
            if key in PROFILES and isinstance(value, dict):
                file_profiles[key] = value
            else:
                file_values[key] = value

    profile = str(
        overrides.get("profile") or env.get("profile") or file_values.get("profile") or "dev"
    )
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
    merged: dict[str, Any] = dict(PROFILES[profile])
    for layer in (file_values, file_profiles.get(profile, {}), env, overrides):
        for key, value in layer.items():
            merged[key] = coerce(key, value)
    merged["profile"] = profile
    return Settings(**merged)
