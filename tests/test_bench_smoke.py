"""The benchmark harness (bench/) against the real server, briefly, so it cannot rot."""

from __future__ import annotations

from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds, rss_bytes
from bench.publisher import Publisher, Target

from tests.server import ServerProcess

INGEST = "/api/v11/streams/transactions/events"


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
            assert lg.wait_delivered(last_seq=result.last, timeout=10, group=group)
            snap = lg.snapshot(expected=100, group=group)
            assert (snap.deliveries, snap.lost, snap.out_of_order, snap.gaps) == (
                100 * clients,
                0,
                0,
                0,
            )
            assert (snap.dropped, snap.bad, snap.open) == (0, 0, clients)
            p50, p99 = snap.hist.percentile_us(0.5), snap.hist.percentile_us(0.99)
            assert p50 is not None
            assert p99 is not None
            assert 0 < p50 <= p99 <= snap.hist.max_us < 2_000_000
        assert cpu_seconds(quiet_server.proc.pid) > cpu_before
        assert rss_bytes(quiet_server.proc.pid) > 10_000_000
        assert lg.cpu_seconds() > 0
