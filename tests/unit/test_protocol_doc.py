"""docs/protocol.md documents every close code and every command error the server sends."""

from __future__ import annotations

import re

from aurigraph_stream.contract import CloseCode
from tests.support.server import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text()
SOURCES = ROOT / "src" / "aurigraph_stream"


def test_every_close_code_is_in_the_protocol_document() -> None:
    """Each CloseCode appears in the close-code table with its number and name."""
    for code in CloseCode:
        assert f"| {int(code)} | {code.name} |" in DOC, code


def test_every_subscription_error_slug_is_in_the_protocol_document() -> None:
    """Each SubscriptionError slug raised in the sources has a row in the document."""
    slugs: set[str] = set()
    for path in SOURCES.rglob("*.py"):
        text = path.read_text()
        slugs |= set(re.findall(r'SubscriptionError\(\s*"([a-z_]+)"', text))
        slugs |= set(re.findall(r'_bad\(\s*"([a-z_]+)"', text))
    assert {"invalid_filter", "unknown_stream", "duplicate_id"} <= slugs
    for slug in slugs:
        assert f"`{slug}`" in DOC, slug
