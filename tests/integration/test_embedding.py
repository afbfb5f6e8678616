"""The embedding API: a program runs the server in its own event loop and publishes with
Node.publish; subscribers receive it over real WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets

from aurigraph_stream.config import load_settings
from aurigraph_stream.errors import UnknownStream, ValidationError
from aurigraph_stream.server import build_server
from tests.support.server import free_port
from tests.support.streamtools import example_event

EVENT: dict[str, Any] = example_event("consensus")


def test_node_publish_reaches_websocket_subscribers() -> None:
    """node.publish in-process is broadcast with its seqs; bad events raise, publish nothing."""
    port = free_port()
    settings = load_settings(
        environ={}, overrides={"port": port, "simulate": False, "log_level": "WARNING"}
    )
    server = build_server(settings)
    node = server.node

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        for _ in range(1000):  # readiness: uvicorn sets `started` once it listens
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/consensus") as ws:
                seqs = await node.publish("consensus", [EVENT, {**EVENT, "round": 4}])
                assert seqs == [1, 2]
                received = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in seqs]
                assert received == [{**EVENT, "seq": 1}, {**EVENT, "round": 4, "seq": 2}]

                with pytest.raises(ValidationError) as info:
                    await node.publish("consensus", [EVENT, {**EVENT, "epoch": "x"}])
                assert info.value.field == "$.epoch"
                assert info.value.index == 1
                with pytest.raises(UnknownStream):
                    await node.publish("blocks", [EVENT])

                assert await node.publish("consensus", [EVENT]) == [3]
                assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["seq"] == 3
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 15)

    asyncio.run(main())
