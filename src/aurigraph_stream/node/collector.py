"""Short garbage-collector pauses on a server holding many long-lived objects."""

from __future__ import annotations

import asyncio
import gc

__all__ = ["freeze_survivors"]


async def freeze_survivors(freeze_interval: float, full_interval: float) -> None:
    """Keep the cyclic garbage collector's full passes short.

    A full collection scans every tracked object: with the app's modules and
    10,000 connections that was 145-397 ms of stalled loop, several times a
    minute (docs/benchmarks.md). Here, every ``freeze_interval`` seconds, the
    young garbage is collected and what survived is frozen: long-lived objects
    (modules, connections, history) are then never scanned again, and every
    collection only looks at what is new. Frozen objects are still freed by
    reference counting; connections break their own cycles when they close.
    What could still leak, a cycle among frozen objects, is reclaimed by an
    unfrozen full pass every ``full_interval`` seconds (0: never).
    """
    full_every = max(1, round(full_interval / freeze_interval)) if full_interval > 0 else 0
    rounds = 0
    while True:
        if full_every and rounds and rounds % full_every == 0:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        rounds += 1
        await asyncio.sleep(freeze_interval)
