"""A TCP proxy on 127.0.0.1 that a test can break: cut every connection, or stop reading.

It stands between a client and the server, in the test's event loop, so a test
can do to a connection what a network does: drop it (:meth:`TcpProxy.cut`, an
abort on both sides), or stall it (:meth:`TcpProxy.stall_next`: the next
connection stops reading what the server sends right after the server's
handshake response, through a small receive buffer and small segments, so the
server's unsent bytes grow as they do for a client that stopped reading; a
stall that starts on a connection that already carried data would first fill
the megabyte of send buffer the server's kernel grew for it). Each side's
writes pause the other side's reads when its buffer fills, so a slow client
slows the proxy down too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["TcpProxy", "tcp_proxy"]

_UPSTREAM_RCVBUF = 4096  # small, so a paused proxy holds little of what the server sent
# Small segments too: the server's kernel sizes its send buffer from the segment size
# (64 KiB on loopback), and would otherwise absorb megabytes of a stall.
_UPSTREAM_MSS = 1024


class _Side(asyncio.Protocol):
    """One socket of a proxied pair: what it reads goes to the other side."""

    def __init__(self, proxy: TcpProxy, upstream: bool) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.held: list[bytes] = []  # what arrived before the peer was connected
        self.peer_full = False  # the peer's write buffer is over its high-water mark

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.proxy._sides.add(self)

    def data_received(self, data: bytes) -> None:
        if self.upstream and self.proxy.stall and b"\r\n\r\n" in data:
            self.proxy.stall = False  # the handshake response is through: stall from here
            self.proxy.paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        peer = self.peer
        if peer is None or peer.transport is None:
            self.held.append(data)
        else:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.close_pair()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy._sides.discard(self)
        self.close_pair()

    def pause_writing(self) -> None:  # our buffer is full: stop reading the other side
        if self.peer is not None and self.peer.transport is not None:
            self.peer.peer_full = True
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.peer_full = False
            if not (peer.upstream and self.proxy.paused):
                peer.transport.resume_reading()

    def close_pair(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None and not side.transport.is_closing():
                side.transport.close()


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.paused = False
        self.stall = False
        self.connections = 0  # client connections accepted (reconnects included)
        self._sides: set[_Side] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def cut(self) -> None:
        """Abort every open connection, both sides, as a failed network would."""
        for side in list(self._sides):
            if side.transport is not None:
                side.transport.abort()

    def stall_next(self) -> None:
        """Let the next connection's handshake through, then read nothing from the server."""
        self.stall = True

    def resume(self) -> None:
        self.paused = False
        for side in self._sides:
            if side.upstream and side.transport is not None and not side.peer_full:
                side.transport.resume_reading()

    def _accepted(self) -> _Side:
        self.connections += 1
        down = _Side(self, upstream=False)
        task = asyncio.ensure_future(self._connect(down))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return down

    async def _connect(self, down: _Side) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UPSTREAM_RCVBUF)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, _UPSTREAM_MSS)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.upstream_port))
            _, up = await loop.create_connection(lambda: _Side(self, upstream=True), sock=sock)
        except OSError:  # the server is down: the client sees its connection end
            sock.close()
            if down.transport is not None:
                down.transport.abort()
            return
        up.peer, down.peer = down, up
        if down.transport is None or down.transport.is_closing():
            up.close_pair()
            return
        for side in (down, up):
            assert side.peer is not None
            assert side.peer.transport is not None
            for data in side.held:
                side.peer.transport.write(data)
            side.held.clear()


@asynccontextmanager
async def tcp_proxy(upstream_port: int) -> AsyncIterator[TcpProxy]:
    """A proxy from a free port on 127.0.0.1 to ``upstream_port``, for the block."""
    proxy = TcpProxy(upstream_port)
    server = await asyncio.get_running_loop().create_server(proxy._accepted, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        proxy.cut()
        for task in list(proxy._tasks):
            task.cancel()
        await asyncio.gather(*proxy._tasks, return_exceptions=True)
        await server.wait_closed()
