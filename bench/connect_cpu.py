"""Server CPU time per WebSocket connect: what accepting one upgrade costs our server.

Starts ``aurigraph-stream serve`` from a source tree on a free loopback port, opens N
connections in batches of 500 from this process, and divides the server's CPU time
(/proc/PID/stat) over the connects by N. Compare two trees in one sitting:

    .venv/bin/python -m bench.connect_cpu --source /path/to/tree-a --source /path/to/tree-b

``--floor`` adds the floor reference (bench/floorserver.py, which only answers the
handshake) to every round: what accepting a connection costs before any server work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BATCH = 500
ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /ws/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    return reader, writer


async def _connect_all(port: int, pid: int, n: int) -> tuple[float, float]:
    for _ in range(400):  # bounded wait for readiness: 20 s
        try:
            _, writer = await _connect(port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        raise RuntimeError("server did not start")
    before, started = _cpu_seconds(pid), time.perf_counter()
    held = []
    for _ in range(0, n, BATCH):
        held += await asyncio.gather(*(_connect(port) for _ in range(BATCH)))
    cpu = _cpu_seconds(pid) - before
    return cpu / len(held) * 1e6, time.perf_counter() - started


def measure(source: Path | None, n: int) -> tuple[float, float]:
    """Return (server CPU microseconds per connect, wall seconds for all N).

    ``source`` None measures the floor reference instead of our server.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if source is None:
        command = [sys.executable, "-m", "bench.floorserver", "--port", str(port)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
    else:
        flags = ["--profile", "prod", "--auth", "none", "--handshake-rate", "0"]
        flags += ["--max-connections-per-ip", "0", "--no-simulate", "--log-level", "WARNING"]
        command = [sys.executable, "-m", "aurigraph_stream", "serve", "--port", str(port)]
        env = dict(os.environ, PYTHONPATH=str(source / "src"))
        help_text = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, env=env, timeout=60
        ).stdout
        if "--no-ops-auth" in help_text:  # prod keeps stats behind a token, which needs auth
            flags.append("--no-ops-auth")
        command += flags
    proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        return asyncio.run(_connect_all(port, proc.pid, n))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", type=Path, help="source tree (repeatable)")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over sources")
    parser.add_argument("--floor", action="store_true", help="also measure the floor reference")
    args = parser.parse_args()
    sources: list[Path | None] = list(args.source or [ROOT])
    if args.floor:
        sources.append(None)
    for _ in range(args.rounds):
        for source in sources:
            per_connect, wall = measure(source, args.connections)
            print(
                f"{source or 'floor'}: {args.connections} connects, "
                f"server CPU {per_connect:.0f} us each, wall {wall:.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
