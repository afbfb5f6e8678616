"""The load generator: subscriber connections spread over worker processes.

Each worker is a separate process (``multiprocessing``, spawn) running uvloop
and :class:`bench.client.Subscriber` connections; the controller in the main
process sends it commands over a pipe and merges what the workers measured.
The workers' own CPU time is read from /proc so every result says whether the
generator, rather than the server, was the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench.client import Recorder, Subscriber
from bench.histogram import Histogram
from bench.ipc import listen
from bench.procstat import cpu_seconds

__all__ = ["ChurnResult", "ConnectResult", "LoadGenerator", "Snapshot", "worker_main"]

COMMAND_TIMEOUT = 120.0  # no command may take longer than this (connecting 10,000 included)


@dataclass
class ConnectResult:
    requested: int
    opened: int
    seconds: float  # first connect started to last 101 received, over all workers
    failed: dict[str, int] = field(default_factory=dict)
    deflate: int = 0  # connections that negotiated permessage-deflate
    context_takeover: int = 0  # of those, how many the server compresses with a shared window


@dataclass
class Snapshot:
    hist: Histogram
    deliveries: int
    lost: int  # broadcast: messages of the phase some open or dropped connection missed
    out_of_order: int
    gaps: int
    dropped: int  # connections that ended without the generator asking
    closes: dict[int, int]
    stale: int
    bad: int
    open: int
    resumed: int = 0  # subscribed frames with recovered: true
    unrecovered: int = 0  # subscribed frames with recovered: false


@dataclass
class ChurnResult:
    reconnected: int
    failed: dict[str, int] = field(default_factory=dict)


# -- worker process -----------------------------------------------------------------
class _Worker:
    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        # One recorder and connection list per group (per server, when several run at once),
        # so a late message from one server can never count for another.
        self.recs: dict[str, Recorder] = {}
        self.conns: dict[str, list[Subscriber]] = {}
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self.turn: dict[str, int] = {}  # per group: the connection churn drops next

    def on_command(self, cmd: dict[str, Any] | None) -> None:
        if cmd is None:  # the controller went away
            self._stop()
            return
        op = cmd["op"]
        group = cmd.get("group", "")
        rec = self.recs.setdefault(group, Recorder())
        conns = self.conns.setdefault(group, [])
        if op in ("connect", "churn"):
            work = self._connect(cmd) if op == "connect" else self._churn(cmd)
            task = self.loop.create_task(work)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif op == "reset":
            rec.reset(cmd["first"])
            for conn in conns:
                conn.reset(cmd["first"])
            self.pipe.send({"ok": True})
        elif op == "progress":
            live = [c.max_seq for c in conns if c.open]
            self.pipe.send(
                {
                    "min_seq": min(live) if live else None,
                    "deliveries": rec.deliveries,
                    "open": len(live),
                }
            )
        elif op in ("pause", "resume"):
            # Stop (or go on) reading the group's sockets: what the server sends meanwhile
            # waits in the kernel's buffers, so its writes cost it no waiting on ours.
            for conn in conns:
                transport = conn.transport
                if transport is not None and conn.open:
                    if op == "pause":
                        transport.pause_reading()
                    else:
                        transport.resume_reading()
            self.pipe.send({"ok": True})
        elif op == "snapshot":
            self.pipe.send(_snapshot(rec, conns, cmd["expected"]))
        elif op == "close":
            for name in list(self.conns) if cmd.get("all") else [group]:
                for conn in self.conns.pop(name, []):
                    conn.drop()
            self.pipe.send({"ok": True})
        elif op == "exit":
            self.pipe.send({"ok": True})
            self._stop()

    def _stop(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    async def _connect(self, cmd: dict[str, Any]) -> None:
        group = cmd.get("group", "")
        rec = self.recs[group]
        host, port = cmd["host"], cmd["port"]
        host_header = f"{host}:{port}"
        timeout = cmd["timeout"]
        sem = asyncio.Semaphore(cmd["concurrency"])
        failed: Counter[str] = Counter()
        opened: list[Subscriber] = []
        loop = self.loop

        operations = cmd.get("graphql") or [None] * len(cmd["paths"])

        async def one(path: str, operation: str | None, op_id: str) -> None:
            async with sem:
                ready: asyncio.Future[int] = loop.create_future()
                proto = Subscriber(
                    rec,
                    host_header,
                    path,
                    cmd["deflate"],
                    ready,
                    operation,
                    op_id,
                    control=cmd.get("control", False),
                    stride=cmd.get("stride", 1),
                )
                try:
                    await asyncio.wait_for(
                        loop.create_connection(lambda: proto, host, port), timeout
                    )
                    status = await asyncio.wait_for(ready, timeout)
                except TimeoutError:
                    failed["timeout"] += 1
                    proto.drop()
                    return
                except OSError as exc:
                    failed[type(exc).__name__] += 1
                    return
                if status == 1:
                    opened.append(proto)
                else:
                    failed[f"http {-status}" if status < 0 else "closed"] += 1

        t0 = time.time()
        await asyncio.gather(
            *(
                # Operation ids as graphql-ws makes them: one per subscriber (a UUID there).
                one(path, operation, f"{cmd['worker']}-{i}")
                for i, (path, operation) in enumerate(zip(cmd["paths"], operations, strict=True))
            )
        )
        t1 = time.time()
        self.conns[group] += opened
        self.pipe.send(
            {
                "opened": len(opened),
                "failed": dict(failed),
                "t0": t0,
                "t1": t1,
                "deflate": sum(c.deflate for c in opened),
                "takeover": sum(c.inflater is not None for c in opened),
            }
        )

    async def _churn(self, cmd: dict[str, Any]) -> None:
        """Drop ``count`` of the group's connections (the next ones in turn) and open each
        again with ``since`` = the last seq it had and the epoch its subscribed frame said."""
        group = cmd.get("group", "")
        rec = self.recs[group]
        conns = self.conns.setdefault(group, [])
        host, port = cmd["host"], cmd["port"]
        failed: Counter[str] = Counter()
        chosen: list[int] = []
        start = self.turn.get(group, 0)
        for step in range(len(conns)):
            if len(chosen) >= cmd["count"]:
                break
            index = (start + step) % len(conns)
            conn = conns[index]
            # It must know where it is: an epoch, and a message after its start.
            if conn.open and conn.epoch and conn.max_seq:
                chosen.append(index)
        self.turn[group] = (chosen[-1] + 1) if chosen else start

        async def again(index: int) -> None:
            old = conns[index]
            old.drop()
            base, _, query = old.path.partition("?")
            keep = [p for p in query.split("&") if p and not p.startswith(("replay=", "since="))]
            path = f"{base}?{'&'.join([*keep, f'since={old.max_seq}:{old.epoch}'])}"
            ready: asyncio.Future[int] = self.loop.create_future()
            new = Subscriber(
                rec,
                f"{host}:{port}",
                path,
                False,
                ready,
                control=True,
                max_seq=old.max_seq,
                stride=old.stride,
            )
            new.count = old.count
            new.gaps, new.ooo = old.gaps, old.ooo
            conns[index] = new
            try:
                await asyncio.wait_for(self.loop.create_connection(lambda: new, host, port), 10)
                status = await asyncio.wait_for(ready, 10)
            except (TimeoutError, OSError) as exc:
                failed[type(exc).__name__] += 1
                return
            if status != 1:
                failed[f"http {-status}" if status < 0 else "closed"] += 1

        await asyncio.gather(*(again(i) for i in chosen))
        self.pipe.send({"reconnected": len(chosen) - sum(failed.values()), "failed": dict(failed)})


def _snapshot(rec: Recorder, conns: list[Subscriber], expected: int) -> dict[str, Any]:
    return {
        "buckets": rec.buckets(),
        "max_us": rec.max_us,
        "deliveries": rec.deliveries,
        "lost": sum(max(0, expected - c.count) for c in conns) if expected else 0,
        "ooo": sum(c.ooo for c in conns),
        "gaps": sum(c.gaps for c in conns),
        "dropped": rec.dropped,
        "closes": dict(rec.closes),
        "stale": rec.stale,
        "bad": rec.bad,
        "open": sum(c.open for c in conns),
        "resumed": rec.resumed,
        "unrecovered": rec.unrecovered,
    }


async def _worker_loop(pipe: Connection) -> None:
    worker = _Worker(pipe)
    listen(pipe, worker.loop, worker.on_command)
    await worker.done


def worker_main(pipe: Connection) -> None:
    """Entry point of a load-generator process."""
    import uvloop

    from bench.procstat import raise_open_file_limit

    raise_open_file_limit()
    uvloop.run(_worker_loop(pipe))


# -- controller -----------------------------------------------------------------------
class LoadGenerator:
    """Starts ``workers`` processes and drives them; use as a context manager."""

    def __init__(self, workers: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[BaseProcess] = []
        for index in range(max(1, workers)):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(theirs,), name=f"bench-loadgen-{index}", daemon=True
            )
            proc.start()
            theirs.close()
            self._pipes.append(ours)
            self._procs.append(proc)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def cpu_seconds(self) -> float:
        """CPU time the worker processes have used so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def _call(self, cmds: Sequence[dict[str, Any]], timeout: float = COMMAND_TIMEOUT) -> list[Any]:
        for pipe, cmd in zip(self._pipes, cmds, strict=True):
            pipe.send(cmd)
        deadline = time.monotonic() + timeout
        replies = []
        for pipe, proc in zip(self._pipes, self._procs, strict=True):
            try:
                if not pipe.poll(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(
                        f"load generator did not answer {cmds[0]['op']!r} in {timeout}s"
                    )
                replies.append(pipe.recv())
            except (EOFError, OSError) as exc:
                proc.join(1)
                raise RuntimeError(
                    f"load generator process {proc.name} died (exit code {proc.exitcode})"
                ) from exc
        return replies

    def _broadcast(self, cmd: dict[str, Any], timeout: float = COMMAND_TIMEOUT) -> list[Any]:
        return self._call([cmd] * len(self._pipes), timeout)

    def connect(
        self,
        host: str,
        port: int,
        paths: Sequence[str],
        *,
        deflate: bool = False,
        concurrency: int = 200,
        timeout: float = 30.0,
        group: str = "",
        graphql: Sequence[str] | None = None,
        control: bool = False,
        stride: int = 1,
    ) -> ConnectResult:
        """Open one connection per path (spread over the workers) and wait for every 101.

        ``graphql``: per path, the JSON text of a subscribe payload (``{"query": ...}``): those
        connections speak graphql-transport-ws, and are open at ``connection_ack``.
        ``control``: the paths ask for a starting point, so a subscribed frame comes first.
        ``stride``: each connection's seqs are that far apart (see :class:`Subscriber`).
        """
        n = len(self._pipes)
        cmds = [
            {
                "op": "connect",
                "host": host,
                "port": port,
                "paths": list(paths[i::n]),
                "graphql": list(graphql[i::n]) if graphql is not None else None,
                "worker": i,
                "deflate": deflate,
                "concurrency": concurrency,
                "timeout": timeout,
                "group": group,
                "control": control,
                "stride": stride,
            }
            for i in range(n)
        ]
        replies = self._call(cmds)
        failed: Counter[str] = Counter()
        for reply in replies:
            failed.update(reply["failed"])
        return ConnectResult(
            requested=len(paths),
            opened=sum(r["opened"] for r in replies),
            seconds=max(r["t1"] for r in replies) - min(r["t0"] for r in replies),
            failed=dict(failed),
            deflate=sum(r["deflate"] for r in replies),
            context_takeover=sum(r["takeover"] for r in replies),
        )

    def churn(self, host: str, port: int, count: int, group: str = "") -> ChurnResult:
        """Drop ``count`` connections of the group (spread over the workers) and reconnect
        each with ``since`` its last seq; they must have been opened with ``control``."""
        n = len(self._pipes)
        shares = [count // n + (1 if i < count % n else 0) for i in range(n)]
        replies = self._call(
            [
                {"op": "churn", "host": host, "port": port, "count": share, "group": group}
                for share in shares
            ]
        )
        failed: Counter[str] = Counter()
        for reply in replies:
            failed.update(reply["failed"])
        return ChurnResult(sum(r["reconnected"] for r in replies), dict(failed))

    def reset(self, first: int, group: str = "") -> None:
        """Start a phase: forget figures; messages with ``seq < first`` are stale from now on."""
        self._broadcast({"op": "reset", "first": first, "group": group})

    def progress(self, group: str = "") -> tuple[int | None, int, int]:
        """(lowest seq every open connection has reached, deliveries, open connections)."""
        replies = self._broadcast({"op": "progress", "group": group})
        seqs = [r["min_seq"] for r in replies if r["min_seq"] is not None]
        return (
            min(seqs) if seqs else None,
            sum(r["deliveries"] for r in replies),
            sum(r["open"] for r in replies),
        )

    def wait_delivered(
        self,
        *,
        last_seq: int | None = None,
        deliveries: int | None = None,
        timeout: float = 5.0,
        group: str = "",
    ) -> bool:
        """Wait (bounded) until every open connection has ``last_seq``, or the total
        deliveries reach ``deliveries``. Returns whether it happened in time."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 2):
            low, total, _open = self.progress(group)
            if last_seq is not None and low is not None and low >= last_seq:
                return True
            if deliveries is not None and total >= deliveries:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return False

    def snapshot(self, expected: int = 0, group: str = "") -> Snapshot:
        """Merge the workers' figures; ``expected`` is the messages each connection should
        have had this phase (broadcast), 0 when that is not known."""
        replies = self._broadcast({"op": "snapshot", "expected": expected, "group": group})
        hist = Histogram().merge(Histogram.from_buckets(r["buckets"], r["max_us"]) for r in replies)
        closes: Counter[int] = Counter()
        for reply in replies:
            closes.update(reply["closes"])
        return Snapshot(
            hist=hist,
            deliveries=sum(r["deliveries"] for r in replies),
            lost=sum(r["lost"] for r in replies),
            out_of_order=sum(r["ooo"] for r in replies),
            gaps=sum(r["gaps"] for r in replies),
            dropped=sum(r["dropped"] for r in replies),
            closes=dict(closes),
            stale=sum(r["stale"] for r in replies),
            bad=sum(r["bad"] for r in replies),
            open=sum(r["open"] for r in replies),
            resumed=sum(r.get("resumed", 0) for r in replies),
            unrecovered=sum(r.get("unrecovered", 0) for r in replies),
        )

    def pause(self, group: str = "") -> None:
        """Stop reading the group's sockets (the kernel's buffers take what comes)."""
        self._broadcast({"op": "pause", "group": group})

    def resume(self, group: str = "") -> None:
        """Read the group's sockets again."""
        self._broadcast({"op": "resume", "group": group})

    def close(self, group: str = "") -> None:
        """Drop a group's connections (TCP reset, so no TIME_WAIT piles up between runs)."""
        self._broadcast({"op": "close", "group": group})

    def close_all(self) -> None:
        """Drop every connection of every group."""
        self._broadcast({"op": "close", "all": True})

    def shutdown(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send({"op": "exit"})
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in self._pipes:
            pipe.close()
        self._pipes.clear()
        self._procs.clear()
