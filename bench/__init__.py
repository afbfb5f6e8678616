"""The benchmark suite: ``python -m bench`` (``make bench``); see bench/README.md."""

from __future__ import annotations

__all__: list[str] = []
