"""Aurigraph Stream client: the five streams over one WebSocket, without silent loss.

::

    from aurigraph_stream_client import Client, Gap

    async with Client("ws://127.0.0.1:9003") as client:
        async for msg in client.subscribe("transactions", address="0x..."):
            if isinstance(msg, Gap):
                print("lost messages:", msg)
            else:
                print(msg["txHash"])

:class:`SyncClient` is the same for scripts without asyncio. The command line
``aurigraph-stream listen STREAM`` shows a stream in the terminal.
"""

from __future__ import annotations

from .backoff import Backoff
from .client import DEFAULT_URL, Client, Subscription, TokenSource
from .closecodes import CLOSE_CODES, CloseCodeInfo
from .errors import (
    AuthenticationError,
    CommandError,
    GaveUp,
    HandshakeError,
    Revoked,
    StreamClientError,
    StreamClosed,
    TokenExpired,
)
from .events import (
    Connected,
    ConnectionEvent,
    Disconnected,
    Gap,
    Position,
    Snapshot,
    TokenRefreshed,
)
from .messages import (
    STREAMS,
    ConsensusMessage,
    MetricsMessage,
    NetworkMessage,
    StreamMessage,
    StreamName,
    TransactionMessage,
    ValidatorMessage,
)
from .sync import SyncClient, SyncSubscription

__version__ = "0.1.0"

__all__ = [
    "CLOSE_CODES",
    "DEFAULT_URL",
    "STREAMS",
    "AuthenticationError",
    "Backoff",
    "Client",
    "CloseCodeInfo",
    "CommandError",
    "Connected",
    "ConnectionEvent",
    "ConsensusMessage",
    "Disconnected",
    "Gap",
    "GaveUp",
    "HandshakeError",
    "MetricsMessage",
    "NetworkMessage",
    "Position",
    "Revoked",
    "Snapshot",
    "StreamClientError",
    "StreamClosed",
    "StreamMessage",
    "StreamName",
    "Subscription",
    "SyncClient",
    "SyncSubscription",
    "TokenExpired",
    "TokenRefreshed",
    "TokenSource",
    "TransactionMessage",
    "ValidatorMessage",
    "__version__",
]
