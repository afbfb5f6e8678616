"""The private parts of uvicorn the server builds on are still there, with the shapes it expects.

http/protocol.py subclasses uvicorn's httptools protocol and overrides hooks that are
not public API; server.py subclasses uvicorn.Server; ws/connection.py is handed
sockets by uvicorn's protocol factories. A uvicorn release that moves or renames
one of them must fail here, by name, not somewhere in a connection at run time.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import httptools
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from aurigraph_stream.http.protocol import GuardedHttpProtocol
from aurigraph_stream.server import StreamServer
from aurigraph_stream.ws.connection import Accept, Connection

# The hooks GuardedHttpProtocol overrides, with the parameters uvicorn calls them with.
HTTP_HOOKS = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "handle_websocket_upgrade": ["self"],
    "send_400_response": ["self", "msg"],
    "on_response_complete": ["self"],
}
# Attributes of HttpToolsProtocol the subclass reads.
HTTP_ATTRIBUTES = (
    "loop",
    "transport",
    "scope",
    "url",
    "headers",
    "parser",
    "pipeline",
    "cycle",
    "timeout_keep_alive_task",
)
# Attributes of the request-response cycle the subclass reads (pipelined answers).
CYCLE_ATTRIBUTES = ("response_complete", "more_body")
SERVER_HOOKS = {"shutdown": ["self", "sockets"], "capture_signals": ["self"]}


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_uvicorn_is_the_version_range_pyproject_allows() -> None:
    """The range in pyproject.toml is the range these tests ran on."""
    major, minor = (int(part) for part in version("uvicorn").split(".")[:2])
    assert (major, minor) == (0, 54), "update the uvicorn bound in pyproject.toml, then these hooks"


@pytest.mark.parametrize(("hook", "parameters"), HTTP_HOOKS.items())
def test_each_overridden_http_hook_exists_with_its_parameters(
    hook: str, parameters: list[str]
) -> None:
    original = getattr(HttpToolsProtocol, hook, None)
    assert original is not None, f"uvicorn's HttpToolsProtocol has no {hook}() any more"
    assert hook in vars(GuardedHttpProtocol), f"GuardedHttpProtocol no longer overrides {hook}"
    assert _parameters(original) == parameters, (
        f"HttpToolsProtocol.{hook} now takes {_parameters(original)}, not {parameters}"
    )


@pytest.mark.parametrize("attribute", HTTP_ATTRIBUTES)
def test_each_attribute_the_subclass_reads_is_still_set(attribute: str) -> None:
    source = inspect.getsource(HttpToolsProtocol)
    assert f"self.{attribute} =" in source or f"self.{attribute}:" in source, (
        f"uvicorn's HttpToolsProtocol no longer sets self.{attribute}"
    )


@pytest.mark.parametrize("attribute", CYCLE_ATTRIBUTES)
def test_each_cycle_attribute_the_subclass_reads_is_still_set(attribute: str) -> None:
    source = inspect.getsource(RequestResponseCycle)
    assert f"self.{attribute} =" in source, (
        f"uvicorn's RequestResponseCycle no longer sets self.{attribute}"
    )


def test_the_websocket_hand_over_still_passes_the_raw_head_to_our_connection() -> None:
    """handle_websocket_upgrade builds the ws protocol with these keywords, then feeds it the
    head: what Connection(ctx, config=..., server_state=..., app_state=...) relies on."""
    source = inspect.getsource(HttpToolsProtocol.handle_websocket_upgrade)
    for expected in (
        "self.ws_protocol_class(",
        "config=self.config",
        "server_state=self.server_state",
        "app_state=self.app_state",
        "protocol.connection_made(self.transport)",
        "protocol.data_received(",
    ):
        assert expected in source, f"handle_websocket_upgrade no longer does {expected!r}"
    assert _parameters(Connection)[:4] == ["ctx", "config", "server_state", "app_state"]


class _Heads:
    """The callbacks httptools needs to parse a request head."""

    def on_headers_complete(self) -> None:
        pass


def test_what_follows_an_upgrade_head_is_found_where_the_hand_over_looks() -> None:
    """GuardedHttpProtocol passes the bytes after an upgrade head to the connection: it finds
    them by the offset in httptools' HttpParserUpgrade, which uvicorn is still handling
    when it calls handle_websocket_upgrade."""
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    before = b"GET /q/health/live HTTP/1.1\r\nHost: x\r\n\r\n"  # a pipelined request first
    parser = httptools.HttpRequestParser(_Heads())
    with pytest.raises(httptools.HttpParserUpgrade) as upgrade:
        parser.feed_data(before + head + b"frames")
    assert upgrade.value.args == (len(before + head),)
    source = inspect.getsource(HttpToolsProtocol.data_received)
    handler = source.partition("except httptools.HttpParserUpgrade:")[2]
    assert "self.handle_websocket_upgrade()" in handler.partition("except")[0], (
        "uvicorn no longer calls handle_websocket_upgrade while handling HttpParserUpgrade"
    )


def test_the_protocol_factory_is_still_called_with_these_keywords() -> None:
    """uvicorn calls Config.http (our Accept instance) as a class, with these keywords."""
    source = inspect.getsource(uvicorn.Server.startup)
    for keyword in ("config=config", "server_state=self.server_state", "_loop=_loop"):
        assert keyword in source, f"uvicorn.Server.startup no longer passes {keyword}"
    assert "app_state=" in source, "uvicorn.Server.startup no longer passes app_state"
    assert _parameters(Accept.__call__) == ["self", "config", "server_state", "app_state", "_loop"]
    load = inspect.getsource(uvicorn.Config.load)
    assert "self.http_protocol_class = self.http" in load, (
        "uvicorn.Config.load no longer takes a protocol factory object as http="
    )


@pytest.mark.parametrize(("hook", "parameters"), SERVER_HOOKS.items())
def test_each_overridden_server_hook_exists(hook: str, parameters: list[str]) -> None:
    original = getattr(uvicorn.Server, hook, None)
    assert original is not None, f"uvicorn.Server has no {hook}() any more"
    assert hook in vars(StreamServer), f"StreamServer no longer overrides {hook}"
    assert _parameters(original) == parameters, f"uvicorn.Server.{hook} changed its parameters"


def test_shutdown_still_asks_each_connection_to_shut_down_and_signals_are_kept() -> None:
    """Connection.shutdown() is how a SIGTERM becomes close 1001; capture_signals keeps the
    signals it caught in _captured_signals, which StreamServer clears."""
    assert "connection.shutdown()" in inspect.getsource(uvicorn.Server.shutdown)
    assert "self._captured_signals" in inspect.getsource(uvicorn.Server.capture_signals)
    assert "self.force_exit" in inspect.getsource(uvicorn.Server)
