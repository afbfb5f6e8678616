"""The asyncio glue of a connection (ws/connection.py) over a real socket pair, without a
server: it moves bytes between the socket and its session, arms the session's timer,
joins and leaves the hub, and hands what is not an upgrade to the HTTP protocol."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from aurigraph_stream.access.guard import Guard
from aurigraph_stream.broker import HistoryRead
from aurigraph_stream.ws.connection import Connection
from aurigraph_stream.ws.context import WsContext
from aurigraph_stream.ws.session import State
from tests.support.nodes import running_node
from tests.support.rawws import OP_CLOSE, OP_PING, OP_TEXT, RawFrame, frame_bytes, upgrade_head
from tests.support.streamtools import example_event


class ServerState:
    """What uvicorn shares with its protocols: the set of open connections."""

    def __init__(self) -> None:
        self.connections: set[Any] = set()


class RecordingHttp(asyncio.Protocol):
    """Stands in for uvicorn's HTTP protocol: keeps what it is handed."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.data = b""
        self.deadline: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def keep_deadline(self, when: float) -> None:
        self.deadline = when


@asynccontextmanager
async def connected(
    fallback: RecordingHttp | None = None, **settings: Any
) -> AsyncIterator[tuple[WsContext, Connection, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A node, a WsContext, and one Connection on one end of a socket pair; the test gets
    the other end as asyncio streams."""
    async with running_node(**settings) as node:
        ctx = WsContext(node, Guard(node.settings))
        ours, theirs = socket.socketpair()
        state = ServerState()
        conn = Connection(
            ctx, server_state=state, fallback=(lambda: fallback) if fallback else None
        )
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: conn, ours)
        reader, writer = await asyncio.open_connection(sock=theirs)
        try:
            yield ctx, conn, reader, writer
        finally:
            writer.close()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


async def read_frame(reader: asyncio.StreamReader) -> RawFrame:
    """One unmasked server frame (payloads under 64 KiB)."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 5)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    payload = await asyncio.wait_for(reader.readexactly(length), 5)
    return RawFrame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload)


def test_an_upgrade_joins_the_hub_and_a_close_leaves_it() -> None:
    """101, then the node's events as frames; the client's close is echoed, the socket
    closed by the server, and the connection counted in and out."""

    async def scenario() -> None:
        async with connected(simulate=False) as (ctx, conn, reader, writer):
            writer.write(upgrade_head("/ws/consensus"))
            assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
            assert conn in ctx.open
            counters = ctx.node.stats.endpoints["consensus"]
            assert (counters.connections, counters.connects) == (1, 1)
            await ctx.node.publish("consensus", [example_event("consensus")])
            frame = await read_frame(reader)
            assert frame.opcode == OP_TEXT
            assert orjson.loads(frame.payload)["seq"] == 1
            writer.write(frame_bytes(OP_CLOSE, struct.pack("!H", 1000)))
            echo = await read_frame(reader)
            assert (echo.opcode, echo.close_code()) == (OP_CLOSE, 1000)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed TCP
            for _ in range(100):  # bounded: connection_lost runs on the next loop turns
                if conn not in ctx.open:
                    break
                await asyncio.sleep(0.01)
            assert conn not in ctx.open
            assert counters.connections == 0
            assert ctx.node.stats.closes[1000] == 1
            assert ctx.node.hub.subscribers("consensus") == 0

    asyncio.run(scenario())


def test_what_is_not_a_whole_upgrade_head_goes_to_http_with_its_deadline() -> None:
    """A plain GET is handed, bytes and deadline, to the HTTP protocol on the same socket."""

    async def scenario() -> None:
        http = RecordingHttp()
        async with connected(http, simulate=False, handshake_timeout=5.0) as (ctx, conn, _, writer):
            request = b"GET /api/v11/streams HTTP/1.1\r\nHost: x\r\n\r\n"
            writer.write(request)
            for _ in range(200):  # bounded: until the bytes arrive
                if http.data:
                    break
                await asyncio.sleep(0.01)
            assert http.data == request
            assert http.transport is not None
            now = asyncio.get_running_loop().time()
            assert http.deadline is not None
            assert now < http.deadline <= now + 5.0
            assert conn not in ctx.open

    asyncio.run(scenario())


def test_a_socket_that_sends_nothing_gets_408_at_the_handshake_timeout() -> None:
    """The session's head deadline, armed by the glue, fires: 408 and the socket closes."""

    async def scenario() -> None:
        async with connected(RecordingHttp(), simulate=False, handshake_timeout=0.2) as (
            _,
            _,
            reader,
            _,
        ):
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 408 Request Timeout")
            assert await asyncio.wait_for(reader.read(), 5)  # the JSON body, then EOF

    asyncio.run(scenario())


class CountingConnection(Connection):
    """A Connection that says when it has been handed bytes (what the test waits on)."""

    __slots__ = ("arrived", "received")

    def __init__(self, ctx: WsContext) -> None:
        super().__init__(ctx)
        self.received = 0
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.arrived.set()
        super().data_received(data)


def test_pongs_to_a_client_that_reads_nothing_are_bounded_like_frames() -> None:
    """A /ws client that subscribes to nothing, pings and never reads: the pongs fill the
    socket and then the transport's buffer, up to max_buffered_bytes; then it is closed as a
    slow consumer (4008), as the hub closes a subscriber that falls behind. Before, each
    pong went straight to the transport and its buffer grew for as long as the client
    pinged."""
    limit = 16384

    async def scenario() -> None:
        async with running_node(
            simulate=False,
            max_buffered_bytes=limit,
            inbound_message_rate=0,
            inbound_frame_rate=0,
            close_timeout=0.2,
        ) as node:
            ctx = WsContext(node, Guard(node.settings))
            ours, theirs = socket.socketpair()
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            theirs.setblocking(False)
            conn = CountingConnection(ctx)
            loop = asyncio.get_running_loop()
            await loop.connect_accepted_socket(lambda: conn, ours)
            try:
                await loop.sock_sendall(theirs, upgrade_head("/ws"))
                head = b""
                for _ in range(100):  # bounded: the 101 is one short head
                    head += await asyncio.wait_for(loop.sock_recv(theirs, 4096), 5)
                    if b"\r\n\r\n" in head:
                        break
                assert head.startswith(b"HTTP/1.1 101 ")
                pings = frame_bytes(OP_PING, b"p" * 125) * 8  # one read, one turn: 8 pongs
                sent = conn.received
                most = 0
                for _ in range(1000):  # at most ~1 MB of pongs: far past the limit
                    if conn.session.state is not State.OPEN:
                        break
                    conn.arrived.clear()
                    await loop.sock_sendall(theirs, pings)
                    sent += len(pings)
                    for _ in range(100):  # bounded: until the server has read them all
                        if conn.received >= sent:
                            break
                        await asyncio.wait_for(conn.arrived.wait(), 5)
                        conn.arrived.clear()
                    assert conn.transport is not None
                    most = max(most, conn.transport.get_write_buffer_size())
                assert conn.session.close_code == 4008
                assert most <= limit + 8 * 127  # over the limit by at most one read's pongs
                assert ctx.node.stats.endpoints["ws"].slow_disconnects == 1
                for _ in range(500):  # bounded: the close reply never comes, close_timeout
                    if conn not in ctx.open:
                        break
                    await asyncio.sleep(0.01)
                assert conn not in ctx.open
                assert ctx.node.stats.closes[4008] == 1
            finally:
                theirs.close()

    asyncio.run(scenario())


def test_a_starting_point_that_fails_to_load_closes_a_stream_endpoint_with_1011() -> None:
    """/ws/{stream} with a replay on a broker whose history read fails otherwise than by
    being away: close 1011 (internal error), not 1013 (try again later), and out of the
    hub."""

    async def broken(stream: str, since: int | None, newest: int | None = None) -> HistoryRead:
        raise RuntimeError("a reply this server cannot read")

    async def scenario() -> None:
        async with connected(simulate=False) as (ctx, _, reader, writer):
            ctx.node.broker.history_now = lambda stream, since: None  # type: ignore[method-assign]
            ctx.node.broker.history = broken  # type: ignore[method-assign]
            writer.write(upgrade_head("/ws/transactions?replay=5"))
            assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
            close = await read_frame(reader)
            assert (close.opcode, close.close_code()) == (OP_CLOSE, 1011)
            assert ctx.node.hub.subscribers("transactions") == 0

    asyncio.run(scenario())
