"""The simulated network: deterministic for a seed, and its five streams agree."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from aurigraph_stream.sources.simulator import NetworkSimulator
from aurigraph_stream.streams import REGISTRY

START = 1_760_000_000.0  # a fixed wall clock: the simulator is pure
STEP = 0.05


def _run(seconds: float, *, seed: int = 11, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    """Advance a simulator in 50 ms steps (as the server does) and collect every event."""
    sim = NetworkSimulator(seed=seed, **kwargs)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(int(seconds / STEP) + 1):
        out += sim.advance(START + i * STEP)
    return out


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def events() -> list[tuple[str, dict[str, Any]]]:
    """Ten simulated minutes with fast blocks, so every rule is exercised many times."""
    return _run(600, validators=9, peers=8, tx_rate=20.0, block_time=0.6)


def test_same_seed_same_events() -> None:
    """Two simulators with one seed emit identical streams; another seed differs."""
    assert _run(30, seed=5) == _run(30, seed=5)
    assert _run(30, seed=5) != _run(30, seed=6)


def test_every_event_matches_its_stream_schema(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Simulated messages satisfy the same ingest schema as published events."""
    checked: Counter[str] = Counter()
    for stream, message in events:
        if checked[stream] < 1000:  # plenty per stream, and fast
            REGISTRY[stream].validate(message)
            checked[stream] += 1
    assert {stream for stream, _ in events} == set(REGISTRY) - {"metrics"}


def test_leader_is_always_an_active_validator(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Every consensus message names a leader the validators stream reported ACTIVE so far."""
    status: dict[str, str] = {}
    checked = 0
    for stream, message in events:
        if stream == "validators":
            status[message["validator"]] = message["status"]
        elif stream == "consensus":
            assert status.get(message["leader"]) == "ACTIVE", message
            checked += 1
    assert checked > 1000
    assert Counter(status.values())["ACTIVE"] < len(status) or len(status) == 9


def test_active_validators_matches_the_validators_stream(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """activeValidators equals the number of validators last reported ACTIVE."""
    status: dict[str, str] = {}
    counts = set()
    for stream, message in events:
        if stream == "validators":
            status[message["validator"]] = message["status"]
        elif stream == "consensus":
            active = sum(s == "ACTIVE" for s in status.values())
            assert message["activeValidators"] == active, message
            counts.add(active)
    assert len(status) == 9
    assert len(counts) > 1  # validators did change state in ten minutes
    states = {m["status"] for s, m in events if s == "validators"}
    assert states == {"ACTIVE", "INACTIVE", "JAILED"}


def test_consensus_cycles_through_its_states(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Rounds go PROPOSING -> VOTING -> COMMITTED; a VIEW_CHANGE raises the term."""
    consensus = [m for s, m in events if s == "consensus"]
    states = Counter(m["state"] for m in consensus)
    assert set(states) == {"PROPOSING", "VOTING", "COMMITTED", "VIEW_CHANGE"}
    for before, after in itertools.pairwise(consensus):
        if after["state"] == "VOTING":
            assert before["state"] == "PROPOSING"
        if after["state"] == "COMMITTED":
            assert before["state"] == "VOTING"
        if after["state"] == "VIEW_CHANGE":
            assert after["term"] == before["term"] + 1
        assert after["term"] >= before["term"]
        assert (after["epoch"], after["round"]) >= (before["epoch"], before["round"])


@pytest.mark.parametrize(("rate", "seconds"), [(5.0, 400), (20.0, 200), (200.0, 40)])
def test_transaction_rate_matches_the_configured_rate(rate: float, seconds: int) -> None:
    """New (PENDING) transactions per second is the configured rate within 4 sigma."""
    events = _run(seconds, tx_rate=rate, block_time=1.0)
    new = sum(1 for s, m in events if s == "transactions" and m["status"] == "PENDING")
    expected = rate * seconds
    assert abs(new - expected) <= 4 * expected**0.5, (new, expected)


def test_every_pending_transaction_settles_once(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Each PENDING settles once, CONFIRMED or FAILED, within 1.5 blocks, with the same fields."""
    block_time = 0.6
    end = START + 600
    pending: dict[str, dict[str, Any]] = {}
    settled: dict[str, str] = {}
    for stream, message in events:
        if stream != "transactions":
            continue
        tx_hash = message["txHash"]
        if message["status"] == "PENDING":
            assert tx_hash not in pending
            pending[tx_hash] = message
            continue
        assert tx_hash in pending, "settled without being pending"
        assert tx_hash not in settled, "settled twice"
        settled[tx_hash] = message["status"]
        first = pending[tx_hash]
        for name in ("from", "to", "value", "gasUsed"):
            assert message[name] == first[name]
        delay = _epoch(message["timestamp"]) - _epoch(first["timestamp"])
        assert 0 < delay <= 1.5 * block_time + 1e-3
    old_enough = [h for h, m in pending.items() if _epoch(m["timestamp"]) < end - 1.5 * block_time]
    assert old_enough
    assert all(h in settled for h in old_enough)
    outcomes = Counter(settled.values())
    assert set(outcomes) == {"CONFIRMED", "FAILED"}
    assert outcomes["CONFIRMED"] > outcomes["FAILED"]


def test_peers_alternate_connected_and_disconnected(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Per peerId, `connected` starts true and alternates; a peer never leaves twice."""
    history: dict[str, list[bool]] = {}
    for stream, message in events:
        if stream == "network":
            history.setdefault(message["peerId"], []).append(message["connected"])
    assert len(history) > 8
    for peer, states in history.items():
        assert states[0] is True, peer
        assert all(a != b for a, b in itertools.pairwise(states)), (peer, states)
    assert any(states[-1] is False for states in history.values())


def test_last_block_proposed_follows_commits(events: list[tuple[str, dict[str, Any]]]) -> None:
    """On a COMMITTED round the leader's validator message reports a higher lastBlockProposed."""
    last_block: dict[str, int] = {}
    for stream, message in events:
        if stream == "validators":
            previous = last_block.get(message["validator"], 0)
            assert message["lastBlockProposed"] >= previous
            last_block[message["validator"]] = message["lastBlockProposed"]
    assert max(last_block.values()) > 100
