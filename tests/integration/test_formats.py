"""MessagePack and Protocol Buffers end to end, decoded by real decoders (msgpack, protobuf)
into the same content as the JSON a JSON client receives."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
import pytest
from google.protobuf.message import Message
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from aurigraph_stream.proto import aurigraph_v11_pb2 as pb
from aurigraph_stream.streams import REGISTRY
from tests.support.server import ServerProcess
from tests.support.streamtools import address, example_event, open_server, publish, tx

STREAMS = tuple(REGISTRY)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A quiet server shared by this module's tests."""
    with open_server(tmp_path_factory.mktemp("formats")) as s:
        yield s


def _fields(message: Message) -> dict[str, Any]:
    """The fields a protobuf message carries (presence, not defaults)."""
    return {
        f.name: getattr(message, f.name)
        for f in message.DESCRIPTOR.fields
        if message.HasField(f.name)
    }


def _event(stream: str) -> dict[str, Any]:
    event = example_event(stream)
    if stream == "metrics":
        event["tps"] = 8510000.25  # a fraction, so a double is compared as a double
    return event


def test_each_format_carries_the_json_content(server: ServerProcess) -> None:
    """On every stream, a msgpack client (chosen by subprotocol) and a protobuf client
    (chosen by ?format=) decode each message to exactly what the JSON client gets, in
    binary frames; the JSON client gets text frames."""
    with contextlib.ExitStack() as stack:
        clients: dict[tuple[str, str], ClientConnection] = {}
        for stream in STREAMS:
            clients[stream, "json"] = stack.enter_context(
                connect(server.ws(f"/ws/{stream}"), open_timeout=5)
            )
            clients[stream, "msgpack"] = stack.enter_context(
                connect(
                    server.ws(f"/ws/{stream}"),
                    subprotocols=[pb_subprotocol("msgpack")],  # type: ignore[list-item]
                    open_timeout=5,
                )
            )
            clients[stream, "protobuf"] = stack.enter_context(
                connect(server.ws(f"/ws/{stream}?format=protobuf"), open_timeout=5)
            )
        assert clients[STREAMS[0], "msgpack"].subprotocol == "aurigraph.v11.msgpack"
        assert clients[STREAMS[0], "protobuf"].subprotocol is None
        for stream in STREAMS:
            sent = publish(server, stream, [_event(stream)])[0]
            text = clients[stream, "json"].recv(timeout=5)
            assert isinstance(text, str)
            as_json = orjson.loads(text)
            assert as_json == sent
            packed = clients[stream, "msgpack"].recv(timeout=5)
            assert isinstance(packed, bytes)
            assert msgpack.unpackb(packed) == as_json
            binary = clients[stream, "protobuf"].recv(timeout=5)
            assert isinstance(binary, bytes)
            envelope = pb.ServerMessage.FromString(binary)
            assert envelope.WhichOneof("body") == stream
            assert (envelope.id, envelope.stream) == ("", "")
            assert _fields(getattr(envelope, stream)) == as_json
            # Binary formats are smaller than the JSON.
            assert len(binary) < len(packed) < len(text.encode())


def pb_subprotocol(name: str) -> str:
    return f"aurigraph.v11.{name}"


def test_projections_and_the_multiplexed_envelope_in_binary_formats(
    server: ServerProcess,
) -> None:
    """On /ws, protobuf replies and messages carry id and stream; detail=summary decodes to
    only txHash, status and seq; msgpack wraps the same map as JSON does."""
    sub = {
        "op": "subscribe",
        "id": "s1",
        "stream": "transactions",
        "filter": {"detail": "summary"},
    }
    with (
        connect(server.ws("/ws?format=protobuf"), open_timeout=5) as proto,
        connect(
            server.ws("/ws"),
            subprotocols=[pb_subprotocol("msgpack")],  # type: ignore[list-item]
            open_timeout=5,
        ) as packed,
        connect(server.ws("/ws"), open_timeout=5) as plain,
    ):
        for ws in (proto, packed, plain):
            ws.send(orjson.dumps(sub))
        ack = pb.ServerMessage.FromString(proto.recv(timeout=5))  # type: ignore[arg-type]
        assert ack.WhichOneof("body") == "subscribed"
        assert (ack.id, ack.stream, ack.subscribed.recovered) == ("s1", "transactions", True)
        assert msgpack.unpackb(packed.recv(timeout=5))["type"] == "subscribed"
        assert orjson.loads(plain.recv(timeout=5))["type"] == "subscribed"
        sent = publish(server, "transactions", [tx(1, address(1), address(2), "42")])[0]
        as_json = orjson.loads(plain.recv(timeout=5))
        summary = {"txHash": sent["txHash"], "status": "PENDING", "seq": sent["seq"]}
        assert as_json == {"type": "message", "id": "s1", "stream": "transactions", "data": summary}
        assert msgpack.unpackb(packed.recv(timeout=5)) == as_json
        message = pb.ServerMessage.FromString(proto.recv(timeout=5))  # type: ignore[arg-type]
        assert (message.id, message.stream) == ("s1", "transactions")
        assert _fields(message.transactions) == summary
        proto.send(orjson.dumps({"op": "subscribe", "id": "s2", "stream": "nope"}))
        error = pb.ServerMessage.FromString(proto.recv(timeout=5))  # type: ignore[arg-type]
        assert (error.id, error.error.op, error.error.error) == (
            "s2",
            "subscribe",
            "unknown_stream",
        )


@pytest.mark.parametrize(
    ("path", "protocols"),
    [
        ("/ws/metrics?format=xml", None),
        ("/ws/metrics", ["aurigraph.v11.cbor"]),
        ("/ws/metrics?format=json", ["aurigraph.v11.msgpack"]),
    ],
)
def test_an_unknown_or_contradictory_format_is_refused(
    server: ServerProcess, path: str, protocols: list[str] | None
) -> None:
    """An unknown format, or a subprotocol and ?format= that disagree, get HTTP 400."""
    with (
        pytest.raises(InvalidStatus) as refused,
        connect(server.ws(path), subprotocols=protocols, open_timeout=5),  # type: ignore[arg-type]
    ):
        pass
    assert refused.value.response.status_code == 400
    assert orjson.loads(refused.value.response.body or b"{}")["error"] == "unsupported_format"
