"""Server CPU time per ingested event: what publishing through the HTTP API costs our server.

Starts ``aurigraph-stream serve`` from a source tree (bench.servers.Aurigraph, the
benchmark's production flags, no simulator, no subscriber), drives its ingest API
with the benchmark publisher at a fixed rate (one request per 10 ms tick), and
divides the server's CPU time over the run by the events accepted. Compare two
trees in one sitting:

    .venv/bin/python -m bench.ingest_cpu --source /path/to/tree-a --source /path/to/tree-b
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.publisher import Publisher
from bench.servers import ROOT, Aurigraph

__all__ = ["measure"]


def measure(source: Path, rate: float, seconds: float) -> tuple[float, int]:
    """Return (server CPU microseconds per accepted event, events accepted)."""
    with tempfile.TemporaryDirectory(prefix="ingest-cpu-") as tmp:
        server = Aurigraph(Path(tmp), source)
        server.start()
        try:
            with Publisher(server.publish_target("transactions")) as pub:
                pub.prime()
                before = server.cpu()
                result = pub.run(rate, seconds)
                cpu = server.cpu() - before
        finally:
            server.stop()
    return cpu / result.sent * 1e6 if result.sent else float("nan"), result.sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", type=Path, help="source tree (repeatable)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over sources")
    args = parser.parse_args()
    sources = args.source or [ROOT]
    for _ in range(args.rounds):
        for source in sources:
            per_event, sent = measure(source, args.rate, args.seconds)
            print(
                f"{source}: {sent} events at {args.rate:g}/s, server CPU {per_event:.0f} us each",
                flush=True,
            )


if __name__ == "__main__":
    main()
