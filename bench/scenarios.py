"""The standard scenarios. Each runs every selected server on the same load, one
after the other, within the same run, so results compare as ratios.

A *phase* is the unit of measurement: reset the generator's figures, publish
at a fixed rate for a fixed time, wait (bounded) until every connection has
the last message, then read latency, loss, and the CPU the server and the
generator used over that window.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.gcwatch import pauses_between
from bench.loadgen import LoadGenerator, Snapshot
from bench.probe import probe_address_filter
from bench.procstat import open_fds
from bench.profiling import Profiler
from bench.publisher import SINK, Publisher, PublishResult
from bench.sendcost import SendCost
from bench.servers import HOST, SERVERS, Aurigraph, BenchServer, RedisProcess

__all__ = ["SCENARIOS", "Bench", "Options", "Row"]

MB = 1_000_000
STREAMS = ("metrics", "transactions", "validators", "consensus", "network")


@dataclass(frozen=True)
class Options:
    """What to run; the command line's flags (``python -m bench --help``)."""

    quick: bool = False
    servers: tuple[str, ...] = ("aurigraph", "websockets", "nchan", "floor")
    workers: int = 2
    connections: int = 10_000  # scenarios 2, 3 and 4
    capacity_subscribers: int = 1_000
    mixed_clients: int = 1_000
    pyspy: bool = False
    gc_watch: bool = False
    server_args: tuple[str, ...] = ()  # extra flags for our server
    gc_freeze: float = 0.0  # what-if: gc.freeze() in our server every this many seconds
    source: Path | None = None  # run our server from this source tree
    # Scenario 7: the spec's rate, one this machine keeps up with, and the unfiltered
    # subscribers of /ws/metrics (and as many of /ws/consensus).
    throughput_rate: float = 50_000.0
    throughput_steady_rate: float = 10_000.0
    # Seconds of the two phases; None: 30 and 15 (quick: 3, and no steady phase).
    throughput_seconds: tuple[float, float] | None = None
    watchers: int = 100
    # Scenario 8's ramp (msg/s); None: the standard one (GOVERNOR_RATES, quick: fewer).
    governor_rates: tuple[float, ...] | None = None
    # Scenario 10: its end-to-end phases (rate, seconds), and how many single events the
    # server-side fan-out time is taken over.
    cores_phases: tuple[tuple[float, float], ...] = ((1.0, 35.0), (10.0, 10.0))
    fanout_events: int = 100
    # Scenario 11: seconds per phase, and rounds (memory, then Redis, in each).
    redis_seconds: float = 10.0
    redis_rounds: int = 2
    # The soak (scenario 9): its length in seconds (0: not run), and its load.
    soak: float = 0.0
    soak_subscribers: int = 5_000
    # The subscribers filter on one of this many addresses, which the events take in turn
    # (0: all of them on the whole stream): 5,000 x 200 events/s unfiltered would be
    # 1,000,000 deliveries/s, more than this machine delivers; a soak is about time.
    soak_groups: int = 50
    soak_churn: int = 100  # subscribers dropped and resumed with since, per second
    soak_rate: float = 200.0  # events/s
    soak_slow_every: float = 60.0  # seconds between slow readers
    # Seconds a reader that stops needs to fall max_buffered_bytes (1 MiB) behind at 200
    # events/s (about 66 KB/s), plus the few MB the kernel's socket buffers hold.
    soak_slow_close: float = 90.0
    soak_settle: float = 60.0  # RSS growth is measured from this far into the soak

    @property
    def step_seconds(self) -> float:
        return 2.0 if self.quick else 6.0

    @property
    def capacity_rates(self) -> tuple[float, ...]:
        return QUICK_RATES if self.quick else FULL_RATES


# Scenario 1's ramp, in messages/s to 1,000 subscribers.
FULL_RATES: tuple[float, ...] = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200)
FULL_RATES += (250, 300, 400, 500, 650, 800)
QUICK_RATES: tuple[float, ...] = (10, 30, 80, 150)

FIXED_RATE = 10.0  # scenario 1 step at which CPU per delivery is compared (x 1,000 subscribers)
TARGET_MS = 100.0  # the spec's broadcast latency target (latency_target_ms): a step passes under it

# Scenario 8's ramp: single-event requests pipelined on one connection, msg/s.
# Past 400 (the ramp the target names) as scenario 1 goes, while any server still passes.
GOVERNOR_RATES: tuple[float, ...] = (50, 100, 150, 200, 250, 300, 350, 400, 500, 650, 800)
GOVERNOR_QUICK_RATES: tuple[float, ...] = (100, 300)


@dataclass
class Row:
    """One measured phase of one server in one scenario."""

    scenario: str
    server: str
    phase: str
    subscribers: int
    rate: float = 0.0  # offered messages/s
    published: int = 0
    deliveries: int = 0
    deliveries_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    lost: int = 0
    out_of_order: int = 0
    dropped: int = 0
    connect_s: float | None = None
    rss_per_1k_mb: float | None = None
    server_cpu_pct: float | None = None
    cpu_us_per_delivery: float | None = None
    loadgen_cpu_pct: float | None = None
    passed: bool | None = None
    note: str = ""
    # Publishing: the p99 of request written to answer read (ingest's acknowledgement),
    # and the server's CPU per published event.
    ack_p99_ms: float | None = None
    cpu_us_per_event: float | None = None


@dataclass
class Results:
    """Everything a run produced, for the report."""

    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # scenario -> reason
    profiles: dict[str, str] = field(default_factory=dict)  # title -> summary text
    log: list[str] = field(default_factory=list)
    send_cost: SendCost | None = None  # the machine's loopback send() cost, start of the run
    soak: dict[str, SoakFigures] = field(default_factory=dict)  # per server


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000


class Bench:
    """Shared state of one run: options, the load generator, a work dir, the results."""

    def __init__(self, opts: Options, loadgen: LoadGenerator, workdir: Path) -> None:
        self.opts = opts
        self.lg = loadgen
        self.workdir = workdir
        self.results = Results()

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.results.log.append(line)

    def add(self, row: Row) -> Row:
        self.results.rows.append(row)
        p99 = "-" if row.p99_ms is None else f"{row.p99_ms:.1f}"
        cpu = "-" if row.cpu_us_per_delivery is None else f"{row.cpu_us_per_delivery:.1f}"
        rss = "-" if row.rss_per_1k_mb is None else f"{row.rss_per_1k_mb:.2f}"
        self.say(
            f"  {row.scenario} {row.server:<10} {row.phase:<22} deliveries/s="
            f"{row.deliveries_per_s:,.0f} p99={p99}ms lost={row.lost} ooo={row.out_of_order} "
            f"dropped={row.dropped} cpu/delivery={cpu}us rss/1k={rss}MB "
            f"loadgen={row.loadgen_cpu_pct or 0:.0f}% {row.note}"
        )
        return row

    def servers(self, *, ours_only: bool = False) -> list[str]:
        names = [n for n in self.opts.servers if n in SERVERS]
        return [n for n in names if n == "aurigraph"] if ours_only else names

    def skip_floor(self, scenario: str, reason: str) -> None:
        """Say that the floor server, selected for this run, does not take part here."""
        if "floor" in self.servers():
            self.results.skipped[f"{scenario} (floor)"] = reason
            self.say(f"scenario {scenario}: floor skipped: {reason}")

    @contextlib.contextmanager
    def running(
        self, name: str, *, simulate: bool = False, gc_watch: bool = False
    ) -> Iterator[BenchServer]:
        """Start a fresh server; on exit drop every connection and stop it.

        ``gc_watch``: our server logs its collector's pauses even without ``--gc-watch``.
        """
        kind = SERVERS[name]
        server = kind(self.workdir, self.opts.source if issubclass(kind, Aurigraph) else None)
        if isinstance(server, Aurigraph):
            server.gc_watch = self.opts.gc_watch or gc_watch
            server.extra_args = self.opts.server_args
            server.gc_freeze = self.opts.gc_freeze
        server.start(simulate=simulate)
        try:
            yield server
        finally:
            with contextlib.suppress(Exception):
                self.lg.close(server.name)
            server.stop()

    def connect(
        self,
        server: BenchServer,
        paths: list[str],
        *,
        deflate: bool = False,
        graphql: list[str] | None = None,
    ) -> tuple[float, int]:
        """Open the connections; returns (seconds, how many opened)."""
        result = self.lg.connect(
            HOST, server.port, paths, deflate=deflate, group=server.name, graphql=graphql
        )
        note = f" failed={result.failed}" if result.failed else ""
        if deflate:
            note += (
                f" deflate={result.deflate} (server context takeover: {result.context_takeover})"
            )
        self.say(
            f"  {server.name}: {result.opened}/{result.requested} connected in "
            f"{result.seconds:.2f}s{note}"
        )
        return result.seconds, result.opened

    def connect_control(
        self, server: BenchServer, paths: list[str], *, stride: int = 1
    ) -> tuple[float, int]:
        """Open connections whose paths ask for a starting point (a subscribed frame first).

        ``stride``: each one's seqs are that far apart (its address's share of the events).
        """
        result = self.lg.connect(
            HOST, server.port, paths, group=server.name, control=True, stride=stride
        )
        self.say(
            f"  {server.name}: {result.opened}/{result.requested} connected in "
            f"{result.seconds:.2f}s{f' failed={result.failed}' if result.failed else ''}"
        )
        return result.seconds, result.opened

    def warm_baseline(self, server: BenchServer, path: str) -> int:
        """Open and close one connection, then return the settled RSS with none open."""
        self.lg.connect(HOST, server.port, [path], group=server.name)
        self.lg.close(server.name)
        return settle_rss(server)

    def phase(
        self,
        server: BenchServer,
        pub: Publisher,
        first: int,
        *,
        scenario: str,
        phase: str,
        subscribers: int,
        rate: float,
        seconds: float,
        addresses: tuple[str, ...] = (SINK,),
        broadcast: bool = True,
        pair: bool = False,
        per_event: int = 1,
        group: str | None = None,
    ) -> tuple[Row, PublishResult]:
        """Publish at ``rate`` for ``seconds`` and measure what the subscribers got.

        ``pair``: each transaction goes between two of ``addresses``; ``per_event``: the
        deliveries each event makes when not a broadcast (2 for a pair, each to its two
        address subscribers); ``group``: the load generator's group (the server's name).
        """
        lg = self.lg
        group = group or server.name
        lg.reset(first, group)
        wall0 = time.time()
        t0 = time.monotonic()
        cpu0, lg0 = server.cpu(), lg.cpu_seconds()
        pub_result = pub.run(rate, seconds, addresses, pair=pair)
        drain = 5.0 if self.opts.quick else 10.0
        if broadcast:
            lg.wait_delivered(last_seq=pub_result.last, timeout=drain, group=group)
        else:
            lg.wait_delivered(deliveries=per_event * pub_result.sent, timeout=drain, group=group)
        t1 = time.monotonic()
        cpu1, lg1 = server.cpu(), lg.cpu_seconds()
        expected = pub_result.last - pub_result.first + 1 if broadcast else 0
        snap = lg.snapshot(expected, group)
        lost = snap.lost if broadcast else max(0, per_event * pub_result.sent - snap.deliveries)
        row = self._row(
            scenario, server.name, phase, subscribers, snap, t1 - t0, cpu1 - cpu0, lg1 - lg0
        )
        row.rate = rate
        row.published = pub_result.sent
        row.lost = lost
        nominal = pub_result.sent / rate if rate else seconds
        row.deliveries_per_s = snap.deliveries / nominal if nominal else 0.0
        row.ack_p99_ms = pub_result.ack_p99_ms
        if pub_result.sent:
            row.cpu_us_per_event = 1e6 * (cpu1 - cpu0) / pub_result.sent
        if pub_result.sent < round(rate * seconds):
            row.note += f"publisher sent {pub_result.sent}/{round(rate * seconds)} "
        if pub_result.acked < pub_result.requests:
            row.note += f"answered {pub_result.acked}/{pub_result.requests} requests "
        self.note_gc(server, row, wall0, time.time())
        return row, pub_result

    def note_gc(self, server: BenchServer, row: Row, start: float, end: float) -> None:
        """With --gc-watch: add the server's garbage-collector pauses in the window."""
        if not (self.opts.gc_watch and isinstance(server, Aurigraph)):
            return
        pauses = pauses_between(server.log_path, start, end)
        if pauses:
            full = [ms for gen, ms in pauses if gen == 2]
            row.note += (
                f"GC pauses >= 5 ms: {len(pauses)}, longest {max(ms for _, ms in pauses):.0f} ms"
            )
            row.note += f" ({len(full)} full, longest {max(full):.0f} ms) " if full else " "

    def _row(
        self,
        scenario: str,
        server: str,
        phase: str,
        subscribers: int,
        snap: Snapshot,
        window: float,
        server_cpu: float,
        loadgen_cpu: float,
    ) -> Row:
        hist = snap.hist
        row = Row(
            scenario=scenario,
            server=server,
            phase=phase,
            subscribers=subscribers,
            deliveries=snap.deliveries,
            p50_ms=_ms(hist.percentile_us(0.50)),
            p99_ms=_ms(hist.percentile_us(0.99)),
            p999_ms=_ms(hist.percentile_us(0.999)),
            max_ms=_ms(hist.max_us) if hist.count else None,
            out_of_order=snap.out_of_order,
            dropped=snap.dropped,
            server_cpu_pct=100 * server_cpu / window if window else None,
            cpu_us_per_delivery=1e6 * server_cpu / snap.deliveries if snap.deliveries else None,
            loadgen_cpu_pct=100 * loadgen_cpu / window if window else None,
        )
        if snap.closes:
            row.note += f"close codes {snap.closes} "
        if snap.bad:
            row.note += f"{snap.bad} unparseable "
        return row

    def profile(self, server: BenchServer, title: str, seconds: float) -> Profiler | None:
        if not self.opts.pyspy:
            return None
        return Profiler(
            server.pid, seconds, self.workdir / (re.sub(r"[^A-Za-z0-9]+", "-", title) + ".txt")
        )

    def keep_profile(self, title: str, profiler: Profiler | None) -> None:
        if profiler is None:
            return
        summary = profiler.finish()
        self.results.profiles[title] = summary
        self.say(f"  profile {title}:\n{summary}")


def settle_rss(server: BenchServer, timeout: float = 5.0) -> int:
    """RSS once two readings 0.5 s apart agree within 1% (bounded by ``timeout``)."""
    last = server.rss()
    for _ in range(int(timeout / 0.5)):
        time.sleep(0.5)
        now = server.rss()
        if abs(now - last) <= 0.01 * max(last, 1):
            return now
        last = now
    return last


# -- scenario 1 ---------------------------------------------------------------------------
@dataclass
class _Ramp:
    """One server's progress up the capacity ramp."""

    server: BenchServer
    pub: Publisher
    opened: int
    first: int
    best: float = 0.0
    best_rate: float = 0.0  # msg/s of the highest passing step
    done: bool = False
    topped: bool = False  # passed the ramp's last step: the capacity is at least that


def capacity(bench: Bench) -> None:
    """1,000 subscribers per server; raise the rate until loss or p99 >= 100 ms.

    All servers run at once, each with its own subscribers and publisher, and the
    steps alternate between them (rate r: each server in turn, then rate r+1), so
    a slow spell of a shared machine falls on every server alike. Only one server
    has traffic at a time; the others are idle.
    """
    opts = bench.opts
    n = opts.capacity_subscribers
    names = bench.servers()
    bench.say(f"scenario 1 capacity: {', '.join(names)}; {n} subscribers each, steps alternate")
    with contextlib.ExitStack() as stack:
        ramps: list[_Ramp] = []
        for name in names:
            server = stack.enter_context(bench.running(name))
            _, opened = bench.connect(server, [server.ws_path("transactions")] * n)
            pub = stack.enter_context(Publisher(server.publish_target("transactions")))
            # Unmeasured warm-up: first-use costs (imports, caches) stay out of the steps.
            warm = pub.run(opts.capacity_rates[0], 1.0)
            bench.lg.wait_delivered(last_seq=warm.last, timeout=5.0, group=name)
            ramps.append(_Ramp(server, pub, opened, warm.last + 1))
        for rate in opts.capacity_rates:
            for ramp in ramps:
                if not ramp.done:
                    _step(bench, ramp, rate, n)
            if all(r.done for r in ramps):
                break
        for ramp in ramps:
            ramp.topped = not ramp.done
            name = ramp.server.name
            if name == "aurigraph" and opts.pyspy:
                title = "fan-out 1000 subscribers x 50 msg/s"
                prof = bench.profile(ramp.server, title, 8.0)
                ramp.pub.run(50.0, 8.0)
                bench.keep_profile(title, prof)
            bench.add(
                Row(
                    scenario="1 capacity",
                    server=name,
                    phase="capacity",
                    subscribers=ramp.opened,
                    deliveries_per_s=ramp.best,
                    note="passed every step: at least this (the ramp ends here)"
                    if ramp.topped
                    else "highest step with zero loss and p99 < 100 ms",
                )
            )


def _step(
    bench: Bench, ramp: _Ramp, rate: float, n: int, scenario: str = "1 capacity", tries: int = 2
) -> None:
    seconds = bench.opts.step_seconds
    # A step that fails is tried once more before the ramp stops, so one hiccup of a
    # shared machine does not end it.
    for attempt in range(tries):
        row, result = bench.phase(
            ramp.server,
            ramp.pub,
            ramp.first,
            scenario=scenario,
            phase=f"{rate:g} msg/s",
            subscribers=ramp.opened,
            rate=rate,
            seconds=seconds,
        )
        ramp.first = result.last + 1
        row.passed = (
            row.lost == 0
            and row.dropped == 0
            and ramp.opened == n
            and row.p99_ms is not None
            and row.p99_ms < TARGET_MS
            and result.sent >= round(rate * seconds)
            and result.acked >= result.requests
        )
        if not row.passed and attempt == 0:
            row.phase += " (first try)"
        bench.add(row)
        if row.passed:
            ramp.best = max(ramp.best, row.deliveries_per_s)
            ramp.best_rate = max(ramp.best_rate, rate)
            return
    ramp.done = True
    if not (bench.opts.pyspy and ramp.server.name == "aurigraph"):
        bench.lg.close(ramp.server.name)  # its subscribers would only add noise from now on


# -- scenario 2 -----------------------------------------------------------------------------
def many(bench: Bench) -> None:
    """10,000 subscribers at 1 msg/s, then 10 msg/s."""
    opts = bench.opts
    n = opts.connections
    # 35 s at 1 msg/s: longer than our server's 30 s keepalive interval, so the phase
    # always contains one keepalive sweep (periodic work belongs in p99).
    phases = ((1.0, 5.0 if opts.quick else 35.0), (10.0, 4.0 if opts.quick else 10.0))
    for name in bench.servers():
        bench.say(f"scenario 2 many connections: {name}, {n} subscribers")
        with bench.running(name) as server:
            path = server.ws_path("transactions")
            base = bench.warm_baseline(server, path)
            seconds, opened = bench.connect(server, [path] * n)
            rss = settle_rss(server)
            bench.add(
                Row(
                    scenario="2 many",
                    server=name,
                    phase="connect",
                    subscribers=opened,
                    connect_s=seconds,
                    rss_per_1k_mb=(rss - base) / MB / (opened / 1000) if opened else None,
                    passed=opened == n,
                )
            )
            with Publisher(server.publish_target("transactions")) as pub:
                # Nothing is stale yet: an earlier scenario's phase may have set a higher
                # first seq than this fresh server's (or publisher's) priming message.
                bench.lg.reset(0, server.name)
                first = pub.prime()
                # Start from a quiet server: the priming broadcast to every connection
                # takes as long as any other, and a first message queued behind it would
                # measure the warm-up (with 35 messages, one slow one sets p99).
                lg_ready = bench.lg.wait_delivered(
                    last_seq=first - 1, timeout=10.0, group=server.name
                )
                if not lg_ready:
                    bench.say(f"  {name}: the priming message did not reach every connection")
                for rate, duration in phases:
                    row, result = bench.phase(
                        server,
                        pub,
                        first,
                        scenario="2 many",
                        phase=f"{rate:g} msg/s",
                        subscribers=opened,
                        rate=rate,
                        seconds=duration,
                    )
                    first = result.last + 1
                    row.passed = row.lost == 0 and row.dropped == 0 and opened == n
                    bench.add(row)
                if name == "aurigraph" and opts.pyspy:
                    title = f"fan-out {n} subscribers x 10 msg/s"
                    prof = bench.profile(server, title, 8.0)
                    pub.run(10.0, 8.0)
                    bench.keep_profile(title, prof)
        if name == "aurigraph" and opts.pyspy:
            with bench.running(name) as server:
                prof = bench.profile(server, f"connecting {n}", 4.0)
                bench.connect(server, [server.ws_path("transactions")] * n)
                bench.keep_profile(f"connecting {n}", prof)


# -- scenario 3 -------------------------------------------------------------------------------
def memory(bench: Bench) -> None:
    """10,000 idle connections, without and with permessage-deflate offered."""
    n = bench.opts.connections
    for name in bench.servers():
        for deflate in (False, True):
            label = "deflate offered" if deflate else "no deflate"
            bench.say(f"scenario 3 memory: {name}, {n} idle connections, {label}")
            with bench.running(name) as server:
                path = server.ws_path("transactions")
                base = bench.warm_baseline(server, path)
                result = bench.lg.connect(
                    HOST, server.port, [path] * n, deflate=deflate, group=server.name
                )
                rss = settle_rss(server)
                per_1k = (rss - base) / MB / (result.opened / 1000) if result.opened else None
                note = ""
                if deflate:
                    note = f"deflate negotiated on {result.deflate}"
                    if result.context_takeover:
                        note += f" ({result.context_takeover} with server context takeover)"
                bench.add(
                    Row(
                        scenario="3 memory",
                        server=name,
                        phase=f"idle, {label}",
                        subscribers=result.opened,
                        connect_s=result.seconds,
                        rss_per_1k_mb=per_1k,
                        passed=result.opened == n,
                        note=note,
                    )
                )
                # The same connections after a little traffic: buffers that exist only once
                # a message has been compressed or written show up here.
                with Publisher(server.publish_target("transactions")) as pub:
                    first = pub.prime()
                    row, _ = bench.phase(
                        server,
                        pub,
                        first,
                        scenario="3 memory",
                        phase=f"after traffic, {label}",
                        subscribers=result.opened,
                        rate=2.0,
                        seconds=2.0,
                    )
                rss = settle_rss(server)
                row.rss_per_1k_mb = (
                    (rss - base) / MB / (result.opened / 1000) if result.opened else None
                )
                row.passed = row.lost == 0 and row.dropped == 0
                bench.add(row)


# -- scenario 4 ---------------------------------------------------------------------------------
def addresses_for(n: int) -> tuple[str, ...]:
    """``n`` distinct account addresses (0x + 40 hex), none equal to the sink."""
    return tuple(f"0x{(i + 1) * 2654435761 % (1 << 160):040x}" for i in range(n))


def filters(bench: Bench) -> None:
    """10,000 subscribers each on its own ?address=; 1,000 tx/s spread over them."""
    bench.skip_floor("4 filters", "the bare uvloop loop has no subscription filters")
    if "aurigraph" not in bench.servers():
        return
    opts = bench.opts
    n = opts.connections
    rate = 1000.0
    seconds = 5.0 if opts.quick else 35.0  # > the 30 s keepalive interval, as in scenario 2
    with bench.running("aurigraph") as server:
        reason = probe_address_filter(server.port, server.publish_target("transactions").path)
    if reason is not None:
        bench.results.skipped["4 filters"] = reason
        bench.say(f"scenario 4 filters: skipped: {reason}")
        return
    addrs = addresses_for(n)
    bench.say(f"scenario 4 filters: {n} subscribers with ?address=, {rate:g} tx/s")
    with bench.running("aurigraph") as server:
        paths = [f"/ws/transactions?address={a}" for a in addrs]
        seconds_c, opened = bench.connect(server, paths)
        with Publisher(server.publish_target("transactions")) as pub:
            first = pub.prime()
            row, _ = bench.phase(
                server,
                pub,
                first,
                scenario="4 filters",
                phase=f"filtered, {rate:g} tx/s",
                subscribers=opened,
                rate=rate,
                seconds=seconds,
                addresses=addrs,
                broadcast=False,
            )
            row.connect_s = seconds_c
            row.passed = (
                row.lost == 0 and row.dropped == 0 and row.p99_ms is not None and row.p99_ms < 100
            )
            bench.add(row)
            if opts.pyspy:
                title = f"filtered: {n} subscribers, {rate:g} tx/s"
                prof = bench.profile(server, title, 6.0)
                pub.run(rate, 6.0, addrs)
                bench.keep_profile(title, prof)
    bench.say(f"scenario 4 baseline: 1 unfiltered subscriber + {n - 1} idle, {rate:g} tx/s")
    with bench.running("aurigraph") as server:
        paths = ["/ws/transactions"] + ["/ws/consensus"] * (n - 1)
        _, opened = bench.connect(server, paths)
        with Publisher(server.publish_target("transactions")) as pub:
            first = pub.prime()
            row, _ = bench.phase(
                server,
                pub,
                first,
                scenario="4 filters",
                phase=f"unfiltered, {rate:g} tx/s",
                subscribers=1,
                rate=rate,
                seconds=seconds,
                addresses=addrs,
                broadcast=False,
            )
            row.note += f"same deliveries; {opened - 1} idle connections on /ws/consensus "
            row.passed = row.lost == 0 and row.dropped == 0
            bench.add(row)


# -- scenario 5 -----------------------------------------------------------------------------------
def mixed(bench: Bench) -> None:
    """All five streams from the simulator at default rates, plus clients on every stream."""
    bench.skip_floor("5 mixed", "the bare uvloop loop has no simulator")
    if "aurigraph" not in bench.servers():
        return
    n = bench.opts.mixed_clients
    seconds = 10.0 if bench.opts.quick else 60.0
    bench.say(f"scenario 5 mixed: simulator on, {n} clients over {len(STREAMS)} streams")
    with bench.running("aurigraph", simulate=True) as server:
        paths = [server.ws_path(STREAMS[i % len(STREAMS)]) for i in range(n)]
        _, opened = bench.connect(server, paths)
        lg = bench.lg
        lg.reset(0, server.name)
        wall0 = time.time()
        t0 = time.monotonic()
        cpu0, lg0 = server.cpu(), lg.cpu_seconds()
        prof = bench.profile(server, "mixed", min(seconds, 20.0))
        time.sleep(seconds)
        t1 = time.monotonic()
        cpu1, lg1 = server.cpu(), lg.cpu_seconds()
        snap = lg.snapshot(0, server.name)
        row = bench._row(
            "5 mixed", server.name, f"{seconds:g} s", opened, snap, t1 - t0, cpu1 - cpu0, lg1 - lg0
        )
        row.deliveries_per_s = snap.deliveries / seconds
        row.lost = snap.gaps
        row.note += "loss = seq gaps; timestamps are event times (up to one 50 ms simulator tick "
        row.note += "before publish) "
        row.passed = row.lost == 0 and row.dropped == 0 and opened == n
        bench.note_gc(server, row, wall0, time.time())
        bench.add(row)
        bench.keep_profile("mixed", prof)


# -- scenario 6 ------------------------------------------------------------------------------
# Every field, as /ws/transactions sends them, so both endpoints carry the same message.
GRAPHQL_FIELDS = "timestamp txHash from to value status gasUsed seq"
GRAPHQL_ALL = f"subscription {{ transactions {{ {GRAPHQL_FIELDS} }} }}"
GRAPHQL_MINE = f"subscription($a: [String!]) {{ transactions(address: $a) {{ {GRAPHQL_FIELDS} }} }}"
GRAPHQL_RATE = 20.0  # msg/s to 1,000 subscribers of one document: 20,000 deliveries/s
GRAPHQL_FILTERED_RATE = 500.0  # tx/s, each to the one subscriber of its address


def graphql_payload(query: str, variables: dict[str, object] | None = None) -> str:
    """The payload of a graphql-transport-ws subscribe message, as JSON text."""
    payload: dict[str, object] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return orjson.dumps(payload).decode()


def graphql(bench: Bench) -> None:
    """GraphQL subscribers against /ws/transactions subscribers at the same rate, then
    GraphQL subscribers each filtering on their own address, at two subscriber counts."""
    bench.skip_floor("6 graphql", "the bare uvloop loop has no GraphQL")
    if "aurigraph" not in bench.servers():
        return
    opts = bench.opts
    n = opts.capacity_subscribers
    seconds = 4.0 if opts.quick else 20.0
    rows: dict[str, Row] = {}
    bench.say(f"scenario 6 graphql: {n} subscribers, /ws/transactions then /graphql")
    for label, path, payloads in (
        ("ws json", "/ws/transactions", None),
        ("graphql", "/graphql", [graphql_payload(GRAPHQL_ALL)] * n),
    ):
        with bench.running("aurigraph") as server:
            if label == "graphql" and not _serves_graphql(server):
                bench.results.skipped["6 graphql"] = "this server has no /graphql"
                bench.say("scenario 6 graphql: skipped: this server has no /graphql")
                return
            seconds_c, opened = bench.connect(server, [path] * n, graphql=payloads)
            with Publisher(server.publish_target("transactions")) as pub:
                first = pub.prime()
                row, _ = bench.phase(
                    server,
                    pub,
                    first,
                    scenario="6 graphql",
                    phase=f"{label}, {GRAPHQL_RATE:g} msg/s",
                    subscribers=opened,
                    rate=GRAPHQL_RATE,
                    seconds=seconds,
                )
            row.connect_s = seconds_c
            row.passed = row.lost == 0 and row.dropped == 0 and opened == n
            rows[label] = bench.add(row)
    plain, ours = rows["ws json"], rows["graphql"]
    if plain.cpu_us_per_delivery and ours.cpu_us_per_delivery:
        ours.note += f"CPU/delivery {ours.cpu_us_per_delivery / plain.cpu_us_per_delivery:.2f}x "
    if plain.p99_ms and ours.p99_ms is not None:
        ours.note += f"p99 {ours.p99_ms / plain.p99_ms:.2f}x of /ws/transactions "
    filtered = min(opts.connections, n)
    addrs = addresses_for(filtered)
    rate = GRAPHQL_FILTERED_RATE
    for count in (max(1, filtered // 10), filtered):  # ten times the subscribers, same matches
        bench.say(f"scenario 6 graphql: {count} subscribers, each its own address, {rate:g} tx/s")
        mine = addrs[:count]
        with bench.running("aurigraph") as server:
            payloads = [graphql_payload(GRAPHQL_MINE, {"a": [a]}) for a in mine]
            seconds_c, opened = bench.connect(server, ["/graphql"] * count, graphql=payloads)
            with Publisher(server.publish_target("transactions")) as pub:
                first = pub.prime()
                row, _ = bench.phase(
                    server,
                    pub,
                    first,
                    scenario="6 graphql",
                    phase=f"graphql own address x {count}",
                    subscribers=opened,
                    rate=rate,
                    seconds=seconds,
                    addresses=mine,
                    broadcast=False,
                )
            row.connect_s = seconds_c
            row.note += "one match per event: CPU/delivery is CPU per event "
            row.passed = row.lost == 0 and row.dropped == 0 and opened == count
            bench.add(row)


def _serves_graphql(server: BenchServer) -> bool:
    """Whether the server under test has /graphql (an older tree, run with --source, may not)."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        conn.request("GET", "/graphql/schema.graphql")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


# -- scenario 7: the spec's throughput ---------------------------------------------------------
CONSENSUS_RATE = 10.0  # consensus states/s published beside the transactions


def throughput(bench: Bench) -> None:
    """The spec's throughput: 50,000 transactions/s for 30 s to 10,000 subscribers each
    filtering its own address (each transaction from one to another: two deliveries),
    beside 100 unfiltered subscribers of /ws/metrics and 100 of /ws/consensus; then the
    same at a rate the machine holds, for the server's CPU per event without overload.
    The floor runs it too, with its address routing: the least a Python server can do."""
    opts = bench.opts
    names = [n for n in bench.servers() if n in ("aurigraph", "floor")]
    if opts.quick and "floor" in names and "aurigraph" in names:
        names.remove("floor")  # --quick stays within its minutes; the full run has it
        bench.results.skipped["7 throughput (floor)"] = "quick run: the full run measures it"
    if "aurigraph" in names:  # and the same on Redis
        missing = RedisProcess.available()
        if opts.quick or missing is not None:
            reason = missing or "quick run: the full run measures it"
            bench.results.skipped["7 throughput (Redis)"] = reason
        else:
            names.insert(1, "aurigraph-redis")
    if not names:
        return
    n = opts.connections
    seconds, steady = opts.throughput_seconds or ((2.0, 0.0) if opts.quick else (30.0, 15.0))
    addrs = addresses_for(n)
    watching = opts.watchers
    for name in names:
        bench.say(
            f"scenario 7 throughput: {name}, {n} own-address subscribers, {watching} on "
            f"/ws/metrics and {watching} on /ws/consensus, {opts.throughput_rate:g} tx/s"
        )
        with bench.running(name) as server:
            _, opened = bench.connect(server, [f"/ws/transactions?address={a}" for a in addrs])
            watchers = f"{server.name}-latest"
            watched = bench.lg.connect(
                HOST,
                server.port,
                [server.ws_path("metrics")] * watching + [server.ws_path("consensus")] * watching,
                group=watchers,
            )
            with (
                Publisher(server.publish_target("transactions")) as pub,
                Publisher(server.publish_target("consensus")) as states,
            ):
                first = pub.prime()
                states.prime("consensus")
                phases = [("spec", opts.throughput_rate, seconds)]
                if steady:
                    phases.append(("steady", opts.throughput_steady_rate, steady))
                else:
                    bench.results.skipped["7 throughput (steady phase)"] = (
                        "quick run: the full run measures the CPU per event at a rate kept up with"
                    )
                for label, rate, secs in phases:
                    bench.lg.reset(0, watchers)
                    states.start(CONSENSUS_RATE, secs, stream="consensus")
                    prof = bench.profile(server, f"throughput {rate:g} tx/s", min(secs, 8.0))
                    row, result = bench.phase(
                        server,
                        pub,
                        first,
                        scenario="7 throughput",
                        phase=f"{label}: {rate:g} tx/s",
                        subscribers=opened,
                        rate=rate,
                        seconds=secs,
                        addresses=addrs,
                        broadcast=False,
                        pair=True,
                        per_event=2,
                    )
                    states.result()
                    bench.keep_profile(f"throughput {rate:g} tx/s", prof)
                    first = result.last + 1
                    side = bench.lg.snapshot(0, watchers)
                    p99 = side.hist.percentile_us(0.99)
                    row.note += (
                        f"metrics+consensus watchers ({watched.opened}): "
                        f"{side.deliveries} deliveries, p99 "
                        f"{'-' if p99 is None else f'{p99 / 1000:.1f}'} ms, "
                        f"seq jumps {side.gaps} (latest-wins: conflated, not lost) "
                    )
                    row.passed = (
                        row.lost == 0
                        and row.dropped == 0
                        and opened == n
                        and result.sent >= round(rate * secs)
                        and row.p99_ms is not None
                        and row.p99_ms < 75
                        and (row.ack_p99_ms is None or row.ack_p99_ms < 50)
                    )
                    bench.add(row)


# -- scenario 8: the flush governor --------------------------------------------------------------
def governor(bench: Bench) -> None:
    """Capacity for single-event requests pipelined on one connection, 1,000 subscribers:
    our server with the flush governor on and off, and nchan, steps alternating as in
    scenario 1. A step passes with every message delivered, every request answered, the
    full rate published and p99 under the 100 ms target."""
    bench.skip_floor("8 governor", "the bare uvloop loop takes no HTTP publishing requests")
    selected = bench.servers()
    names = (["aurigraph", "aurigraph-off"] if "aurigraph" in selected else []) + (
        ["nchan"] if "nchan" in selected else []
    )
    if not names:
        return
    opts = bench.opts
    n = opts.capacity_subscribers
    rates = opts.governor_rates or (GOVERNOR_QUICK_RATES if opts.quick else GOVERNOR_RATES)
    bench.say(
        f"scenario 8 governor: {', '.join(names)}; {n} subscribers each, one event per "
        "request, pipelined on one connection; steps alternate"
    )
    with contextlib.ExitStack() as stack:
        ramps: list[_Ramp] = []
        for name in names:
            server = stack.enter_context(bench.running(name))
            _, opened = bench.connect(server, [server.ws_path("transactions")] * n)
            target = server.publish_target("transactions", pipelined=True)
            pub = stack.enter_context(Publisher(target))
            # First-use costs stay out of the steps.
            warm = pub.run(rates[0], 0.5 if opts.quick else 1.0)
            bench.lg.wait_delivered(last_seq=warm.last, timeout=5.0, group=name)
            ramps.append(_Ramp(server, pub, opened, warm.last + 1))
        for rate in rates:
            for ramp in ramps:
                if not ramp.done:  # quick: one try per step, to stay within its minutes
                    _step(bench, ramp, rate, n, "8 governor", 1 if opts.quick else 2)
            if all(r.done for r in ramps):
                break
        for ramp in ramps:
            ramp.topped = not ramp.done
            bench.add(
                Row(
                    scenario="8 governor",
                    server=ramp.server.name,
                    phase="capacity",
                    subscribers=ramp.opened,
                    rate=ramp.best_rate,
                    deliveries_per_s=ramp.best,
                    note="passed every step: at least this (the ramp ends here)"
                    if ramp.topped
                    else f"highest step with zero loss and p99 < {TARGET_MS:g} ms",
                )
            )


# -- scenario 9: the soak -------------------------------------------------------------------------


@dataclass
class SoakFigures:
    """What the soak measured, beside its row."""

    rss_settled: int = 0  # bytes, soak_settle seconds in
    rss_end: int = 0
    fds_before: int = 0  # with every subscriber connected, before the churn began
    fds_after: int = 0
    reconnects: int = 0
    reconnect_failures: int = 0
    slow_readers: int = 0
    # A reader that never reads is closed by whichever comes first: its buffer passing
    # max_buffered_bytes (4008) or a ping it never answers (4009).
    slow_closed: int = 0  # 4008
    silent_closed: int = 0  # 4009
    longest_gc_ms: float = 0.0


def soak(bench: Bench) -> None:
    """Hours, not minutes: 5,000 subscribers of /ws/transactions in 50 groups, each group
    filtering one address, 100 of them dropped and resumed with ``since`` every second,
    200 events/s spread over the 50 addresses, and a reader of the whole stream that stops
    reading every minute (the server must close it as slow), for ``--soak`` seconds, with
    the memory broker and then on Redis. Targets: RSS after the first minute grows by
    under 5 %, the open descriptors (less the Redis client's pool) come back to their
    level before the soak, every resume is recovered with no gap, and the collector's
    longest pause stays under 20 ms."""
    opts = bench.opts
    if opts.soak <= 0:
        bench.results.skipped["9 soak"] = 'not asked for: make bench ARGS="--soak 600"'
        return
    bench.skip_floor("9 soak", "the bare uvloop loop has no history to resume from")
    if "aurigraph" not in bench.servers():
        return
    names = ["aurigraph"]
    missing = RedisProcess.available()
    if missing is None:
        names.append("aurigraph-redis")
    else:
        bench.results.skipped["9 soak (Redis)"] = missing
    for name in names:
        _soak_one(bench, name)


def _soak_one(bench: Bench, name: str) -> None:
    opts = bench.opts
    n = opts.soak_subscribers
    seconds = opts.soak
    bench.say(
        f"scenario 9 soak: {name}, {seconds:g} s, {n} subscribers, {opts.soak_churn}/s resumed "
        f"with since, {opts.soak_rate:g} events/s, a slow reader every {opts.soak_slow_every:g} s"
    )
    groups = opts.soak_groups
    addrs = addresses_for(groups) if groups else (SINK,)
    with bench.running(name, gc_watch=True) as server:
        group = server.name
        base = server.ws_path("transactions")
        # replay=0: a subscribed frame first, with the epoch a resume needs.
        paths = (
            [f"{base}?address={addrs[i % groups]}&replay=0" for i in range(n)]
            if groups
            else [f"{base}?replay=0"] * n
        )
        _, opened = bench.connect_control(server, paths, stride=max(1, groups))
        with Publisher(server.publish_target("transactions")) as pub:
            first = pub.prime()
            figures = SoakFigures(fds_before=_client_fds(server))
            bench.lg.reset(first, group)
            wall0 = time.time()
            t0 = time.monotonic()
            cpu0, lg0 = server.cpu(), bench.lg.cpu_seconds()
            pub.start(opts.soak_rate, seconds, addrs)
            slow: list[socket.socket] = []
            try:
                _soak_loop(bench, server, figures, slow)
                result = pub.result()
                # Every connection has the last event of its address: one of the last ones.
                last = result.last - max(1, groups) + 1
                bench.lg.wait_delivered(last_seq=last, timeout=10.0, group=group)
                t1 = time.monotonic()
                cpu1, lg1 = server.cpu(), bench.lg.cpu_seconds()
                snap = bench.lg.snapshot(0, group)
            finally:
                for sock in slow:
                    sock.close()
            stats = server_stats(server)
            closes = stats["endpoints"]["transactions"] if stats is not None else None
            figures.slow_closed = -1 if closes is None else closes["slowConsumerDisconnects"]
            figures.silent_closed = -1 if closes is None else closes["keepaliveDisconnects"]
            figures.rss_end = server.rss()
            figures.fds_after = _settled_fds(server, figures.fds_before)
            pauses = pauses_between(server.log_path, wall0, time.time())
            figures.longest_gc_ms = max((ms for _, ms in pauses), default=0.0)
        row = bench._row(
            "9 soak", group, f"{seconds:g} s", opened, snap, t1 - t0, cpu1 - cpu0, lg1 - lg0
        )
        row.rate = opts.soak_rate
        row.published = result.sent
        row.deliveries_per_s = snap.deliveries / seconds
        # Each event reaches every subscriber of its address, and each connection's seqs,
        # across its resumes, follow one another (stride apart): both say what was lost.
        row.lost = max(snap.gaps, _soak_expected(result.sent, n, groups) - snap.deliveries)
        growth = (
            (figures.rss_end - figures.rss_settled) / figures.rss_settled
            if figures.rss_settled
            else None
        )
        row.note += (
            f"RSS {figures.rss_settled / MB:.1f} MB at {min(opts.soak_settle, seconds):g} s, "
            f"{figures.rss_end / MB:.1f} MB at the end"
            f" ({'-' if growth is None else f'{100 * growth:+.1f}%'}); "
            f"fds {figures.fds_before} before, {figures.fds_after} after; "
            f"resumes {figures.reconnects} ({figures.reconnect_failures} failed, "
            f"{snap.unrecovered} not recovered); slow readers {figures.slow_readers}, "
            f"closed as slow (4008) {figures.slow_closed}, for no pong (4009) "
            f"{figures.silent_closed}; longest GC pause "
            f"{figures.longest_gc_ms:.1f} ms "
        )
        row.passed = (
            row.lost == 0
            and snap.out_of_order == 0
            and snap.unrecovered == 0
            and figures.reconnect_failures == 0
            and growth is not None
            and growth < 0.05
            and figures.fds_after <= figures.fds_before
            and figures.slow_closed + figures.silent_closed >= figures.slow_readers
            and figures.longest_gc_ms < 20.0
        )
        bench.results.soak[name] = figures
        bench.add(row)


def server_stats(server: BenchServer) -> dict[str, Any] | None:
    """Our server's /api/v11/websocket/stats (None if it does not answer)."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        conn.request("GET", "/api/v11/websocket/stats")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        report: dict[str, Any] = orjson.loads(body)
        return report
    except (OSError, orjson.JSONDecodeError):
        return None
    finally:
        conn.close()


def _soak_expected(events: int, subscribers: int, groups: int) -> int:
    """Deliveries owed: event i goes to address i % groups, and subscriber j filters on
    address j % groups (with no groups, every event to every subscriber)."""
    if not groups:
        return events * subscribers
    return sum(
        (events // groups + (k < events % groups))
        * (subscribers // groups + (k < subscribers % groups))
        for k in range(groups)
    )


def _soak_loop(
    bench: Bench, server: BenchServer, figures: SoakFigures, slow: list[socket.socket]
) -> None:
    """Each second: resume ``soak_churn`` subscribers; read RSS once settled; and every
    ``soak_slow_every`` seconds open a reader that never reads."""
    opts = bench.opts
    start = time.monotonic()
    settle = min(opts.soak_settle, opts.soak)
    next_slow = min(5.0, opts.soak / 4)
    # A slow reader needs time to fall max_buffered_bytes behind: none opens in the last
    # stretch, where the server could not have closed it before the publisher stops.
    last_slow = opts.soak - max(opts.soak_slow_close, opts.soak / 4)
    for second in range(1, int(opts.soak) + 1):
        if opts.soak_churn:
            churned = bench.lg.churn(HOST, server.port, opts.soak_churn, group=server.name)
            figures.reconnects += churned.reconnected
            figures.reconnect_failures += sum(churned.failed.values())
        elapsed = time.monotonic() - start
        if not figures.rss_settled and elapsed >= settle:
            figures.rss_settled = server.rss()
        if next_slow <= elapsed <= last_slow:
            slow.append(_slow_reader(server))
            figures.slow_readers += 1
            next_slow += opts.soak_slow_every
        time.sleep(max(0.0, start + second - time.monotonic()))
    if not figures.rss_settled:
        figures.rss_settled = server.rss()


def _slow_reader(server: BenchServer) -> socket.socket:
    """A subscriber that completes its handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(10)
    sock.connect((HOST, server.port))
    sock.sendall(
        f"GET {server.ws_path('transactions')} HTTP/1.1\r\nHost: {HOST}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: c2xvdyByZWFkZXIgaGVyZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def _client_fds(server: BenchServer) -> int:
    """The server's open descriptors, less its connections to its own Redis: the Redis
    client keeps open as many as it once needed at the same time (its pool; the resumes'
    history reads come in bursts), which is not a leak."""
    fds = open_fds(server.pid)
    redis: RedisProcess | None = getattr(server, "redis", None)
    if redis is None:
        return fds
    try:
        sockets = psutil.Process(server.pid).net_connections(kind="tcp")
    except psutil.Error:
        return fds
    return fds - sum(1 for c in sockets if c.raddr and c.raddr.port == redis.port)


def _settled_fds(server: BenchServer, before: int, timeout: float = 10.0) -> int:
    """The server's open descriptors (less Redis') once closing connections are gone
    (bounded wait)."""
    fds = _client_fds(server)
    for _ in range(int(timeout / 0.2)):
        if fds <= before:
            break
        time.sleep(0.2)
        fds = _client_fds(server)
    return fds


# -- scenario 10: more than one core ------------------------------------------------------------
FANOUT_PHASE = "fan-out of one event, clients not reading"
# Single events, one at a time, for the server-side fan-out time (Options.fanout_events:
# enough that the p99 is not the priming event's first-use costs), slow enough that each
# fan-out ends long before the next event (and the flush governor never holds one).
FANOUT_RATE = 5.0  # events/s


def cores(bench: Bench) -> None:
    """Scenario 2 with our server on Redis, one worker and two, beside nchan and the floor.

    End to end as in scenario 2 (10,000 subscribers at 1 and 10 msg/s: p99 and loss);
    and first, on our servers, the server-side fan-out time of single events while the
    clients do not read (the kernel's buffers hold the few events, so the writes never
    wait on a reader, and the load generator takes no CPU meanwhile): what the second
    core gives a node, which end-to-end p99 cannot show on two cores that the readers
    share. The server's own histogram (broadcastLatencyMs: from Redis accepting an event
    to the last subscriber's socket handoff, every worker's merged) gives it.
    """
    opts = bench.opts
    if opts.quick:
        bench.results.skipped["10 cores"] = "quick run: the full run measures it"
        return
    missing = RedisProcess.available()
    if missing is not None:
        bench.results.skipped["10 cores"] = missing
        return
    selected = bench.servers()
    names = (["aurigraph-redis", "aurigraph-redis-2w"] if "aurigraph" in selected else []) + [
        name for name in ("nchan", "floor") if name in selected
    ]
    n = opts.connections
    phases = opts.cores_phases
    for name in names:
        bench.say(f"scenario 10 more than one core: {name}, {n} subscribers")
        with bench.running(name) as server:
            path = server.ws_path("transactions")
            _, opened = bench.connect(server, [path] * n)
            with Publisher(server.publish_target("transactions")) as pub:
                bench.lg.reset(0, server.name)
                first = pub.prime()
                bench.lg.wait_delivered(last_seq=first - 1, timeout=10.0, group=server.name)
                if name.startswith("aurigraph"):
                    row = _fanout(bench, server, pub, opened, first)
                    first = row.published + first
                    bench.add(row)
                for rate, duration in phases:
                    row, result = bench.phase(
                        server,
                        pub,
                        first,
                        scenario="10 cores",
                        phase=f"{rate:g} msg/s",
                        subscribers=opened,
                        rate=rate,
                        seconds=duration,
                    )
                    first = result.last + 1
                    row.passed = row.lost == 0 and row.dropped == 0 and opened == n
                    bench.add(row)


def _fanout(bench: Bench, server: BenchServer, pub: Publisher, opened: int, first: int) -> Row:
    """Single events while every subscriber's reads are paused; the server's own p50/p99
    (its histogram also holds the priming event, one record per worker)."""
    lg = bench.lg
    group = server.name
    workers = getattr(server, "workers", 1)
    lg.reset(first, group)
    lg.pause(group)
    try:
        result = pub.run(FANOUT_RATE, bench.opts.fanout_events / FANOUT_RATE)
    finally:
        lg.resume(group)
    lg.wait_delivered(last_seq=result.last, timeout=20.0, group=group)
    snap = lg.snapshot(result.last - result.first + 1, group)
    # Each worker records each event it fanned out (when it holds subscribers); with
    # several, the others' figures reach the one that answers once a second
    # (ops/workers.py): read until the count has every event and stops growing.
    latency: dict[str, Any] = {}
    settled = 0
    for _ in range(50):
        stats = server_stats(server)
        if stats is not None:
            now = stats["endpoints"]["transactions"]["broadcastLatencyMs"]
            grew = now["count"] != latency.get("count")
            latency = now
            full = now["count"] >= (result.sent + 1) * workers
            settled = 0 if grew else settled + 1
            if full or (now["count"] > result.sent and settled >= 8):
                break
        time.sleep(0.2)
    row = Row(
        scenario="10 cores",
        server=server.name,
        phase=FANOUT_PHASE,
        subscribers=opened,
        rate=FANOUT_RATE,
        published=result.sent,
        deliveries=snap.deliveries,
        p50_ms=latency.get("p50"),
        p99_ms=latency.get("p99"),
        p999_ms=latency.get("p999"),
        max_ms=latency.get("max"),
        lost=snap.lost,
        dropped=snap.dropped,
    )
    row.note = (
        f"server side: from Redis accepting each event to its last subscriber's socket "
        f"handoff, {latency.get('count', 0)} records over {workers} worker(s) "
    )
    row.passed = snap.lost == 0 and snap.dropped == 0
    return row


# -- scenario 11: what Redis costs -------------------------------------------------------------
REDIS_RATE = 1000.0  # events/s
REDIS_SUBSCRIBERS = 20  # few: the broker's part of the latency, not the fan-out's


def redis_cost(bench: Bench) -> None:
    """Publish-to-receipt p50 and p99 at 1,000 events/s, our server on the memory broker
    against the same on Redis (one worker), both running, phases alternating. Target:
    Redis adds at most 2 ms to p99."""
    opts = bench.opts
    if opts.quick:
        bench.results.skipped["11 redis"] = "quick run: the full run measures it"
        return
    missing = RedisProcess.available()
    if missing is not None:
        bench.results.skipped["11 redis"] = missing
        return
    if "aurigraph" not in bench.servers():
        return
    seconds = opts.redis_seconds
    bench.say(
        f"scenario 11 what Redis costs: memory and Redis, {REDIS_SUBSCRIBERS} subscribers, "
        f"{REDIS_RATE:g} events/s, {opts.redis_rounds} rounds alternating"
    )
    with contextlib.ExitStack() as stack:
        runs: list[tuple[BenchServer, Publisher, int, int]] = []
        for name in ("aurigraph", "aurigraph-redis"):
            server = stack.enter_context(bench.running(name))
            _, opened = bench.connect(server, [server.ws_path("transactions")] * REDIS_SUBSCRIBERS)
            pub = stack.enter_context(Publisher(server.publish_target("transactions")))
            warm = pub.run(REDIS_RATE, 1.0)  # first-use costs stay out of the rounds
            bench.lg.wait_delivered(last_seq=warm.last, timeout=5.0, group=name)
            runs.append((server, pub, opened, warm.last + 1))
        for round_ in range(1, opts.redis_rounds + 1):
            for i, (server, pub, opened, first) in enumerate(runs):
                redis = getattr(server, "redis", None)
                redis_cpu0 = redis.cpu() if redis is not None else 0.0
                row, result = bench.phase(
                    server,
                    pub,
                    first,
                    scenario="11 redis",
                    phase=f"round {round_}: {REDIS_RATE:g} events/s",
                    subscribers=opened,
                    rate=REDIS_RATE,
                    seconds=seconds,
                )
                runs[i] = (server, pub, opened, result.last + 1)
                if redis is not None and result.sent:
                    us = 1e6 * (redis.cpu() - redis_cpu0) / result.sent
                    row.note += f"redis-server CPU {us:.1f} us per event "
                row.passed = row.lost == 0 and row.dropped == 0
                bench.add(row)


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "1": capacity,
    "2": many,
    "3": memory,
    "4": filters,
    "5": mixed,
    "6": graphql,
    "7": throughput,
    "8": governor,
    "9": soak,
    "10": cores,
    "11": redis_cost,
}
