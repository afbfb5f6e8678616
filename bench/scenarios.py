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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.gcwatch import pauses_between
from bench.loadgen import LoadGenerator, Snapshot
from bench.probe import probe_address_filter
from bench.profiling import Profiler
from bench.publisher import SINK, Publisher, PublishResult
from bench.sendcost import SendCost
from bench.servers import HOST, SERVERS, Aurigraph, BenchServer

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


@dataclass
class Results:
    """Everything a run produced, for the report."""

    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # scenario -> reason
    profiles: dict[str, str] = field(default_factory=dict)  # title -> summary text
    log: list[str] = field(default_factory=list)
    send_cost: SendCost | None = None  # the machine's loopback send() cost, start of the run


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
    def running(self, name: str, *, simulate: bool = False) -> Iterator[BenchServer]:
        """Start a fresh server; on exit drop every connection and stop it."""
        server = SERVERS[name](self.workdir, self.opts.source if name == "aurigraph" else None)
        if isinstance(server, Aurigraph):
            server.gc_watch = self.opts.gc_watch
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
    ) -> tuple[Row, PublishResult]:
        """Publish at ``rate`` for ``seconds`` and measure what the subscribers got."""
        lg = self.lg
        group = server.name
        lg.reset(first, group)
        wall0 = time.time()
        t0 = time.monotonic()
        cpu0, lg0 = server.cpu(), lg.cpu_seconds()
        pub_result = pub.run(rate, seconds, addresses)
        drain = 5.0 if self.opts.quick else 10.0
        if broadcast:
            lg.wait_delivered(last_seq=pub_result.last, timeout=drain, group=group)
        else:
            lg.wait_delivered(deliveries=pub_result.sent, timeout=drain, group=group)
        t1 = time.monotonic()
        cpu1, lg1 = server.cpu(), lg.cpu_seconds()
        expected = pub_result.last - pub_result.first + 1 if broadcast else 0
        snap = lg.snapshot(expected, group)
        lost = snap.lost if broadcast else max(0, pub_result.sent - snap.deliveries)
        row = self._row(
            scenario, server.name, phase, subscribers, snap, t1 - t0, cpu1 - cpu0, lg1 - lg0
        )
        row.rate = rate
        row.published = pub_result.sent
        row.lost = lost
        nominal = pub_result.sent / rate if rate else seconds
        row.deliveries_per_s = snap.deliveries / nominal if nominal else 0.0
        if pub_result.sent < round(rate * seconds):
            row.note += f"publisher sent {pub_result.sent}/{round(rate * seconds)} "
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


def _step(bench: Bench, ramp: _Ramp, rate: float, n: int) -> None:
    seconds = bench.opts.step_seconds
    # A step that fails is tried once more before the ramp stops, so one hiccup of a
    # shared machine does not end it.
    for attempt in range(2):
        row, result = bench.phase(
            ramp.server,
            ramp.pub,
            ramp.first,
            scenario="1 capacity",
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
            and row.p99_ms < 100
            and result.sent >= round(rate * seconds)
        )
        if not row.passed and attempt == 0:
            row.phase += " (first try)"
        bench.add(row)
        if row.passed:
            ramp.best = max(ramp.best, row.deliveries_per_s)
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


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "1": capacity,
    "2": many,
    "3": memory,
    "4": filters,
    "5": mixed,
    "6": graphql,
}
