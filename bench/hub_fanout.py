"""Hub fan-out without I/O: the cost of one delivery, measured in-process.

N subscribers whose ``write_frames`` only counts bytes; M events published in
ticks of ``--batch`` events, each tick followed by the flush the server would
schedule. The timer covers publish and flush, so it measures encoding,
framing, compression, per-subscriber queueing and the one write per tick, and
nothing of the kernel. Reported: microseconds per delivery (one message to
one subscriber) and, for the filtered case, per event.

Scenarios:

``broadcast``        every subscriber takes every transaction (JSON, no compression)
``broadcast-deflate`` the same with permessage-deflate (compressed once per event)
``own-address``      each subscriber filters on its own address: a transaction
                     matches about two of them, so the cost per event should not
                     grow with N (needs a hub with filters)
``views``            GraphQL-like: the subscribers split over ``--groups`` views
                     (documents) that every transaction matches, each subscriber
                     with an envelope of its own (its operation id), no compression
``views-deflate``    the same with permessage-deflate (``--events`` / 20 events)
``latest``           every subscriber on consensus with ``latest`` (latest-wins)
``conflate``         metrics under a governor that holds every flush: ``--events``
                     x 10 events published one at a time, ``--batch`` x 10 per
                     flush, conflated at the flush for ``--groups`` x 25 groups
                     (``every``)

Run: ``.venv/bin/python -m bench.hub_fanout [--subscribers N] [--events M]``; to
measure another tree's hub, put its ``src`` first: ``PYTHONPATH=<tree>/src``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from aurigraph_stream.event import Event
from aurigraph_stream.hub import Hub, Subscriber

try:  # trees from before the flush governor have none
    from aurigraph_stream.hub import Governor
except ImportError:  # pragma: no cover - an older tree
    Governor = None  # type: ignore[assignment,misc]
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES

__all__ = ["SCENARIOS", "main"]

SCENARIOS = (
    "broadcast",
    "broadcast-deflate",
    "own-address",
    "views",
    "views-deflate",
    "latest",
    "conflate",
)


class CountingSubscriber(Subscriber):
    """A subscriber whose transport is a byte counter."""

    __slots__ = ("frames", "written")

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.frames = 0

    def write_frames(self, frames: bytes | list[bytes]) -> None:
        if isinstance(frames, bytes):
            self.frames += 1
            self.written += len(frames)
            return
        self.frames += len(frames)
        for frame in frames:
            self.written += len(frame)

    def buffered_size(self) -> int:
        return 0

    def overflow(self) -> None:
        raise AssertionError("a counting subscriber never falls behind")


def _address(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _transactions(count: int, accounts: list[str], rng: random.Random) -> list[Event]:
    events = []
    for seq in range(1, count + 1):
        sender, receiver = rng.sample(accounts, 2)
        data: dict[str, Any] = {
            "timestamp": "2025-10-25T09:35:02.123456Z",
            "txHash": "0x" + rng.randbytes(32).hex(),
            "from": sender,
            "to": receiver,
            "value": str(rng.randrange(1, 50) * 10**18),
            "status": "PENDING",
            "gasUsed": 21000,
            "seq": seq,
        }
        events.append(Event("transactions", seq, data, time.perf_counter()))
    return events


class RenderedView:
    """A view that renders a transaction as a GraphQL result would be, left open (no
    graphql-core: the fan-out is measured, not the execution)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def render(self, event: Event) -> bytes | None:
        return b'{"data":{"transactions":' + orjson.dumps(event.data) + b"}"

    def opening(self, start: Any) -> bytes:
        return b',"extensions":{"stream":' + orjson.dumps(start) + b"}}}"


class Holding(Governor if Governor is not None else object):  # type: ignore[misc]
    """A governor that holds every flush (1 ms), so that held states are conflated."""

    def delay(self) -> float:
        return 0.001


def _run(
    hub: Hub,
    flushes: list[Callable[[], None]],
    events: list[Event],
    batch: int,
    *,
    one_by_one: bool = False,
) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        if one_by_one:  # each event a publish of its own, the flush after the batch
            for event in events[i : i + batch]:
                hub.publish([event])
        else:
            hub.publish(events[i : i + batch])
        while flushes:
            flushes.pop()()
    return time.perf_counter() - start


def _metrics(count: int) -> list[Event]:
    return [
        Event("metrics", seq, {"tps": 1000.0 + seq, "cpu": 12.5, "seq": seq}, time.perf_counter())
        for seq in range(1, count + 1)
    ]


def _consensus(count: int) -> list[Event]:
    return [
        Event(
            "consensus", seq, {"round": seq, "state": "COMMITTED", "seq": seq}, time.perf_counter()
        )
        for seq in range(1, count + 1)
    ]


def scenario(
    name: str, subscribers: int, events: int, batch: int, groups: int = 4
) -> dict[str, float] | None:
    rng = random.Random(5)
    flushes: list[Callable[[], None]] = []
    # A hub with a flush governor keeps its books on every publish and flush, as the
    # server's does; it never holds here (no call_later), so every tick is written.
    governed: dict[str, Any] = {"governor": Governor(100.0)} if Governor is not None else {}
    if name == "conflate":  # every flush held (a call_later the bench runs after the batch)
        if Governor is None:
            return None
        governed = {
            "governor": Holding(100.0),
            "schedule_later": lambda delay, callback: flushes.append(callback),
            "conflate": frozenset(("metrics", "consensus")),
        }
    hub = Hub(
        Stats.for_streams(NAMES),
        schedule=flushes.append,
        max_buffered=1 << 40,
        compression_level=6,
        **governed,
    )
    subs = [CountingSubscriber() for _ in range(subscribers)]
    stream: list[Event]
    if name in ("views", "views-deflate"):
        bits = 15 if name == "views-deflate" else 0
        views = [RenderedView(f"document {g}") for g in range(groups)]
        for n, sub in enumerate(subs):
            prefix = b'{"id":"' + str(n).encode() + b'","type":"next","payload":'
            hub.subscribe(
                sub,
                "transactions",
                ("json", bits),
                view=views[n % groups],
                envelope=(prefix, b"}}"),
            )
        accounts = [_address(rng) for _ in range(64)]
        stream = _transactions(events, accounts, rng)
    elif name == "latest":
        from aurigraph_stream.filters import parse_filter

        flt = parse_filter("consensus", {"latest": True})
        for sub in subs:
            hub.subscribe(sub, "consensus", ("json", 0), flt)
        stream = _consensus(events)
    elif name == "conflate":
        from aurigraph_stream.filters import parse_filter

        filters = [parse_filter("metrics", {"every": k}) for k in range(1, groups * 25 + 1)]
        for n, sub in enumerate(subs):
            hub.subscribe(sub, "metrics", ("json", 0), filters[n % len(filters)])
        stream = _metrics(events)
    if name in ("views", "views-deflate", "latest", "conflate"):
        one_by_one = name == "conflate"
        _run(hub, flushes, stream[: min(len(stream), batch)], batch, one_by_one=one_by_one)
        for sub in subs:
            sub.frames = sub.written = 0
        elapsed = _run(hub, flushes, stream, batch, one_by_one=one_by_one)
        deliveries = sum(sub.frames for sub in subs)
        return {
            "seconds": elapsed,
            "deliveries": deliveries,
            "us_per_delivery": elapsed / max(deliveries, 1) * 1e6,
            "us_per_event": elapsed / len(stream) * 1e6,
        }
    if name == "own-address":
        try:
            from aurigraph_stream.filters import parse_filter
        except ImportError:
            return None
        accounts = [_address(rng) for _ in range(subscribers)]
        for sub, account in zip(subs, accounts, strict=True):
            hub.subscribe(
                sub,
                "transactions",
                ("json", 0),
                parse_filter("transactions", {"address": account}),
            )
    else:
        accounts = [_address(rng) for _ in range(64)]
        bits = 15 if name == "broadcast-deflate" else 0
        for sub in subs:
            hub.subscribe(sub, "transactions", ("json", bits))
    stream = _transactions(events, accounts, rng)
    _run(hub, flushes, stream[: min(len(stream), batch)], batch)  # warm up
    for sub in subs:
        sub.frames = sub.written = 0
    elapsed = _run(hub, flushes, stream, batch)
    deliveries = sum(sub.frames for sub in subs)
    return {
        "seconds": elapsed,
        "deliveries": deliveries,
        "us_per_delivery": elapsed / max(deliveries, 1) * 1e6,
        "us_per_event": elapsed / events * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10, help="events per tick")
    parser.add_argument(
        "--groups", type=int, default=4, help="views: documents; conflate: x 25 filters"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="repeatable; default: broadcast, broadcast-deflate, own-address",
    )
    args = parser.parse_args(argv)
    for name in args.scenario or SCENARIOS[:3]:
        events = args.events * (50 if name == "own-address" else 1)
        if name == "views-deflate":
            events = max(1, args.events // 20)
        elif name == "conflate":
            events = args.events * 10
        batch = args.batch * 10 if name == "conflate" else args.batch
        result = scenario(name, args.subscribers, events, batch, args.groups)
        if result is None:
            print(f"{name:18s} skipped: this hub has no filters or no governor")
            continue
        print(
            f"{name:18s} subscribers={args.subscribers} events={events} "
            f"deliveries={result['deliveries']:.0f} "
            f"{result['us_per_delivery']:.3f} us/delivery "
            f"{result['us_per_event']:.1f} us/event"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
