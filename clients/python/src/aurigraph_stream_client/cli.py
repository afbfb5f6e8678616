"""``aurigraph-stream``, as installed by the client package: ``listen``, and the rest by the server.

::

    aurigraph-stream listen STREAM [--url URL] [filters...] [--since SEQ:EPOCH]
                                   [--replay N] [--snapshot] [--count N] [--json] [--token T]

The server package installs a command of the same name that hands ``listen``
to :func:`listen`; this one hands every other sub-command (``serve``,
``token``) to the server package when it is installed, and says that it is
needed when it is not. So the two behave the same, whichever was installed last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .client import DEFAULT_URL, Client
from .errors import StreamClientError
from .events import Gap, Snapshot
from .messages import FILTER_OPTIONS, SNAPSHOT_STREAMS, STREAMS
from .view import View, make_view
from .wire import FORMATS

__all__ = ["build_listen_parser", "listen", "main"]

PROG = "aurigraph-stream"
TOKEN_ENV = "AURIGRAPH_TOKEN"
SERVER_COMMANDS = ("serve", "token")


def _flag_names(option: str) -> list[str]:
    """``--minValue`` and its kebab-case twin ``--min-value``."""
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in option)
    return [f"--{option}"] + ([f"--{kebab}"] if kebab != option else [])


def build_listen_parser(prog: str = f"{PROG} listen") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Show a stream live: a table for metrics and consensus, a feed for the "
        "others, with reconnects and gaps as they happen. It resumes after every reconnect "
        "and never skips a message silently.",
    )
    parser.add_argument("stream", choices=STREAMS, help="the stream")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    parser.add_argument(
        "--token", default=None, help=f"access token (JWT); default: ${TOKEN_ENV} if set"
    )
    parser.add_argument("--format", choices=FORMATS, default="json", help="wire format")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="SEQ:EPOCH", help="resume after this position")
    start.add_argument("--replay", type=int, metavar="N", help="start with the last N messages")
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help=f"start with the current set ({', '.join(SNAPSHOT_STREAMS)})",
    )
    parser.add_argument(
        "--count", type=int, metavar="N", help="exit 0 after N messages (that pass the filter)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: messages as sent; gaps, snapshots and connection "
        "events with a type key",
    )
    filters = parser.add_argument_group("filters (each applies to the streams named)")
    seen: dict[str, list[str]] = {}
    for stream, options in FILTER_OPTIONS.items():
        for name in options:
            seen.setdefault(name, []).append(stream)
    for name, streams in seen.items():
        filters.add_argument(
            *_flag_names(name),
            dest=f"filter_{name}",
            metavar="VALUE",
            help=f"{', '.join(streams)}",
        )
    filters.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any filter option, by its protocol name",
    )
    return parser


def _convert(kind: str, name: str, text: str) -> Any:
    """A filter value from the command line, as the subscribe command takes it."""
    if kind in ("list", "fields"):
        return [v.strip() for v in text.split(",") if v.strip()]
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"--{name} must be true or false, not {text!r}")
        return text.lower() == "true"
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--{name} must be an integer, not {text!r}") from None
    return text  # wei (a decimal string) and choices: the server checks them


def filters_of(stream: str, args: argparse.Namespace) -> dict[str, Any]:
    """The filter options given on the command line, checked against the stream's.

    Raises:
        ValueError: an option the stream has not, or a value of the wrong kind.
    """
    options = FILTER_OPTIONS[stream]
    given: dict[str, str] = {}
    for key, value in vars(args).items():
        if key.startswith("filter_") and value is not None:
            given[key.removeprefix("filter_")] = value
    for pair in args.filter:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--filter takes NAME=VALUE, not {pair!r}")
        given[name] = value
    out = {}
    for name, text in given.items():
        if name not in options:
            raise ValueError(
                f"{name} is not a filter of {stream} (its filters: {', '.join(options)})"
            )
        out[name] = _convert(options[name], name, text)
    return out


async def _listen(args: argparse.Namespace, flt: dict[str, Any], view: View) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    client = Client(args.url, token=token, format=args.format, on_event=view.event)
    count = 0
    async with client:
        sub = client.subscribe(
            args.stream, filter=flt, replay=args.replay, since=args.since, snapshot=args.snapshot
        )
        async for item in sub:
            if isinstance(item, Gap):
                view.gap(item)
            elif isinstance(item, Snapshot):
                view.snapshot(item)
            else:
                view.message(item)
                count += 1
                if args.count is not None and count >= args.count:
                    return 0
    return 0


def listen(argv: Sequence[str], out: Any = None) -> int:
    """Run ``listen`` with its arguments (without the word ``listen``); the exit code."""
    parser = build_listen_parser()
    args = parser.parse_args(list(argv))
    try:
        flt = filters_of(args.stream, args)
        if args.snapshot and args.stream not in SNAPSHOT_STREAMS:
            raise ValueError(f"{args.stream} has no snapshot ({', '.join(SNAPSHOT_STREAMS)} do)")
        if args.count is not None and args.count < 1:
            raise ValueError("--count must be at least 1")
        view = make_view(args.stream, args.json, out)
    except (ValueError, ImportError) as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(_listen(args, flt, view))
    except StreamClientError as exc:
        print(f"{PROG} listen: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad --since or --url
        print(f"{PROG} listen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        view.close()


def _server_main() -> Callable[[Sequence[str]], int] | None:
    try:
        from aurigraph_stream.cli.main import main as server_main
    except ImportError:
        return None
    return server_main


def main(argv: Sequence[str] | None = None) -> int:
    """The ``aurigraph-stream`` command of the client package."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["listen"]:
        return listen(args[1:])
    server_main = _server_main()
    if server_main is not None:
        return server_main(args)
    overview = argparse.ArgumentParser(
        prog=PROG,
        description="Aurigraph Stream from the client package: listen to a stream. "
        f"{' and '.join(SERVER_COMMANDS)} need the server package (pip install aurigraph-stream).",
    )
    commands = overview.add_subparsers(dest="command", metavar="{listen}")
    commands.add_parser("listen", help="show a stream live (listen --help)", add_help=False)
    if not args or args[0] in ("-h", "--help"):
        overview.print_help()
        return 0
    if args[0] in SERVER_COMMANDS:
        print(
            f"{PROG} {args[0]}: this command needs the server package, which is not "
            "installed: pip install aurigraph-stream",
            file=sys.stderr,
        )
    else:
        print(
            f"{PROG}: unknown command {args[0]!r}; the client package has listen "
            f"({' and '.join(SERVER_COMMANDS)} need the server package: pip install "
            "aurigraph-stream)",
            file=sys.stderr,
        )
    return 2
