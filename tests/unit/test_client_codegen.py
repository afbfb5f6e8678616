"""The Python SDK's generated code is the server's: types, close codes, protobuf schema."""

from __future__ import annotations

import typing

import pytest
from google.protobuf import descriptor_pb2
from scripts.client_codegen import OUTPUT, render_all

from aurigraph_stream.contract import CloseCode
from aurigraph_stream.filters import OPTIONS
from aurigraph_stream.proto import aurigraph_v11_pb2
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream_client import CLOSE_CODES, messages, protodesc
from aurigraph_stream_client.client import Client


@pytest.mark.parametrize("name", sorted(render_all()))
def test_the_committed_generated_code_is_fresh(name: str) -> None:
    """Each committed file equals what `make client-types` writes now: a change to the
    schemas, close codes or .proto without regenerating fails here."""
    assert (OUTPUT / name).read_text() == render_all()[name], f"run `make client-types` ({name})"


def test_the_close_codes_are_the_contract_table() -> None:
    """Every CloseCode is in the SDK's table with its reason and both reconnect rules."""
    assert set(CLOSE_CODES) == {int(c) for c in CloseCode}
    for code in CloseCode:
        info = CLOSE_CODES[int(code)]
        assert (info.name, info.reason) == (code.name, code.reason)
        assert (info.reconnect, info.new_token) == (code.reconnect, code.new_token)
    # The rules the SDK is documented to follow.
    assert [c for c in (1001, 4008, 4009) if CLOSE_CODES[c].reconnect] == [1001, 4008, 4009]
    assert not CLOSE_CODES[1008].reconnect
    assert not CLOSE_CODES[4003].reconnect
    assert CLOSE_CODES[4001].new_token


def test_one_typed_dict_per_stream_with_the_schema_fields() -> None:
    """Each stream's message type names exactly its schema's properties; seq is required."""
    assert tuple(REGISTRY) == messages.STREAMS
    for stream, spec in REGISTRY.items():
        cls = messages.MESSAGE_TYPES[stream]
        assert cls.__name__ == spec.message_schema["title"]
        hints = typing.get_type_hints(cls)
        assert list(hints) == list(spec.message_schema["properties"])
        assert "seq" in cls.__required_keys__
        assert {n: o.kind for n, o in OPTIONS[stream].items()} == messages.FILTER_OPTIONS[stream]


def test_subscribe_has_a_typed_overload_per_stream() -> None:
    """Client.subscribe("metrics") is typed Subscription[MetricsMessage], and so on."""
    overloads = typing.get_overloads(Client.subscribe)
    literals = [typing.get_type_hints(f)["stream"] for f in overloads]
    named = {typing.get_args(t)[0] for t in literals if typing.get_origin(t) is typing.Literal}
    assert named == set(REGISTRY)


def test_the_protobuf_schema_is_the_servers() -> None:
    """The SDK's descriptor is aurigraph_v11.proto, only renamed for its own pool."""
    ours = descriptor_pb2.FileDescriptorProto.FromString(protodesc.FILE_DESCRIPTOR)
    server = descriptor_pb2.FileDescriptorProto.FromString(
        aurigraph_v11_pb2.DESCRIPTOR.serialized_pb
    )
    ours.name = server.name
    assert ours == server
