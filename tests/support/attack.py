"""Clients for the security tests: raw sockets from any loopback address, saying anything.

Per-address limits (handshake rate, connections per address) would make one
test's flood refuse the next test's handshakes, so every attacker here binds
its own source address in 127.0.0.0/8 (all of it is loopback on Linux); the
server sees each as a different client. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from tests.support.rawws import HttpResponse, read_http_response

__all__ = [
    "ControlClient",
    "Flood",
    "LiveProbe",
    "RawClient",
    "client_frame",
    "flood",
    "fresh_address",
    "rss_kib",
    "wait_until_read",
]

_addresses = itertools.count(1)


def fresh_address() -> str:
    """A loopback address no other test in this process has used (never 127.0.0.1)."""
    n = next(_addresses) + os.getpid() % 1000 * 10_000
    return f"127.{n // 64_000 % 254 + 1}.{n // 250 % 256}.{n % 250 + 2}"


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame; ``length`` overrides the declared payload length."""
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + body


class RawClient:
    """One TCP connection to the server from ``source``; nothing happens unless asked."""

    def __init__(
        self, port: int, source: str | None = None, timeout: float = 5.0, rcvbuf: int = 0
    ) -> None:
        """``rcvbuf``: a receive buffer this small (set before connecting, so the window is)."""
        self.source = source or fresh_address()
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((self.source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer in time; have {bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server; have {bytes(self.buf[:200])!r}")
        self.buf += chunk

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def upgrade(
        self,
        path: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        key: str | None = None,
        version: str = "13",
        method: str = "GET",
    ) -> HttpResponse:
        """Send an upgrade request; return the response (101 or an error with its body)."""
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            f"Sec-WebSocket-Version: {version}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.response()

    def response(self, timeout: float = 5.0) -> HttpResponse:
        """Read one HTTP response, with its body (a 101 has none)."""
        return read_http_response(self.sock, self.buf, timeout)

    def frame(self, timeout: float = 5.0) -> tuple[bool, int, int, bytes]:
        """Read one server frame: (fin, rsv bits, opcode, payload)."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._take(2, deadline)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8, deadline))[0]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._take(n, deadline)

    def until_close(
        self, timeout: float = 5.0, limit: int = 100_000
    ) -> tuple[int | None, list[bytes]]:
        """Read frames until a close; returns (its code or None if empty, pong payloads).

        Data frames (the stream's broadcast) are skipped.
        """
        deadline = time.monotonic() + timeout
        pongs: list[bytes] = []
        for _ in range(limit):
            _, _, opcode, payload = self.frame(max(0.001, deadline - time.monotonic()))
            if opcode == 0xA:
                pongs.append(payload)
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, pongs
        raise AssertionError(f"no close frame within {limit} frames")

    def closed_by_server(self, timeout: float = 5.0) -> bytes:
        """Wait for the server to close the connection; returns what it sent before."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"the server kept the connection open for {timeout} s; "
                    f"it sent {bytes(self.buf[:200])!r}"
                ) from None
            except OSError:  # end of stream, or a reset after the server closed
                return bytes(self.buf)


@dataclass
class ControlClient:
    """A well-behaved subscriber on a background thread; it records every ``seq`` it gets.

    ``times`` holds when each message arrived (``time.monotonic()``), for the longest gap
    between consecutive messages while an attack runs (:meth:`longest_gap`).
    """

    url: str
    seqs: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    error: BaseException | None = None
    closed: bool = False
    _thread: threading.Thread | None = None
    _ws: websockets.sync.client.ClientConnection | None = None

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            try:
                with websockets.sync.client.connect(
                    self.url, max_size=2**22, open_timeout=10, ping_interval=None
                ) as ws:
                    self._ws = ws
                    ready.set()
                    for message in ws:
                        self.times.append(time.monotonic())
                        self.seqs.append(int(orjson.loads(message)["seq"]))
            except ConnectionClosed as exc:
                self.error = exc
            except BaseException as exc:  # anything else is a test failure, reported by check()
                self.error = exc
            finally:
                self.closed = True
                ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(15), "control client did not connect"
        assert not self.closed, f"control client failed to connect: {self.error!r}"

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._thread is not None:
            self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait (bounded) until at least ``count`` messages have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.seqs) < count and time.monotonic() < deadline and not self.closed:
            time.sleep(0.02)
        assert len(self.seqs) >= count, f"got {len(self.seqs)} of {count} messages"

    def check(self, since: int) -> int:
        """Assert the client is open, got more since ``since`` messages, with no gap in seq."""
        self.wait_for(since + 1)
        assert not self.closed, f"control client was disconnected: {self.error!r}"
        seqs = list(self.seqs)
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
        assert not gaps, f"gaps in seq: {gaps[:5]}"
        return len(seqs)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without a message between ``start`` and ``end`` (monotonic seconds).

        It counts from the last message before ``start``, and a silence still going on at
        ``end`` counts up to ``end``.
        """
        times = list(self.times)
        before = [t for t in times if t < start]
        points = [before[-1] if before else start, *(t for t in times if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(points))


class LiveProbe:
    """Polls ``/q/health/live`` on a background thread; any answer but 200 UP is recorded.

    A liveness probe that fails is what gets a pod restarted: an attack must never cause one.
    """

    def __init__(self, base_url: str, interval: float = 0.2, timeout: float = 3.0) -> None:
        self.url = f"{base_url}/q/health/live"
        self.interval = interval
        self.timeout = timeout
        self.answers = 0
        self.failures: list[str] = []
        self.worst_lag_ms = 0.0  # the longest event-loop lag the server reported
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.wait(self.interval):
                try:
                    response = http.get(self.url)
                    self.answers += 1
                    body = response.json()
                    if response.status_code != 200 or body.get("status") != "UP":
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                    for check in body.get("checks", ()):
                        lag = check.get("data", {}).get("windowLagMs")
                        if isinstance(lag, int | float):
                            self.worst_lag_ms = max(self.worst_lag_ms, float(lag))
                except (httpx.HTTPError, ValueError) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def take_failures(self) -> list[str]:
        """The failures since the last call."""
        failures, self.failures = self.failures, []
        return failures


@dataclass(frozen=True)
class Flood:
    """One flood: ``opening`` once after the upgrade, then ``unit`` over and over."""

    name: str
    opening: bytes
    unit: bytes
    code: int  # the close code the server must answer it with


def _flood_once(port: int, attack: Flood, chunk: bytes, deadline: float) -> int | None:
    """One connection that floods until the server closes it or ``deadline``; its close code."""
    with RawClient(port) as client:
        assert client.upgrade("/ws/validators").status == 101
        client.sock.settimeout(1.0)
        try:
            client.sock.sendall(attack.opening)
            while time.monotonic() < deadline:
                client.sock.sendall(chunk)
        except OSError:  # the server stopped reading (a timeout) or closed (reset, pipe)
            pass
        try:
            code, _ = client.until_close(timeout=3.0)
        except (OSError, AssertionError):
            return None  # the connection ended without a close frame this client could read
        return code


def flood(
    port: int,
    attack: Flood,
    *,
    attackers: int = 2,
    duration: float = 3.0,
    cycles: int = 2000,
    cycle: float = 0.01,
) -> list[int | None]:
    """``attackers`` threads flood for ``duration`` s; each reconnects when it is closed.

    A thread starts at most one connection per ``cycle`` seconds: the attack is the frames,
    not a storm of handshakes (the handshake rate per address bounds those).
    Returns the close code of every attacking connection (``None``: none could be read).
    """
    repeat = max(1, 65536 // len(attack.unit))
    chunk = attack.unit * repeat
    deadline = time.monotonic() + duration
    codes: list[int | None] = []
    lock = threading.Lock()

    def attacker() -> None:
        pace = threading.Event()  # never set: its wait paces the reconnections
        for _ in range(cycles):
            started = time.monotonic()
            if started >= deadline:
                return
            code = _flood_once(port, attack, chunk, deadline)
            with lock:
                codes.append(code)
            pace.wait(max(0.0, started + cycle - time.monotonic()))

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(attackers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 30)
    return codes


def _tcp_queues() -> dict[tuple[str, str], tuple[int, int]]:
    """(local, remote) -> (tx_queue, rx_queue) of every IPv4 TCP socket (/proc/net/tcp)."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        tx, rx = (int(n, 16) for n in fields[4].split(":"))
        out[(fields[1], fields[2])] = (tx, rx)
    return out


def _proc_key(address: tuple[str, int]) -> str:
    return f"{socket.inet_aton(address[0])[::-1].hex().upper()}:{address[1]:04X}"


def wait_until_read(sock: socket.socket, timeout: float = 5.0) -> None:
    """Wait (bounded) until the server has read everything ``sock`` sent it so far.

    The kernel's queues are the readiness condition: nothing unacknowledged on the
    client's end, nothing unread on the server's. Then the next send arrives as a read
    of its own.
    """
    client = (_proc_key(sock.getsockname()), _proc_key(sock.getpeername()))
    server = (client[1], client[0])
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.002) + 1):
        queues = _tcp_queues()
        if queues.get(client, (1, 0))[0] == 0 and queues.get(server, (0, 1))[1] == 0:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.002)
    raise AssertionError(f"the server did not read what was sent within {timeout} s")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@contextmanager
def raw(port: int, source: str | None = None) -> Iterator[RawClient]:
    client = RawClient(port, source)
    try:
        yield client
    finally:
        client.close()
