"""The Python SDK without sockets: back-off, seq tracking and gaps, the close-code policy,
decoding what the server's codecs encode, token expiry."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import jwt
import pytest

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.contract import CloseCode
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream_client import (
    AuthenticationError,
    Backoff,
    Gap,
    HandshakeError,
    Position,
    StreamClosed,
    TokenExpired,
)
from aurigraph_stream_client.backoff import parse_retry_after
from aurigraph_stream_client.client import _Inbox, mux_url
from aurigraph_stream_client.policy import after_close, after_refusal
from aurigraph_stream_client.tracking import SeqTracker
from aurigraph_stream_client.wire import command, decoder, token_expiry

# -- back-off -------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_within_the_jitter() -> None:
    """Each delay lies in [(1 - jitter) * base, base], base doubling from initial to maximum."""
    backoff = Backoff(initial=0.5, maximum=8.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    bases = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered: no two alike


def test_backoff_jitter_spreads_clients_and_reset_starts_over() -> None:
    """Clients with different random streams wait different times; reset() goes back to
    the first delay."""
    firsts = {Backoff(initial=1.0, rng=random.Random(seed)).next() for seed in range(20)}
    assert len(firsts) == 20
    assert all(0.5 <= d <= 1.0 for d in firsts)
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=0.0)
    assert [backoff.next() for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_backoff_never_retries_before_retry_after_and_spreads_those_who_wait() -> None:
    """A Retry-After is waited, plus up to 250 ms drawn at random (clients refused together
    do not return together); a back-off longer than it wins."""
    draws = random.Random(7)
    backoff = Backoff(initial=0.5, jitter=0.0, rng=random.Random(7))
    draws.random()  # the draw next() makes, unused with jitter 0
    assert backoff.after(7.0) == 7.0 + 0.25 * draws.random()
    assert 7.0 < backoff.after(7.0) <= 7.25
    assert backoff.after(None) == 2.0
    spread = {Backoff(jitter=0.0, rng=random.Random(s)).after(3.0) for s in range(20)}
    assert len(spread) == 20
    assert all(3.0 <= delay <= 3.25 for delay in spread)
    # The back-off (0.5 s, cut by up to half) is longer than a Retry-After of 0.1 s.
    draws = random.Random(3)
    jittered = Backoff(initial=0.5, maximum=0.5, rng=random.Random(3)).after(0.1)
    assert jittered == 0.5 * (1.0 - 0.5 * draws.random())
    assert 0.25 <= jittered < 0.5


def test_backoff_survives_a_long_outage() -> None:
    """Thousands of attempts stay at the cap (no float overflow)."""
    backoff = Backoff(initial=0.5, maximum=30.0, jitter=0.0)
    assert [backoff.next() for _ in range(5000)][-1] == 30.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 12 ", 12.0), (None, None), ("soon", None), ("-3", None)],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == 10.0


# -- seq tracking and gaps ----------------------------------------------------------


def test_a_fresh_subscription_resumes_from_the_subscribed_position() -> None:
    """Live messages follow position.seq, so resuming from it (even with none delivered)
    loses nothing."""
    tracker = SeqTracker("transactions")
    assert tracker.since() is None
    assert tracker.on_subscribed(Position(40, "e1"), recovered=True, replayed=0) is None
    assert tracker.since() == "40:e1"
    assert [tracker.accept(s) for s in (41, 42, 45)] == [True, True, True]  # filtered: jumps
    assert tracker.since() == "45:e1"


def test_duplicates_are_dropped_and_counted() -> None:
    tracker = SeqTracker("metrics")
    tracker.on_subscribed(Position(0, "e1"), True, 0)
    assert [tracker.accept(s) for s in (1, 2, 2, 1, 3)] == [True, True, False, False, True]
    assert tracker.duplicates == 2


def test_a_recovered_resume_reports_no_gap() -> None:
    tracker = SeqTracker("metrics")
    tracker.on_subscribed(Position(10, "e1"), True, 0)
    tracker.accept(11)
    assert tracker.on_subscribed(Position(30, "e1"), recovered=True, replayed=19) is None
    assert tracker.accept(11) is False  # replayed again: a duplicate
    assert tracker.accept(12) is True


def test_a_new_epoch_is_a_gap_of_unknown_size() -> None:
    """The server restarted: the gap names both epochs, says missed is unknown, and delivery
    goes on after the new position."""
    tracker = SeqTracker("transactions")
    tracker.on_subscribed(Position(0, "old"), True, 0)
    tracker.accept(1)
    tracker.accept(2)
    gap = tracker.on_subscribed(Position(5, "new"), recovered=False, replayed=0)
    assert gap == Gap("transactions", 2, "old", "new", 5, None)
    assert tracker.since() == "5:new"
    assert tracker.accept(5) is False
    assert tracker.accept(6) is True


def test_history_trimmed_in_the_same_epoch_is_a_gap_with_a_count() -> None:
    tracker = SeqTracker("metrics", since=Position(100, "e1"))
    gap = tracker.on_subscribed(Position(150, "e1"), recovered=False, replayed=0)
    assert gap is not None
    assert (gap.missed, gap.last_seq, gap.resume_seq) == (50, 100, 150)


def test_a_since_without_epoch_that_fails_is_a_gap_too() -> None:
    tracker = SeqTracker("metrics", since=7)
    assert tracker.since() == "7"
    gap = tracker.on_subscribed(Position(3, "e9"), recovered=False, replayed=0)
    assert gap is not None
    assert (gap.old_epoch, gap.new_epoch, gap.missed) == (None, "e9", None)


def test_a_replay_is_delivered_and_then_tracked() -> None:
    """replay=N: the replayed seqs (up to the position) are delivered, then live ones."""
    tracker = SeqTracker("transactions")
    tracker.on_subscribed(Position(50, "e1"), recovered=True, replayed=3)
    assert [tracker.accept(s) for s in (48, 49, 50, 51)] == [True, True, True, True]
    assert tracker.since() == "51:e1"


def test_a_replay_cut_before_its_first_message_resumes_from_just_before_it() -> None:
    """Without a filter the replay is the last `replayed` seqs: a drop before the first one
    resumes from just before them, so neither they nor the live ones after are lost."""
    tracker = SeqTracker("transactions")
    tracker.on_subscribed(Position(50, "e1"), recovered=True, replayed=3)
    assert tracker.since() == "47:e1"
    assert tracker.on_subscribed(Position(60, "e1"), recovered=True, replayed=13) is None
    assert [tracker.accept(s) for s in range(48, 61)] == [True] * 13


def test_a_filtered_replay_cut_before_its_first_message_is_a_gap() -> None:
    """With a filter that drops messages the replayed seqs cannot be known: the resume asks
    for everything after the position the replay ended at, and the replay is a gap."""
    tracker = SeqTracker("transactions", filtered=True)
    tracker.on_subscribed(Position(50, "e1"), recovered=True, replayed=3)
    assert tracker.since() == "50:e1"
    gap = tracker.on_subscribed(Position(60, "e1"), recovered=True, replayed=4)
    assert gap == Gap("transactions", None, "e1", "e1", 50, None)
    assert tracker.accept(50) is False
    assert tracker.accept(55) is True
    assert tracker.since() == "55:e1"


def test_a_filtered_replay_that_began_resumes_from_its_last_message() -> None:
    tracker = SeqTracker("transactions", filtered=True)
    tracker.on_subscribed(Position(50, "e1"), recovered=True, replayed=3)
    assert tracker.accept(20) is True
    assert tracker.since() == "20:e1"
    assert tracker.on_subscribed(Position(60, "e1"), recovered=True, replayed=5) is None


def test_a_filtered_replay_cut_and_not_recovered_is_one_gap() -> None:
    tracker = SeqTracker("transactions", filtered=True)
    tracker.on_subscribed(Position(50, "e1"), recovered=True, replayed=3)
    gap = tracker.on_subscribed(Position(4, "e2"), recovered=False, replayed=0)
    assert gap == Gap("transactions", None, "e1", "e2", 4, None)
    assert tracker.since() == "4:e2"


def test_a_snapshot_stands_for_everything_up_to_its_position() -> None:
    tracker = SeqTracker("validators", since=Position(5, "old"))
    gap = tracker.on_subscribed(Position(9, "new"), recovered=False, replayed=0)
    assert gap is not None
    tracker.on_snapshot(Position(9, "new"))
    assert tracker.accept(9) is False
    assert tracker.accept(10) is True


# -- the close-code policy -------------------------------------------------------------


@pytest.mark.parametrize("code", [1001, 1006, 1011, 1012, 1013, 4008, 4009, 4029, 4408])
def test_these_closes_are_retried(code: int) -> None:
    decision = after_close(code, "", can_renew_token=False)
    assert (decision.new_token, decision.error) == (False, None)


@pytest.mark.parametrize("code", [1004, 1005, 1014, 1015, 3000, 3999, 4100, 4500, 4999])
def test_codes_outside_the_table_are_retried(code: int) -> None:
    """A code the server never sends (a proxy's, a gateway's, 1015 from a TLS failure) is
    retried after the back-off, as the TypeScript SDK does; max_retries bounds it."""
    assert after_close(code, "", can_renew_token=True).error is None


@pytest.mark.parametrize("code", [1000, 1002, 1003, 1007, 1008, 1009, 4003, 4400, 4429])
def test_these_closes_stop(code: int) -> None:
    decision = after_close(code, "why", can_renew_token=True)
    assert isinstance(decision.error, StreamClosed)
    assert decision.error.code == code


def test_4001_reconnects_with_a_new_token_or_stops() -> None:
    renew = after_close(4001, "token expired", can_renew_token=True)
    assert (renew.error, renew.new_token) == (None, True)
    stop = after_close(4001, "token expired", can_renew_token=False)
    assert isinstance(stop.error, TokenExpired)


def test_every_server_close_code_has_a_decision_matching_the_table() -> None:
    for code in CloseCode:
        decision = after_close(int(code), code.reason, can_renew_token=True)
        assert (decision.error is None) == code.reconnect, code


@pytest.mark.parametrize("status", [429, 503, 500, 502])
def test_refusals_that_are_retried(status: int) -> None:
    assert after_refusal(status, "x", "y", can_renew_token=False, renewed=False).error is None


def test_a_401_gets_one_new_token_then_stops() -> None:
    assert after_refusal(401, "token_expired", "", True, renewed=False).new_token
    again = after_refusal(401, "token_expired", "", True, renewed=True)
    assert isinstance(again.error, AuthenticationError)
    assert isinstance(after_refusal(403, "forbidden", "", True, False).error, AuthenticationError)
    refused = after_refusal(400, "invalid_query", "no", True, False).error
    assert isinstance(refused, HandshakeError)
    assert not isinstance(refused, AuthenticationError)


# -- decoding what the server encodes ----------------------------------------------------

CONTROL: list[dict[str, Any]] = [
    {"type": "subscribed", "id": "s1", "stream": "consensus", "position": {"seq": 9, "epoch": "ab"}}
    | {"recovered": False, "replayed": 0},
    {"type": "unsubscribed", "id": "s1"},
    {"type": "unsubscribed", "id": "s1", "reason": "forbidden"},
    {"type": "refreshed", "id": "r1", "expiresAt": 1761388800},
    {"type": "refreshed", "expiresAt": None},
    {"type": "error", "id": "s1", "op": "subscribe", "error": "invalid_filter", "detail": "no"},
]


@pytest.mark.parametrize("fmt", ["json", "msgpack", "protobuf"])
def test_control_frames_decode_alike_in_every_format(fmt: str) -> None:
    """What the server's codec encodes, the SDK decodes to the JSON form."""
    decode = decoder(fmt)  # type: ignore[arg-type]
    for frame in CONTROL:
        assert decode(CODECS[fmt].control(frame)) == frame


@pytest.mark.parametrize("fmt", ["json", "msgpack", "protobuf"])
@pytest.mark.parametrize("stream", list(REGISTRY))
def test_wrapped_messages_and_snapshots_decode_alike(fmt: str, stream: str) -> None:
    codec = CODECS[fmt]
    message = dict(REGISTRY[stream].example)
    prefix, suffix = codec.envelope(stream, "s7")
    decoded = decoder(fmt)(prefix + codec.message(stream, message) + suffix)  # type: ignore[arg-type]
    assert decoded == {"type": "message", "id": "s7", "stream": stream, "data": message}
    if stream in ("validators", "network"):
        snapshot = {
            "type": "snapshot",
            "id": "s7",
            "stream": stream,
            "position": {"seq": 3, "epoch": "e"},
            "items": [message, message],
        }
        assert decoder(fmt)(codec.control(snapshot)) == snapshot  # type: ignore[arg-type]


def test_commands_leave_out_what_is_not_asked() -> None:
    assert command("subscribe", id="s1", stream="metrics", replay=None, since="3:e") == (
        '{"op":"subscribe","id":"s1","stream":"metrics","since":"3:e"}'
    )


def test_token_expiry_reads_exp_without_checking() -> None:
    exp = int(time.time()) + 60
    token = jwt.encode({"sub": "a", "exp": exp}, "k" * 32, algorithm="HS256")
    assert token_expiry(token) == exp
    assert token_expiry(jwt.encode({"sub": "a"}, "k" * 32, algorithm="HS256")) is None
    assert token_expiry("not-a-jwt") is None
    assert token_expiry("a.!!!.c") is None


@pytest.mark.parametrize(
    ("url", "mux"),
    [
        ("ws://127.0.0.1:9003", "ws://127.0.0.1:9003/ws"),
        ("ws://127.0.0.1:9003/", "ws://127.0.0.1:9003/ws"),
        ("wss://host/ws", "wss://host/ws"),
        ("https://host/stream/", "wss://host/stream/ws"),
    ],
)
def test_the_server_url_becomes_its_ws_endpoint(url: str, mux: str) -> None:
    assert mux_url(url) == mux


def test_a_non_websocket_url_is_refused() -> None:
    with pytest.raises(ValueError, match="ws://"):
        mux_url("ftp://host")


def test_the_inbox_delivers_everything_before_its_end() -> None:
    """An error ends a subscription only after the items it already holds; a full inbox makes
    the writer wait (the socket is then not read) instead of dropping."""

    async def scenario() -> list[Any]:
        inbox: _Inbox[int] = _Inbox(2)
        await inbox.put(1)
        await inbox.put(2)
        blocked = asyncio.ensure_future(inbox.put(3))
        await asyncio.sleep(0)
        assert not blocked.done()
        got: list[Any] = [await inbox.get()]
        await blocked
        inbox.end(StreamClosed(1008, "policy violation"))
        got += [await inbox.get(), await inbox.get()]
        with pytest.raises(StreamClosed):
            await inbox.get()
        return got

    assert asyncio.run(scenario()) == [1, 2, 3]
