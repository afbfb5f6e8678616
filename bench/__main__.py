"""``python -m bench`` (``make bench``): run the scenarios, write the table and the plot.

A full run writes the generated section of docs/benchmarks.md and
docs/benchmarks.png; ``--quick`` (a couple of minutes) writes its report under
bench/results/ unless ``--docs`` asks for docs/ too. Raw rows always go to
bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.loadgen import LoadGenerator
from bench.report import (
    capacity_lines,
    floor_lines,
    markdown,
    plot,
    throughput_lines,
    update_doc,
    verdicts,
)
from bench.scenarios import SCENARIOS, Bench, Options
from bench.sendcost import measure as measure_send_cost
from bench.servers import ROOT, SERVERS, Nchan

__all__ = ["main"]

DOC_INTRO = """# Benchmarks

How fast the fan-out is, measured against the two usual alternatives on the same
machine, in the same run, on the same load: a `websockets` server using
`websockets.broadcast()` and nginx with the nchan module, and against the floor: a bare
uvloop loop that writes one prebuilt frame to every subscriber. `make bench` runs it; see
bench/README.md for what each scenario does and how each figure is measured.
"""


def _versions() -> str:
    from importlib.metadata import version

    parts = [f"uvloop {version('uvloop')}", f"websockets {version('websockets')}"]
    try:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
        parts.append(out.stderr.strip().replace("nginx version: ", ""))
        nchan = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if nchan.returncode == 0:
            parts.append(f"nchan {nchan.stdout.strip()}")
    except (OSError, subprocess.TimeoutExpired):
        parts.append("nginx not found")
    return ", ".join(parts)


def _revision(source: Path | None) -> str:
    tree = source or ROOT
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return f"server from {tree}"
    if source is not None:
        return f"server from {source} (repository at {rev})"
    return f"git {rev}" + (" plus uncommitted changes in the working tree" if dirty else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases (a couple of minutes)")
    parser.add_argument(
        "--scenarios",
        default="1,2,3,4,5,6,7,8,9,10,11",
        help="comma-separated scenario numbers (default all)",
    )
    parser.add_argument(
        "--servers",
        default="aurigraph,websockets,nchan,floor",
        help="comma-separated: aurigraph, websockets, nchan, floor (the bare uvloop loop)",
    )
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="connections in scenarios 2-4 (default 10,000; 2,000 with --quick)",
    )
    parser.add_argument(
        "--pyspy", action="store_true", help="also profile our server (extra passes)"
    )
    parser.add_argument(
        "--gc-watch",
        action="store_true",
        help="log our server's garbage-collector pauses (python -m bench.gcwatch) per phase",
    )
    parser.add_argument(
        "--gc-freeze",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="what-if, implies --gc-watch: gc.freeze() in our server every SECONDS",
    )
    parser.add_argument(
        "--server-args",
        default="",
        metavar="FLAGS",
        help='extra flags for our server, e.g. "--ping-interval 3600" (what-if runs)',
    )
    parser.add_argument("--source", type=Path, default=None, help="run our server from this tree")
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the soak (scenario 9) for this long, e.g. 600; without it the soak is skipped",
    )
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", dest="docs", action="store_true", default=None)
    docs.add_argument("--no-docs", dest="docs", action="store_false")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m bench" + (" " + shlex.join(argv_list) if argv_list else "")
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios: {unknown}; known: {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        print(f"unknown servers: {unknown}; known: {list(SERVERS)}", file=sys.stderr)
        return 2
    missing_nchan = Nchan.available() if "nchan" in servers else None
    if missing_nchan:
        print(f"nchan skipped: {missing_nchan}", file=sys.stderr)
        servers = tuple(s for s in servers if s != "nchan")
    opts = Options(
        quick=args.quick,
        servers=servers,
        workers=args.workers,
        connections=args.connections or (2_000 if args.quick else 10_000),
        pyspy=args.pyspy,
        gc_watch=args.gc_watch or args.gc_freeze > 0,
        gc_freeze=args.gc_freeze,
        server_args=tuple(shlex.split(args.server_args)),
        source=args.source,
        soak=args.soak,
    )
    write_docs = (not args.quick) if args.docs is None else args.docs
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    revision = _revision(opts.source)  # the code that runs: read before anything can change
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="aurigraph-bench-") as tmp,
        LoadGenerator(opts.workers) as loadgen,
    ):
        bench = Bench(opts, loadgen, Path(tmp))
        # The machine's floor, before any server runs: what one loopback send() costs now.
        bench.results.send_cost = measure_send_cost()
        bench.say(f"machine: {bench.results.send_cost.describe()}")
        if missing_nchan:
            bench.results.skipped["nchan"] = missing_nchan
        for number in scenarios:
            # One scenario failing (a server that does not start, say) is reported, and
            # the others still run and are written.
            try:
                SCENARIOS[number](bench)
            except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
                traceback.print_exc()
                bench.results.skipped[number] = f"failed: {type(exc).__name__}: {exc}"
                bench.say(f"scenario {number} failed: {exc}")
    results = bench.results
    bench.say(f"done in {time.monotonic() - started:.0f} s")
    (results_dir / f"{stamp}.json").write_text(
        json.dumps(
            {
                "command": command,
                "date": date,
                "rows": [dataclasses.asdict(r) for r in results.rows],
                "skipped": results.skipped,
                "profiles": results.profiles,
                "send_cost": dataclasses.asdict(results.send_cost)
                if results.send_cost is not None
                else None,
                "soak": {name: dataclasses.asdict(f) for name, f in results.soak.items()},
            },
            indent=1,
        )
    )
    out_dir = ROOT / "docs" if write_docs else results_dir
    plot_path = out_dir / ("benchmarks.png" if write_docs else f"{stamp}.png")
    plotted = bool(results.rows)
    if plotted:
        plot(results.rows, plot_path)
    block = markdown(
        results,
        command=command,
        date=date,
        revision=revision,
        versions=_versions(),
        connections=opts.connections,
        plot_name=plot_path.name if plotted else None,
    )
    if write_docs:
        update_doc(ROOT / "docs" / "benchmarks.md", block, DOC_INTRO)
        print(f"wrote docs/benchmarks.md and {plot_path.relative_to(ROOT)}")
    else:
        (results_dir / f"{stamp}.md").write_text(block)
        print(f"wrote {(results_dir / f'{stamp}.md').relative_to(ROOT)}")
    print()
    for v in verdicts(results.rows, opts.connections, results.soak):
        result = "not measured" if v.ok is None else ("met" if v.ok else "MISSED")
        print(f"{result:>12}  {v.target}: {v.measured}")
    for line in (
        capacity_lines(results.rows) + throughput_lines(results.rows) + floor_lines(results.rows)
    ):
        print(f"{'info':>12}  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
