"""uvicorn's httptools protocol with the limits it lacks: a request deadline and a head size.

Every socket starts with a WebSocket :class:`~aurigraph_stream.ws.connection.Connection`,
which keeps a complete upgrade head and hands anything else to this protocol
(see :func:`~aurigraph_stream.wire.handshake.read_upgrade_head`). uvicorn arms
no timer until a first response has been sent: a client that trickles half a
request head (slowloris) would hold a descriptor and a parser for ever, and one
that sends endless header lines would grow uvicorn's header list without
bound. This subclass:

- starts a timer when the connection is made (and again when a later
  request on a kept-alive connection begins); a request whose head and body
  have not fully arrived when it fires gets 408 and is closed (a slow body
  is just closed, as a response may have started);
- answers a head larger than ``max_head_size`` with 431, counting only that
  head's bytes: a read that completes pipelined requests and then starts the
  next head is not one large head;
- answers unparsable requests with the JSON error body every other refusal has,
  and refuses upgrades over HTTP/1.0 (uvicorn hides the version from the
  WebSocket layer by rewriting the request line);
- hands the WebSocket connection what followed an upgrade head in the same
  read (frames a client sent right behind its head), which uvicorn dropped;
- answers, in order, every request that arrived whole before an unparsable one
  on the same connection (HTTP/1.1 pipelining), and only then sends the 400 and
  closes. uvicorn wrote the 400 and closed at once, so a valid ingest request
  pipelined before a malformed one was published while its answer, with the
  seqs, was lost.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aurigraph_stream.config import Settings
from aurigraph_stream.errors import HandshakeRejected
from aurigraph_stream.wire.handshake import http_error, request_timeout

__all__ = ["GuardedHttpProtocol", "http_protocol"]


class _HeadTooLarge(Exception):
    pass


def _refusal(status: int, error: str, detail: str) -> bytes:
    return http_error(HandshakeRejected(status, error, detail))


_DEFAULTS = Settings()


class GuardedHttpProtocol(HttpToolsProtocol):
    """Set ``request_timeout`` and ``max_head_size`` on a subclass (:func:`http_protocol`);
    unset, they are the settings' defaults."""

    request_timeout = _DEFAULTS.handshake_timeout
    max_head_size = _DEFAULTS.max_head_size

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._head_too_large = False
        self._completed = False  # a request was completed within the chunk being parsed
        self._chunk = b""  # the chunk being parsed, while it is
        # A refusal held back until the requests before it are answered.
        self._refusal: bytes | None = None

    # -- the request deadline -------------------------------------------------
    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def keep_deadline(self, when: float) -> None:
        """Carry over a deadline (loop time) that started before this protocol took the socket."""
        self._disarm()
        self._deadline = self.loop.call_at(when, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._in_head:
            transport.write(request_timeout(self.request_timeout))
        transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        self._completed = True
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # From here the WebSocket connection owns the socket and its own timers.
        self._disarm()
        if self.scope.get("http_version", "1.1") != "1.1":
            # uvicorn rewrites the request line as HTTP/1.1 before the WebSocket
            # layer reads it, so the version (RFC 6455 4.1: at least 1.1) is checked here.
            self.transport.write(_refusal(400, "bad_request", "a WebSocket upgrade needs HTTP/1.1"))
            self.transport.close()
            return
        # uvicorn hands the WebSocket protocol the head, not what followed it in the same
        # read (frames a client sent right behind its head). It calls this while handling
        # the parser's HttpParserUpgrade, which says where the upgrade's own data begins.
        upgrade = sys.exc_info()[1]
        rest = b""
        if isinstance(upgrade, httptools.HttpParserUpgrade) and upgrade.args:
            rest = self._chunk[upgrade.args[0] :]
        super().handle_websocket_upgrade()
        # This protocol is done. Its parser refers back to it; drop it so the pair
        # is freed by reference counting even if the node froze it out of the
        # cyclic collector mid-handshake (node/collector.py).
        del self.parser
        if rest:
            cast(asyncio.Protocol, self.transport.get_protocol()).data_received(rest)

    # -- the head size --------------------------------------------------------
    def _parsed_head_size(self) -> int:
        """The size of the head parsed so far: its target and header lines."""
        return len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)

    def on_headers_complete(self) -> None:
        if self._parsed_head_size() > self.max_head_size:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools turns it into a parser error: send_400_response
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:  # the connection ends after the owed answers
            return
        self._completed = False
        self._chunk = data
        try:
            super().data_received(data)
        finally:
            self._chunk = b""  # not kept past its parse: a kept-alive connection may idle
        # Only bytes of a head still incomplete after this chunk are counted, so a
        # body that arrives with its head never counts against the head's limit.
        if self._in_head and self.transport is not None and not self.transport.is_closing():
            if self._completed:
                # The head began after requests this chunk completed (a pipelining
                # publisher's): what of it was parsed counts, not the whole chunk (a
                # header still unfinished is counted from the next chunk on).
                self._head_bytes = self._parsed_head_size()
            else:  # the whole chunk belongs to the head
                self._head_bytes += len(data)
            if self._head_bytes > self.max_head_size:
                self._head_too_large = True
                self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        if self._refusal is not None:
            return
        if self._head_too_large:
            body = _refusal(
                431, "head_too_large", f"the request head is over {self.max_head_size} bytes"
            )
        else:
            body = _refusal(400, "bad_request", "the request is not valid HTTP/1.1")
        if self._answers_owed():
            self._refusal = body
            self.transport.pause_reading()
            return
        self.transport.write(body)
        self.transport.close()

    def _answers_owed(self) -> bool:
        """Requests that arrived whole before the bad input and are not answered yet.

        A request whose body was still arriving is not one of them: the bad
        input is in its body, so it gets the refusal (and its handler a disconnect).
        """
        cycle = self.cycle
        if self.pipeline:
            return True
        return cycle is not None and not cycle.response_complete and not cycle.more_body

    def on_response_complete(self) -> None:
        super().on_response_complete()
        refusal = self._refusal
        if refusal is None or self.transport.is_closing() or self._answers_owed():
            return
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self.transport.write(refusal)
        self.transport.close()


def http_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, carrying ``settings``' limits."""
    return type(
        "ConfiguredHttpProtocol",
        (GuardedHttpProtocol,),
        {"request_timeout": settings.handshake_timeout, "max_head_size": settings.max_head_size},
    )
