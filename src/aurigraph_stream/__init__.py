"""Aurigraph Stream: real-time WebSocket streams of the Aurigraph V11 platform."""

from __future__ import annotations

__version__ = "0.1.0"

from aurigraph_stream.config import Settings, load_settings
from aurigraph_stream.contract import CloseCode
from aurigraph_stream.errors import StreamError

__all__ = ["CloseCode", "Settings", "StreamError", "__version__", "load_settings"]
