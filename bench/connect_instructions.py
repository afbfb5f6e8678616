"""Instructions per WebSocket connect, counted by callgrind: a figure the noise cannot move.

CPU time per connect (bench/connect_cpu.py) moves by 10% from one minute to the next
on a shared machine. callgrind counts the instructions the process executes instead,
the same for the same code and input whatever else the machine is doing. This runs
the server's connect path in-process, without the kernel: the protocol factory uvicorn
calls (``Accept``), ``connection_made``, one complete upgrade head, the 101, the
subscription, and ``connection_lost``, against a transport that only keeps what is
written. Each tree is run twice under ``valgrind --tool=callgrind`` (with no connect
and with N) and the difference is divided by N, so start-up does not count.

    .venv/bin/python -m bench.connect_instructions --source /path/to/tree-a --source /path/b

It needs valgrind (Debian's ``valgrind``). The trees may be older checkouts: the
server is found as ``aurigraph_stream.server.build_server`` or, in trees from before
the layout by concern, ``aurigraph_stream.server.run.build_server``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEAD = (
    b"GET /ws/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


class _Transport:
    """Keeps what is written; enough of a transport for the connect path."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.written.extend(data)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


class _ServerState:
    def __init__(self) -> None:
        self.connections: set[Any] = set()


async def _connects(n: int) -> None:
    import dataclasses

    from aurigraph_stream.config import Settings, load_settings

    overrides = {
        "profile": "prod",
        "auth": "none",
        "handshake_rate": 0,
        "max_connections_per_ip": 0,
        "simulate": False,
        "max_connections": 1_000_000,
        "log_level": "WARNING",
        "gc_freeze_interval": 0,
    }
    if "ops_auth" in {f.name for f in dataclasses.fields(Settings)}:
        overrides["ops_auth"] = False  # prod's ops scope needs JWT; auth is off here
    settings = load_settings(environ={}, overrides=overrides)
    try:
        from aurigraph_stream.server import build_server
    except ImportError:  # a tree from before the layout by concern
        from aurigraph_stream.server.run import build_server  # type: ignore[import-not-found,no-redef]
    server = build_server(settings)
    node = getattr(server, "node", None) or server.runtime  # type: ignore[attr-defined]
    await node.start()
    factory: Any = server.config.http  # our Accept instance
    state = _ServerState()
    import gc

    gc.collect()
    gc.freeze()  # as the server does: start-up objects out of the collector's way
    for _ in range(n):
        connection = factory(server.config, state, None)
        transport: Any = _Transport()
        connection.connection_made(transport)
        connection.data_received(HEAD)
        if n and not transport.written[0].startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"the upgrade was refused: {transport.written[0][:200]!r}")
        connection.connection_lost(None)
    await node.stop()


def _count(source: Path, n: int) -> int:
    """Instructions the process executed, connecting ``n`` times."""
    env = dict(os.environ, PYTHONPATH=f"{source / 'src'}:{ROOT}")
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "bench.connect_instructions", "--run", str(n)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed for {source}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", type=Path, help="source tree (repeatable)")
    parser.add_argument("--connects", type=int, default=3000)
    parser.add_argument("--run", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:  # inside valgrind
        logging.disable(logging.CRITICAL)
        asyncio.run(_connects(args.run))
        return
    for source in args.source or [ROOT]:
        base = _count(source, 0)
        total = _count(source, args.connects)
        per = (total - base) / args.connects
        print(f"{source}: {per:,.0f} instructions per connect ({args.connects} connects)")


if __name__ == "__main__":
    main()
