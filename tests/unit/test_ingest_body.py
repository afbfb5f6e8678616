"""Ingest bodies (strict JSON, no duplicate keys) and the Idempotency-Key store: no sockets."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.errors import ValidationError
from aurigraph_stream.http.idempotency import IdempotencyKeys, check_key
from aurigraph_stream.streams.body import BodyError, parse_events

KEYS = st.text(alphabet=st.sampled_from('ab:"\\\u00e9'), min_size=1, max_size=3)
VALUES = st.recursive(
    st.none()
    | st.integers(-(2**60), 2**60)
    | st.text(alphabet=st.sampled_from('x:"\\{}[],'), max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


def _text(pairs: list[tuple[str, Any]]) -> bytes:
    """An object as JSON text that may repeat keys (a dict cannot)."""
    return b"{" + b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in pairs) + b"}"


def _repeats(body: bytes) -> bool:
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        found = found or len({k for k, _ in pairs}) < len(pairs)
        return dict(pairs)

    json.loads(body, object_pairs_hook=hook)
    return found


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=5), st.booleans())
def test_duplicate_keys_are_found_exactly(pairs: list[tuple[str, Any]], batch: bool) -> None:
    """Refused exactly when some object, at any depth, repeats a key; colons and escapes in
    strings never fool the count."""
    body = _text(pairs)
    if batch:
        body = b"[" + orjson.dumps({"first": 1}) + b"," + body + b"]"
    if _repeats(body):
        with pytest.raises(ValidationError) as refused:
            parse_events(body)
        assert refused.value.index == (1 if batch else None)
    else:
        parse_events(body)


def test_the_common_body_takes_the_fast_path() -> None:
    """No duplicate and no escaped colon: the count agrees, the slow parser is not needed."""
    body = orjson.dumps({"timestamp": "2025-10-25T09:35:02Z", "ip": "2001:db8::1"})
    assert parse_events(body) == [orjson.loads(body)]


def test_a_body_nested_deeper_than_the_count_goes_still_finds_a_repeated_key() -> None:
    """Data too deep for orjson to write back takes the exact path, whichever way it ends."""
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    assert parse_events(deep) == [orjson.loads(deep)]
    repeated = b'{"a":' * 300 + b'{"b":1,"b":2}' + b"}" * 300
    with pytest.raises(ValidationError):
        parse_events(repeated)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_body_is_read_as_it_was_received(kind: type) -> None:
    """The ingest route's bytearray is read in place; every kind finds a repeated key."""
    assert parse_events(kind(b'[{"a": 1}, {"b": "x:y"}]')) == [{"a": 1}, {"b": "x:y"}]
    with pytest.raises(ValidationError) as refused:
        parse_events(kind(b'[{"a": 1}, {"b": 1, "b": 2}]'))
    assert refused.value.index == 1


@pytest.mark.parametrize(("body", "error"), [(b"[]", "invalid_body"), (b"{", "invalid_json")])
def test_not_an_event_is_a_body_error(body: bytes, error: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse_events(body)
    assert caught.value.error == error


def test_keys_are_kept_for_the_history_window_and_scoped() -> None:
    """A key answers with its seqs until the stream's history bound (count, then age) drops
    it; subjects and streams do not share keys; a released key is free again."""
    now = [0.0]
    keys = IdempotencyKeys(
        {"metrics": HistoryPolicy(2, 10.0), "network": HistoryPolicy(5)}, clock=lambda: now[0]
    )
    first = keys.claim("metrics", "a", "k1", b"x")
    assert (first.seqs, first.conflict) == (None, None)
    keys.finish(first, [7, 8, 9])
    assert list(keys.claim("metrics", "a", "k1", b"x").seqs or ()) == [7, 8, 9]
    assert keys.claim("metrics", "a", "k1", b"y").conflict == "idempotency_key_reused"
    assert keys.claim("metrics", "b", "k1", b"y").conflict is None  # another subject
    network = keys.claim("network", "a", "k1", b"y")
    assert network.conflict is None  # another stream
    assert keys.claim("network", "a", "k1", b"y").conflict == "idempotency_key_in_use"
    assert keys.claim("network", "a", "k1", b"z").conflict == "idempotency_key_reused"
    keys.release(network)
    assert keys.claim("network", "a", "k1", b"y").conflict is None
    keys.finish(keys.claim("metrics", "a", "k2", b"x"), [10])
    keys.finish(keys.claim("metrics", "a", "k3", b"x"), [11])  # a third on a stream keeping two
    assert keys.claim("metrics", "a", "k1", b"x").seqs is None  # k1 was dropped: new again
    now[0] = 11.0
    assert len(keys) == 5  # k2, k3 and the three claims still open, until the next claim looks
    keys.claim("metrics", "a", "k4", b"x")
    assert keys.claim("metrics", "a", "k2", b"x").seqs is None  # older than max_age


def test_a_key_being_published_is_kept_and_settled_only_by_its_own_claim() -> None:
    """The key of a request still being published is never dropped, however many requests
    finish meanwhile: its retry gets 409, never a claim of its own that would publish the
    events twice. And a claim settles only itself: the late finish or release of a request
    whose key was released and claimed again by its retry leaves the retry's claim alone."""
    keys = IdempotencyKeys({"metrics": HistoryPolicy(1)})
    slow = keys.claim("metrics", "a", "k", b"x")
    for n in range(3):  # more requests finish than the stream keeps keys for
        keys.finish(keys.claim("metrics", "a", f"other{n}", b"x"), [10 + n])
    assert keys.claim("metrics", "a", "k", b"x").conflict == "idempotency_key_in_use"
    keys.finish(slow, [7])
    assert list(keys.claim("metrics", "a", "k", b"x").seqs or ()) == [7]

    first = keys.claim("metrics", "b", "k", b"x")
    keys.release(first)
    retry = keys.claim("metrics", "b", "k", b"x")
    keys.release(first)  # too late: not the retry's to release
    keys.finish(first, [1])  # nor to finish
    assert keys.claim("metrics", "b", "k", b"x").conflict == "idempotency_key_in_use"
    keys.finish(retry, [2])
    assert list(keys.claim("metrics", "b", "k", b"x").seqs or ()) == [2]


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("a", True),
        ("~!" * 100, True),
        ("", False),
        ("a b", False),
        ("é", False),
        ("k" * 256, False),
    ],
)
def test_key_syntax(key: str, ok: bool) -> None:
    assert (check_key(key) is None) is ok
