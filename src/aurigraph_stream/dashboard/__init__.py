"""The live dashboard at ``/``: the streams for people, from this process alone."""

from aurigraph_stream.dashboard.page import install_dashboard

__all__ = ["install_dashboard"]
