"""Instructions per connect on the sans-I/O path, counted by callgrind: exact, not timed.

CPU time per connect (``bench.connect_cpu``) moves by 5-10 % between runs on a shared
machine; an instruction count does not. This drives what every accepted socket costs our
code before any I/O: the first read's head (``read_upgrade_head``, or in older trees the
``whole_upgrade_head`` check and the session's own parse), a ``Session`` with its head
deadline, the check of the head, the 101, and one keepalive pong through the lone-pong
path. It runs the loop twice under ``valgrind --tool=callgrind``, with
``--connects`` and with none, and divides the difference, so start-up is not counted:

    .venv/bin/python -m bench.connect_instructions --source /path/to/tree-a --source /path/to/tree-b
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run in the measured interpreter: only the standard library and the tree under test.
_DRIVER = r"""
import sys
from aurigraph_stream.wire import handshake
from aurigraph_stream.wire.handshake import switching_protocols
from aurigraph_stream.ws.session import Session, SessionLimits

HEAD = (
    b"GET /ws/transactions HTTP/1.1\r\nHost: 127.0.0.1:9003\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)
PONG = bytes((0x8A, 0x89)) + b"abcd" + bytes(b ^ m for b, m in zip(b"keepalive", b"abcdabcda"))
limits = SessionLimits()
read = getattr(handshake, "read_upgrade_head", None)
for _ in range(int(sys.argv[1])):
    session = Session(limits, head_deadline=True)
    if read is not None:
        session.receive_head(read(HEAD, 16384))
    else:
        assert handshake.whole_upgrade_head(HEAD, 16384)
        session.receive_data(HEAD)
    (event,) = session.events_received()
    session.accept(switching_protocols(event.key, None, None), deflate=False)
    session.data_to_send()
    session.ping()
    session.data_to_send()
    session.receive_data(PONG)
    assert not session.awaiting_pong
"""


def _instructions(source: Path, connects: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(source / "src"), PYTHONHASHSEED="0")
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-c", _DRIVER, str(connects)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind summary:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def measure(source: Path, connects: int) -> float:
    """Instructions per connect of the tree at ``source`` (start-up subtracted)."""
    return (_instructions(source, connects) - _instructions(source, 0)) / connects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", type=Path, help="source tree (repeatable)")
    parser.add_argument("--connects", type=int, default=2000)
    args = parser.parse_args()
    for source in args.source or [ROOT]:
        per_connect = measure(source, args.connects)
        print(f"{source}: {per_connect:,.0f} instructions per connect", flush=True)


if __name__ == "__main__":
    main()
