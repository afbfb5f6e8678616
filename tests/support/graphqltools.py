"""GraphQL test clients: graphql-transport-ws over the `websockets` library (one message at a
time, exactly as the test says), over a raw socket (for clients that must misbehave), the
npm graphql-ws client in Node, and GraphQL over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from aurigraph_stream.contract import GRAPHQL_PATH, GRAPHQL_PROTOCOL
from tests.support.rawws import OP_TEXT, RawWebSocket
from tests.support.server import ROOT, ServerProcess
from tests.support.subproc import LineReader, stop

__all__ = [
    "GraphqlWs",
    "NodeClient",
    "graphql_http",
    "node_client",
    "open_raw",
    "position",
    "raw_send",
]

NODE_CLIENT = ROOT / "tests" / "support" / "graphql_ws_client.mjs"


class GraphqlWs:
    """One /graphql connection speaking graphql-transport-ws, message by message."""

    def __init__(
        self,
        server: ServerProcess,
        *,
        init: dict[str, Any] | bool | None = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._stack = ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(
                server.ws(GRAPHQL_PATH),
                subprotocols=[Subprotocol(GRAPHQL_PROTOCOL)],
                additional_headers=dict(headers or {}),
                open_timeout=10,
                close_timeout=5,
                max_size=None,
            )
        )
        assert self.ws.subprotocol == GRAPHQL_PROTOCOL
        if init is not False:
            payload = init if isinstance(init, dict) else None
            self.send({"type": "connection_init", **({"payload": payload} if payload else {})})
            assert self.recv() == {"type": "connection_ack"}

    def __enter__(self) -> GraphqlWs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def send(self, message: Any) -> None:
        self.ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(self.ws.recv(timeout=timeout))
        return message

    def subscribe(self, op_id: str, query: str, variables: Mapping[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = dict(variables)
        self.send({"id": op_id, "type": "subscribe", "payload": payload})

    def next(self, op_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The payload of the next message, which must be a ``next`` of ``op_id``."""
        message = self.recv(timeout)
        assert (message.get("id"), message["type"]) == (op_id, "next"), message
        payload: dict[str, Any] = message["payload"]
        return payload

    def error(self, op_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The errors of the next message, which must be an ``error`` of ``op_id``."""
        message = self.recv(timeout)
        assert (message.get("id"), message["type"]) == (op_id, "error"), message
        errors: list[dict[str, Any]] = message["payload"]
        return errors

    def closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Read until the server closes; its (code, reason)."""
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            try:
                self.ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except ConnectionClosed:
                break
        return self.ws.close_code, self.ws.close_reason or ""


def open_raw(server: ServerProcess, *, protocols: str = GRAPHQL_PROTOCOL) -> RawWebSocket:
    """A raw socket past the /graphql handshake: it answers nothing on its own."""
    raw = RawWebSocket(server.port)
    response = raw.request(GRAPHQL_PATH, extra=(("Sec-WebSocket-Protocol", protocols),))
    assert response.status == 101, response
    return raw


def raw_send(raw: RawWebSocket, message: Any) -> None:
    raw.send_frame(OP_TEXT, orjson.dumps(message))


def graphql_http(
    server: ServerProcess,
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    url = f"{server.http}{GRAPHQL_PATH}"
    if method == "GET":
        params: dict[str, str] = {"query": query}
        if variables is not None:
            params["variables"] = json.dumps(variables)
        return httpx.get(url, params=params, headers=dict(headers or {}), timeout=30)
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = dict(variables)
    return httpx.post(url, json=body, headers=dict(headers or {}), timeout=30)


def position(server: ServerProcess, stream: str) -> str:
    """The stream's position as ``SEQ:EPOCH``, from GraphQL: subscribe ``since`` it."""
    response = graphql_http(server, f"{{ position(stream: {stream}) {{ seq epoch }} }}")
    assert response.status_code == 200, response.text
    where = response.json()["data"]["position"]
    return f"{where['seq']}:{where['epoch']}"


class NodeClient:
    """npm's graphql-ws client run by Node (tests/support/graphql_ws_client.mjs)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.reader = LineReader(proc.stdout)

    def line(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON line it prints."""
        lines = self.reader.wait_for(lambda _: True, timeout)
        data: dict[str, Any] = orjson.loads(lines[-1])
        return data


@contextmanager
def node_client(
    server: ServerProcess,
    query: str,
    variables: Mapping[str, Any] | None,
    count: int,
    connection_params: Mapping[str, Any] | None = None,
) -> Iterator[NodeClient]:
    """Run the Node graphql-ws client until it has ``count`` results (or the block ends)."""
    operation: dict[str, Any] = {"query": query}
    if variables is not None:
        operation["variables"] = dict(variables)
    args = ["node", str(NODE_CLIENT), server.ws(GRAPHQL_PATH), json.dumps(operation), str(count)]
    if connection_params is not None:
        args.append(json.dumps(connection_params))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    client = NodeClient(proc)
    try:
        yield client
    finally:
        stop(proc, signal.SIGTERM)
        client.reader.close()
