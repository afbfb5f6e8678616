"""``aurigraph-stream``: the command line. Thin: it builds Settings and runs the server.

``listen`` belongs to the client package (aurigraph_stream_client.cli), which
installs a command of the same name; both hand each other what they do not do.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from aurigraph_stream import __version__
from aurigraph_stream.access.redact import redact_url
from aurigraph_stream.cli.token import add_token_command, run_token_command
from aurigraph_stream.config import ENV_PREFIX, FIELDS, KINDS, PROFILES, Settings, load_settings
from aurigraph_stream.errors import ConfigError

__all__ = ["build_parser", "main"]


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        kind = KINDS[name][0]
        env = ENV_PREFIX + name.upper()
        default = getattr(defaults, name)
        per_profile = ", ".join(f"{p}: {o[name]}" for p, o in PROFILES.items() if name in o)
        profiles = f"; {per_profile}" if per_profile else ""
        help_text = f"{f.metadata['help']} (default {default}{profiles}; env {env})"
        if kind is bool:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            metavar = kind.__name__.upper()
            parser.add_argument(
                flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurigraph-stream",
        description="Real-time WebSocket streams of the Aurigraph V11 platform.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Settings: defaults < profile < --config file < "
        f"{ENV_PREFIX}* environment < these flags.",
    )
    serve.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help=f"TOML settings file (env {ENV_PREFIX}CONFIG)",
    )
    _add_setting_flags(serve)
    add_token_command(commands)
    # Listed for --help; main() hands `listen ...` to the client package before parsing.
    commands.add_parser(
        "listen", help="show a stream live in the terminal (listen --help)", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["listen"]:
        return _listen(argv[1:])
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    config_file = args.pop("config", None)
    if command == "token":
        return run_token_command(args, config_file)
    try:
        settings = load_settings(config_file=config_file, overrides=args)
    except ConfigError as exc:
        print(f"aurigraph-stream: {exc}", file=sys.stderr)
        return 2
    if command == "serve":
        return _serve(settings)
    return 2  # pragma: no cover - argparse requires a command


def _listen(argv: Sequence[str]) -> int:
    try:
        from aurigraph_stream_client.cli import listen
    except ImportError:
        print(
            "aurigraph-stream listen: this command needs the client package, which is not "
            "installed: pip install aurigraph-stream-client",
            file=sys.stderr,
        )
        return 2
    return listen(argv)


def _serve(settings: Settings) -> int:
    # Imported here: ``token`` and ``--help`` need no web stack.
    from aurigraph_stream.ops.logs import configure_logging
    from aurigraph_stream.server import build_server

    configure_logging(settings)
    if settings.workers > 1:
        from aurigraph_stream.cli.workers import serve_workers

        _log_settings(settings)
        try:
            return serve_workers(settings)
        except OSError as exc:  # the port is taken, or the address not ours
            print(f"aurigraph-stream: cannot listen on {settings.host}:{settings.port}: {exc}")
            return 2
    try:
        server = build_server(settings)
    except ConfigError as exc:
        print(f"aurigraph-stream: {exc}", file=sys.stderr)
        return 2
    _log_settings(settings)
    server.run()
    return 0 if server.started else 1


def _log_settings(settings: Settings) -> None:
    secret = ("publisher_key", "jwt_secret")
    shown: dict[str, Any] = {
        k: ("***" if v is not None and k in secret else v)
        for k, v in dataclasses.asdict(settings).items()
    }
    # A broker URL may carry a password.
    shown["broker_url"] = redact_url(settings.broker_url)
    # A log record, not a print: in the prod profile every line of output is JSON.
    logging.getLogger("aurigraph_stream.cli").info(
        "aurigraph-stream %s profile=%s settings=%s", __version__, settings.profile, shown
    )
