"""Which process of which node this is, when a node runs several worker processes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorkerIdentity"]


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """A worker of a node started with ``--workers N`` (``cli/workers.py``).

    ``node`` names the parent process (host, port and a random part), shared by
    its workers, so they can find one another's figures in the broker;
    ``index`` is this worker's number, 0 to ``count`` - 1.
    """

    node: str
    index: int
    count: int
