"""Unit tests of history.py: the bounded per-stream replay buffer."""

from __future__ import annotations

from aurigraph_stream.broker.history import History
from aurigraph_stream.event import Event


def _filled(size: int, upto: int) -> History:
    history = History(size)
    for seq in range(1, upto + 1):
        history.append(Event("metrics", seq, {"seq": seq}, 0.0))
    return history


def _seqs(events: list[Event] | None) -> list[int] | None:
    return None if events is None else [e.seq for e in events]


def test_last_returns_the_newest_oldest_first() -> None:
    """last(n) gives the newest n events in order; n <= 0 gives none."""
    history = _filled(10, 6)
    assert len(history) == 6
    assert _seqs(history.last(2)) == [5, 6]
    assert _seqs(history.last(6)) == [1, 2, 3, 4, 5, 6]
    assert _seqs(history.last(100)) == [1, 2, 3, 4, 5, 6]
    assert history.last(0) == []
    assert history.last(-1) == []


def test_history_keeps_only_size_events() -> None:
    """Past its size the oldest events are dropped."""
    history = _filled(3, 7)
    assert len(history) == 3
    assert _seqs(history.last(10)) == [5, 6, 7]


def test_since_returns_what_follows_a_seq() -> None:
    """since(seq) gives the events after seq; [] when caught up."""
    history = _filled(10, 5)
    assert _seqs(history.since(0)) == [1, 2, 3, 4, 5]
    assert _seqs(history.since(3)) == [4, 5]
    assert history.since(5) == []
    assert history.since(9) == []


def test_since_reports_a_gap_as_none() -> None:
    """When events after seq were dropped, since() says so with None."""
    history = _filled(3, 7)  # keeps 5, 6, 7
    assert _seqs(history.since(4)) == [5, 6, 7]
    assert history.since(3) is None
    assert history.since(0) is None


def test_since_on_an_empty_history() -> None:
    """An empty history has nothing after any seq >= 0, and cannot serve a negative one."""
    history = History(5)
    assert history.since(0) == []
    assert history.since(-1) is None
