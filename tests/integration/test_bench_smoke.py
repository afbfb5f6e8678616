"""The benchmark harness (bench/) against the real server, briefly, so it cannot rot."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets.sync.client
from bench.floorserver import MAX_MESSAGE
from bench.loadgen import LoadGenerator, Snapshot
from bench.procstat import cpu_seconds, rss_bytes
from bench.publisher import Publisher, Target
from bench.report import verdicts
from bench.scenarios import (
    FANOUT_PHASE,
    GRAPHQL_ALL,
    Bench,
    Options,
    cores,
    governor,
    graphql,
    graphql_payload,
    redis_cost,
    soak,
    throughput,
)
from bench.sendcost import measure
from bench.servers import HOST, Floor

from tests.support.rawws import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    frame_bytes,
)
from tests.support.server import ServerProcess

INGEST = "/api/v11/streams/transactions/events"


@pytest.fixture
def floor_server(tmp_path: Path) -> Iterator[Floor]:
    """The floor reference server (bench/floorserver.py), started and stopped by PID."""
    server = Floor(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_bench_harness_counts_every_delivery(quiet_server: ServerProcess) -> None:
    """Load generator and publisher: every message reaches every client, in order, with sane
    latency, connect time, RSS and CPU figures, compressed or not."""
    host, port = quiet_server.host, quiet_server.port
    with (
        LoadGenerator(workers=2) as lg,
        Publisher(Target("ingest", host, port, INGEST)) as pub,
    ):
        plain = lg.connect(host, port, ["/ws/transactions"] * 6, group="plain")
        packed = lg.connect(host, port, ["/ws/transactions"] * 4, deflate=True, group="deflate")
        assert (plain.opened, plain.failed, packed.opened, packed.failed) == (6, {}, 4, {})
        assert packed.deflate == 4
        assert 0 < plain.seconds < 10
        first = pub.prime()
        cpu_before = cpu_seconds(quiet_server.proc.pid)
        for group in ("plain", "deflate"):
            lg.reset(first, group)
        result = pub.run(rate=50, duration=2.0)
        assert (result.first, result.sent, result.last - result.first + 1) == (first, 100, 100)
        for group, clients in (("plain", 6), ("deflate", 4)):
            snap = _all_delivered(lg, group, clients, result.last, 100)
            p50, p99 = snap.hist.percentile_us(0.5), snap.hist.percentile_us(0.99)
            assert p50 is not None
            assert p99 is not None
            assert 0 < p50 <= p99 <= snap.hist.max_us < 2_000_000
        assert cpu_seconds(quiet_server.proc.pid) > cpu_before
        assert rss_bytes(quiet_server.proc.pid) > 10_000_000
        assert lg.cpu_seconds() > 0


def test_graphql_subscribers_are_counted_like_json_ones(quiet_server: ServerProcess) -> None:
    """The load generator's graphql-transport-ws subscribers get every message, in order,
    with latency, from the shared result inside each one's own envelope."""
    host, port = quiet_server.host, quiet_server.port
    with (
        LoadGenerator(workers=2) as lg,
        Publisher(Target("ingest", host, port, INGEST)) as pub,
    ):
        opened = lg.connect(
            host, port, ["/graphql"] * 4, graphql=[graphql_payload(GRAPHQL_ALL)] * 4, group="gql"
        )
        assert (opened.opened, opened.failed) == (4, {})
        first = pub.prime()
        lg.reset(first, "gql")
        result = pub.run(rate=50, duration=1.0)
        snap = _all_delivered(lg, "gql", 4, result.last, result.sent)
        assert snap.bad == 0
        assert 0 < (snap.hist.percentile_us(0.99) or 0) < 2_000_000


def test_graphql_scenario_runs_at_small_scale(tmp_path: Path) -> None:
    """Scenario 6 end to end with 20 subscribers: every phase delivers everything, and the
    report states its three verdicts with figures."""
    opts = Options(
        quick=True, servers=("aurigraph",), workers=1, connections=20, capacity_subscribers=20
    )
    with LoadGenerator(workers=1) as lg:
        bench = Bench(opts, lg, tmp_path)
        graphql(bench)
    rows = bench.results.rows
    assert [r.phase for r in rows] == [
        "ws json, 20 msg/s",
        "graphql, 20 msg/s",
        "graphql own address x 2",
        "graphql own address x 20",
    ]
    for row in rows:
        assert row.passed, row
        assert row.deliveries > 0, row
        assert row.cpu_us_per_delivery is not None, row
        assert "unparseable" not in row.note, row
    assert rows[1].deliveries == rows[0].deliveries  # the same messages to as many clients
    found = [v for v in verdicts(rows, 20) if v.target.startswith("6:")]
    assert len(found) == 3
    assert all(v.ok is not None for v in found)


def test_throughput_scenario_runs_at_small_scale(tmp_path: Path) -> None:
    """Scenario 7 end to end with 20 own-address subscribers, ours (on both brokers) and the
    floor's: each transaction reaches its two subscribers, the ingest acknowledgement and
    the CPU per published event are measured, and the report states the verdicts."""
    opts = Options(
        servers=("aurigraph", "floor"),
        workers=1,
        connections=20,
        throughput_rate=1000.0,
        throughput_steady_rate=300.0,
        throughput_seconds=(3.0, 2.0),
        watchers=3,
    )
    with LoadGenerator(workers=1) as lg:
        bench = Bench(opts, lg, tmp_path)
        throughput(bench)
    rows = bench.results.rows
    assert [(r.server, r.phase) for r in rows] == [
        (server, phase)
        for server in ("aurigraph", "aurigraph-redis", "floor")
        for phase in ("spec: 1000 tx/s", "steady: 300 tx/s")
    ]
    for row in rows:
        assert (row.lost, row.dropped) == (0, 0), row
        assert row.deliveries == 2 * row.published, row  # from one address to another
        assert (row.cpu_us_per_event or 0) > 0, row
        assert "metrics+consensus watchers (6)" in row.note, row
    assert (rows[0].ack_p99_ms or 0) > 0  # ingest answers, with either broker
    assert (rows[2].ack_p99_ms or 0) > 0
    assert rows[4].ack_p99_ms is None  # the floor's publisher WebSocket is not answered
    found = [v for v in verdicts(rows, 20) if v.target.startswith("7")]
    assert len(found) == 6
    assert all(v.ok is not None for v in found)


def test_governor_scenario_runs_at_small_scale(tmp_path: Path) -> None:
    """Scenario 8 end to end with 20 subscribers: our server with the governor on and off
    take pipelined single-event requests step by step, every request answered, and the
    report compares their capacities."""
    opts = Options(
        quick=True,
        servers=("aurigraph",),
        workers=1,
        capacity_subscribers=20,
        governor_rates=(50.0, 100.0),
    )
    with LoadGenerator(workers=1) as lg:
        bench = Bench(opts, lg, tmp_path)
        governor(bench)
    rows = bench.results.rows
    steps = [r for r in rows if r.phase != "capacity"]
    assert {r.server for r in steps} == {"aurigraph", "aurigraph-off"}
    for row in steps:
        assert (row.lost, row.dropped) == (0, 0), row
        assert row.ack_p99_ms is not None, row
        assert "answered" not in row.note, row  # every request got its answer
    caps = {r.server: r for r in rows if r.phase == "capacity"}
    assert set(caps) == {"aurigraph", "aurigraph-off"}
    assert all(r.rate in (0.0, 50.0, 100.0) for r in caps.values())
    found = [v for v in verdicts(rows, 20) if v.target.startswith("8:")]
    assert [v.ok is None for v in found] == [False, True]  # nchan was not run


def test_soak_scenario_runs_at_small_scale(tmp_path: Path) -> None:
    """Scenario 9 for 12 s with 100 subscribers, 10 resumed with since each second and a
    reader that stops, on the memory broker and on Redis: every resume recovers with no
    gap, the descriptors come back, the server closes the stopped reader as slow, and the
    five verdicts of each are stated."""
    opts = Options(
        quick=True,
        servers=("aurigraph",),
        workers=1,
        soak=12.0,
        soak_subscribers=100,
        soak_churn=10,
        soak_rate=1500.0,  # fast enough for a stopped reader to fall behind in seconds
        soak_slow_every=4.0,  # one reader that stops, 3 s in, with 9 s to be found slow
        soak_settle=3.0,
        soak_slow_close=6.0,
        # The history reaches back further than a resume; a small cap finds the slow one.
        server_args=("--history-size", "30000", "--max-buffered-bytes", "16384"),
    )
    with LoadGenerator(workers=1) as lg:
        bench = Bench(opts, lg, tmp_path)
        soak(bench)
    rows = bench.results.rows
    assert [r.server for r in rows] == ["aurigraph", "aurigraph-redis"]
    for row in rows:
        figures = bench.results.soak[row.server]
        assert (row.lost, row.out_of_order, row.dropped) == (0, 0, 0), row
        assert figures.reconnects >= 50, figures
        assert figures.reconnect_failures == 0, figures
        assert "0 not recovered" in row.note, row
        assert figures.fds_after <= figures.fds_before, figures
        assert figures.slow_readers == 1, figures
        assert figures.slow_closed >= 1, figures
        assert min(figures.rss_settled, figures.rss_end) > 0, figures
    found = [v for v in verdicts(rows, 20, bench.results.soak) if v.target.startswith("9:")]
    assert len(found) == 10
    assert all(v.ok is not None for v in found)
    # descriptors, resumes and the slow reader, for each broker
    assert [v.ok for v in found[1:4] + found[6:9]] == [True] * 6, found


def test_more_than_one_core_scenario_runs_at_small_scale(tmp_path: Path) -> None:
    """Scenario 10 with 30 subscribers: our server on Redis with one worker and two takes
    single events while its subscribers do not read, loses none, reports its own fan-out
    time, and then delivers an end-to-end phase; the report compares the two."""
    opts = Options(
        servers=("aurigraph",),
        workers=1,
        connections=30,
        cores_phases=((5.0, 2.0),),
        fanout_events=10,
    )
    with LoadGenerator(workers=1) as lg:
        bench = Bench(opts, lg, tmp_path)
        cores(bench)
    rows = bench.results.rows
    assert [(r.server, r.phase) for r in rows] == [
        ("aurigraph-redis", FANOUT_PHASE),
        ("aurigraph-redis", "5 msg/s"),
        ("aurigraph-redis-2w", FANOUT_PHASE),
        ("aurigraph-redis-2w", "5 msg/s"),
    ]
    for row in rows:
        assert (row.lost, row.dropped) == (0, 0), row
        assert row.passed, row
    for row in rows[0::2]:  # the server's own figures, every worker's
        assert 0 < (row.p50_ms or 0) <= (row.p99_ms or 0), row
        assert row.deliveries == 10 * 30, row
    found = [v for v in verdicts(rows, 30) if v.target.startswith("10:")]
    assert len(found) == 3
    assert all(v.ok is not None for v in found)


def test_redis_cost_scenario_runs_at_small_scale(tmp_path: Path) -> None:
    """Scenario 11, one short round: the memory broker and Redis side by side at 1,000
    events/s, every message delivered, and the added p99 stated."""
    opts = Options(servers=("aurigraph",), workers=1, redis_seconds=2.0, redis_rounds=1)
    with LoadGenerator(workers=1) as lg:
        bench = Bench(opts, lg, tmp_path)
        redis_cost(bench)
    rows = bench.results.rows
    assert [r.server for r in rows] == ["aurigraph", "aurigraph-redis"]
    for row in rows:
        assert (row.lost, row.dropped) == (0, 0), row
        assert row.deliveries == 20 * row.published, row
    assert "redis-server CPU" in rows[1].note
    (found,) = [v for v in verdicts(rows, 20) if v.target.startswith("11:")]
    assert found.ok is not None


def test_soak_is_skipped_unless_asked_for(tmp_path: Path) -> None:
    """Without --soak the scenario says so in the report's Skipped list and runs nothing."""
    with LoadGenerator(workers=1) as lg:
        bench = Bench(Options(quick=True, servers=("aurigraph",), workers=1), lg, tmp_path)
        soak(bench)
    assert bench.results.rows == []
    assert "--soak" in bench.results.skipped["9 soak"]


def test_floor_server_delivers_every_message(floor_server: Floor) -> None:
    """The floor server hands every published message to every subscriber, in order, and
    answers without permessage-deflate even when it is offered."""
    port = floor_server.port
    with (
        LoadGenerator(workers=1) as lg,
        Publisher(floor_server.publish_target("transactions")) as pub,
    ):
        plain = lg.connect(HOST, port, ["/ws/transactions"] * 3, group="plain")
        offered = lg.connect(HOST, port, ["/ws/transactions"] * 2, deflate=True, group="offered")
        assert (plain.opened, plain.failed, offered.opened, offered.failed) == (3, {}, 2, {})
        assert offered.deflate == 0
        first = pub.prime()
        for group in ("plain", "offered"):
            lg.reset(first, group)
        result = pub.run(rate=100, duration=1.0)
        assert (result.first, result.sent, result.last - result.first + 1) == (first, 100, 100)
        for group, clients in (("plain", 3), ("offered", 2)):
            _all_delivered(lg, group, clients, result.last, 100)


def _all_delivered(
    lg: LoadGenerator, group: str, clients: int, last: int, messages: int
) -> Snapshot:
    """Assert that each of the group's clients got all ``messages``, in order, none dropped."""
    assert lg.wait_delivered(last_seq=last, timeout=10, group=group)
    snap = lg.snapshot(expected=messages, group=group)
    assert (snap.deliveries, snap.lost, snap.out_of_order, snap.gaps) == (
        messages * clients,
        0,
        0,
        0,
    )
    assert (snap.dropped, snap.bad, snap.open) == (0, 0, clients)
    return snap


def test_floor_server_parses_client_frames(floor_server: Floor) -> None:
    """The floor server reassembles split, 16/64-bit-length and fragmented publisher frames,
    answers pings, echoes a close and closes, and refuses unmasked frames with 1002."""
    port = floor_server.port
    with RawWebSocket(port) as sub, RawWebSocket(port) as pub, RawWebSocket(port) as rude:
        assert (
            "sec-websocket-extensions"
            not in sub.open(
                "/ws/transactions", extensions="permessage-deflate; client_max_window_bits"
            ).headers
        )
        pub.open("/publish/transactions")
        medium, large = b"m" * 300, bytes(range(256)) * 300  # 16-bit and 64-bit lengths
        data = frame_bytes(OP_TEXT, medium) + frame_bytes(OP_TEXT, large)
        data += frame_bytes(OP_TEXT, b"frag", fin=False) + frame_bytes(OP_CONT, b"mented")
        for i in range(0, len(data), 1000):  # split anywhere, headers included
            pub.sock.sendall(data[i : i + 1000])
        assert [sub.recv_frame().payload for _ in range(3)] == [medium, large, b"fragmented"]
        pub.send_frame(OP_PING, b"are you there")
        pong = pub.recv_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"are you there")
        # Only the head of an oversized frame: the server must refuse it before the payload.
        pub.sock.sendall(struct.pack("!BBQ", 0x81, 0xFF, MAX_MESSAGE + 1) + b"mask")
        assert pub.recv_until(OP_CLOSE).close_code() == 1009
        sub.send_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
        assert sub.recv_until(OP_CLOSE).close_code() == 1000
        assert sub.sock.recv(16) == b""  # then the server closed the connection
        rude.open("/ws/transactions")
        rude.sock.sendall(bytes((0x81, 5)) + b"plain")
        assert rude.recv_until(OP_CLOSE).close_code() == 1002


def test_floor_server_handshake_satisfies_a_real_client(floor_server: Floor) -> None:
    """The `websockets` client, which checks Sec-WebSocket-Accept, opens and closes cleanly."""
    url = f"ws://{HOST}:{floor_server.port}/ws/transactions"
    with websockets.sync.client.connect(url, open_timeout=5, close_timeout=5) as ws:
        ws.ping().wait(5)
    assert ws.close_code == 1000


def test_send_cost_is_measured_and_cleaned_up() -> None:
    """The machine's loopback send() cost comes out positive, and no socket is left open."""
    before = _open_sockets()
    cost = measure(pairs=200, rounds=3)
    assert (cost.pairs, cost.rounds, cost.payload) == (200, 3, 300)
    assert 0 < cost.wall_us < 10_000
    assert cost.kernel_us >= 0
    assert cost.broadcast_ms()[0] == pytest.approx(cost.wall_us * 10)
    assert "10,000 in a row" in cost.describe()
    assert _open_sockets() == before


def _open_sockets() -> int:
    """Socket descriptors this process holds."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _readlink(fd).startswith("socket:"))


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""
