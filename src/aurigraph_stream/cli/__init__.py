"""The ``aurigraph-stream`` command: ``serve``, ``token``."""

from aurigraph_stream.cli.main import main

__all__ = ["main"]
