"""The node: broker, hub, snapshots and background tasks of one server process."""

from aurigraph_stream.node.identity import WorkerIdentity
from aurigraph_stream.node.node import Node

__all__ = ["Node", "WorkerIdentity"]
