"""``aurigraph-stream token``: mint an access token for local use and tests.

It reads the same settings as ``serve`` (``--config``, ``AURIGRAPH_*``), so a
token minted next to a server is one that server accepts::

    AURIGRAPH_JWT_SECRET=... aurigraph-stream token --sub portal --streams metrics,consensus
    aurigraph-stream token --private-key issuer.pem --kid k1 --streams '*' --publish
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aurigraph_stream.config import ENV_PREFIX, load_settings, split_list
from aurigraph_stream.errors import ConfigError
from aurigraph_stream.streams import NAMES

__all__ = ["add_token_command", "run_token_command"]

# Settings the token command takes as flags, like serve does.
_SETTING_FLAGS = ("jwt_secret", "jwt_issuer", "jwt_audience")


def add_token_command(commands: Any) -> None:
    """Register the ``token`` sub-command on ``commands`` (an argparse subparsers object)."""
    token: argparse.ArgumentParser = commands.add_parser(
        "token",
        help="mint an access token (JWT) for local use",
        description="Print a signed access token. Signs with --private-key (RS256 or ES256) "
        f"or with jwt_secret (HS256); iss and aud come from the settings ({ENV_PREFIX}* "
        "environment, --config, or the flags below).",
    )
    token.add_argument("--config", metavar="PATH", default=None, help="TOML settings file")
    for name in _SETTING_FLAGS:
        token.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            metavar="STR",
            help=f"the {name} setting (env {ENV_PREFIX}{name.upper()})",
        )
    token.add_argument("--sub", dest="mint_sub", default="local", help="subject (default local)")
    token.add_argument(
        "--streams",
        dest="mint_streams",
        default="*",
        help=f"comma-separated streams it may read, or * for all (default *): {', '.join(NAMES)}",
    )
    token.add_argument(
        "--publish", dest="mint_publish", action="store_true", help="grant the publish scope"
    )
    token.add_argument(
        "--ops",
        dest="mint_ops",
        action="store_true",
        help="grant the ops scope (stats and metrics when ops_auth is on)",
    )
    token.add_argument(
        "--ttl",
        dest="mint_ttl",
        type=float,
        default=3600.0,
        help="seconds until it expires (default 3600; 0: no exp claim)",
    )
    token.add_argument(
        "--private-key", dest="mint_private_key", default=None, help="PEM private key to sign with"
    )
    token.add_argument("--kid", dest="mint_kid", default=None, help="key id for the JWT header")


def run_token_command(args: dict[str, Any], config_file: str | None) -> int:
    """Mint and print a token; exit code 2 with a message when it cannot."""
    from aurigraph_stream.access.tokens import mint_token

    mint = {key: args.pop(key) for key in list(args) if key.startswith("mint_")}
    streams = split_list(str(mint["mint_streams"]))
    unknown = [s for s in streams if s != "*" and s not in NAMES]
    try:
        if unknown:
            raise ConfigError(f"unknown streams {unknown}; streams: {', '.join(NAMES)}")
        if mint["mint_ttl"] < 0:
            raise ConfigError("--ttl must be 0 or more")
        settings = load_settings(config_file=config_file, overrides=args)
        token = mint_token(
            settings,
            subject=str(mint["mint_sub"]),
            streams=streams,
            publish=bool(mint["mint_publish"]),
            ops=bool(mint["mint_ops"]),
            ttl=float(mint["mint_ttl"]),
            private_key=mint["mint_private_key"],
            kid=mint["mint_kid"],
        )
    except ConfigError as exc:
        print(f"aurigraph-stream token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
