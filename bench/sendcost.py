"""What one loopback ``send()`` costs on this machine, measured at the start of every run.

A broadcast to N subscribers is N ``send()`` calls in a row, whatever the
server; on loopback each one also runs the receiver's TCP processing in the
sender's system call. So the time the kernel takes for one ``send()`` of a
message-sized payload bounds every server's fan-out from below, and it moves
with the machine (virtualisation, other work, kernel version). Measuring it in
the run that measures the servers makes the report say which floor they were
measured on.

How: N loopback TCP connections (TCP_NODELAY, blocking), then several rounds
of one ``send()`` of the payload on each accepted socket, with nobody reading
(the payloads stay in the receive buffers, far below their size). Per round:
wall-clock time over the N sends, and the thread's kernel time from
``getrusage(RUSAGE_THREAD)`` (microsecond resolution: ``os.times()`` counts in
10 ms clock ticks, too coarse for a round of a few tens of ms). The figures are
the medians over rounds, per send. Every socket is closed with a TCP reset
(``SO_LINGER`` 0), so no TIME_WAIT is left behind.

Run alone: ``.venv/bin/python -m bench.sendcost [--pairs N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import statistics
import struct
import time
from dataclasses import dataclass

from bench.procstat import raise_open_file_limit

__all__ = ["SendCost", "main", "measure"]

HOST = "127.0.0.1"
PAIRS = 2_000
ROUNDS = 7
PAYLOAD = 300  # bytes: about one transaction event as a frame
BROADCAST = 10_000  # the scenario 2 fan-out: what this many sends in a row cost
_LINGER_RST = struct.pack("ii", 1, 0)
_SPARE_FDS = 64  # descriptors left for everything else in the process


@dataclass(frozen=True)
class SendCost:
    """Medians per ``send()`` over the rounds, in microseconds."""

    pairs: int
    rounds: int
    payload: int
    wall_us: float
    kernel_us: float
    user_us: float

    def broadcast_ms(self, n: int = BROADCAST) -> tuple[float, float]:
        """(wall, kernel) milliseconds for ``n`` such sends in a row."""
        return self.wall_us * n / 1000, self.kernel_us * n / 1000

    def describe(self) -> str:
        wall, kernel = self.broadcast_ms()
        return (
            f"one loopback TCP send() of {self.payload} B costs {self.wall_us:.1f} us wall, "
            f"{self.kernel_us:.1f} us kernel (median of {self.rounds} rounds over "
            f"{self.pairs:,} sockets, nobody reading); {BROADCAST:,} in a row: "
            f"{wall:.0f} ms wall, {kernel:.0f} ms kernel"
        )


def _pairs_allowed(wanted: int) -> int:
    """How many socket pairs fit under the open-file limit (two descriptors each)."""
    raise_open_file_limit()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - _SPARE_FDS) // 2))


def measure(pairs: int = PAIRS, rounds: int = ROUNDS, payload: int = PAYLOAD) -> SendCost:
    """Open ``pairs`` connections, time ``rounds`` rounds of one send on each, close all."""
    pairs = _pairs_allowed(pairs)
    rounds = max(1, rounds)
    data = b"x" * payload
    socks: list[socket.socket] = []
    senders: list[socket.socket] = []
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(listener)
        listener.bind((HOST, 0))
        listener.listen(min(pairs, 4096))
        listener.settimeout(10.0)
        address = listener.getsockname()
        for _ in range(pairs):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(client)
            client.settimeout(10.0)
            client.connect(address)
            accepted, _ = listener.accept()
            socks.append(accepted)
            senders.append(accepted)
        for sock in socks[1:]:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)  # blocking, as a server's socket is when it has room
        walls: list[float] = []
        kernels: list[float] = []
        users: list[float] = []
        send = socket.socket.send
        for _ in range(rounds):
            r0 = resource.getrusage(resource.RUSAGE_THREAD)
            t0 = time.perf_counter()
            for sock in senders:
                send(sock, data)
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_THREAD)
            walls.append((t1 - t0) / pairs * 1e6)
            kernels.append((r1.ru_stime - r0.ru_stime) / pairs * 1e6)
            users.append((r1.ru_utime - r0.ru_utime) / pairs * 1e6)
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            sock.close()
    return SendCost(
        pairs=pairs,
        rounds=rounds,
        payload=payload,
        wall_us=statistics.median(walls),
        kernel_us=statistics.median(kernels),
        user_us=statistics.median(users),
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sendcost", description=__doc__)
    parser.add_argument("--pairs", type=int, default=PAIRS, help=f"connections (default {PAIRS})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds (default {ROUNDS})")
    parser.add_argument("--payload", type=int, default=PAYLOAD, help="bytes per send")
    args = parser.parse_args()
    cost = measure(args.pairs, args.rounds, args.payload)
    print(cost.describe())
    print(f"user time per send: {cost.user_us:.1f} us")


if __name__ == "__main__":
    main()
