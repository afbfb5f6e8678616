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

Run: ``.venv/bin/python bench/hub_fanout.py [--subscribers N] [--events M]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from aurigraph_stream.event import Event
from aurigraph_stream.hub import Hub, Subscriber

try:  # trees from before the flush governor have none
    from aurigraph_stream.hub import Governor
except ImportError:  # pragma: no cover - an older tree
    Governor = None  # type: ignore[assignment,misc]
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES

__all__ = ["main"]


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


def _run(hub: Hub, flushes: list[Callable[[], None]], events: list[Event], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        hub.publish(events[i : i + batch])
        while flushes:
            flushes.pop()()
    return time.perf_counter() - start


def scenario(name: str, subscribers: int, events: int, batch: int) -> dict[str, float] | None:
    rng = random.Random(5)
    flushes: list[Callable[[], None]] = []
    # A hub with a flush governor keeps its books on every publish and flush, as the
    # server's does; it never holds here (no call_later), so every tick is written.
    governed: dict[str, Any] = {"governor": Governor(100.0)} if Governor is not None else {}
    hub = Hub(
        Stats.for_streams(NAMES),
        schedule=flushes.append,
        max_buffered=1 << 40,
        compression_level=6,
        **governed,
    )
    subs = [CountingSubscriber() for _ in range(subscribers)]
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
        "--scenario",
        action="append",
        choices=("broadcast", "broadcast-deflate", "own-address"),
        help="repeatable; default: all",
    )
    args = parser.parse_args(argv)
    for name in args.scenario or ("broadcast", "broadcast-deflate", "own-address"):
        events = args.events * (50 if name == "own-address" else 1)
        result = scenario(name, args.subscribers, events, args.batch)
        if result is None:
            print(f"{name:18s} skipped: this hub has no filters")
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
