"""Hub views: subscribers grouped by filter and view, one rendering per group per event,
an envelope built by concatenation, and an opening suffix on the first message only."""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping
from typing import Any

import orjson
import pytest

from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from aurigraph_stream.filters import everything, parse_filter
from aurigraph_stream.hub import Hub, build_frame
from aurigraph_stream.hub import fanout as fanout_module
from aurigraph_stream.hub.fanout import ENVELOPE_COST, FRAME_COST, RENDER_COST
from aurigraph_stream.stats import Stats
from aurigraph_stream.streams import NAMES
from aurigraph_stream.wire.deflate import compress
from tests.unit.test_hub import DEFLATE, PLAIN, Loop, Recorder, _hub, _text


class CountingView:
    """Renders an event as ``{"seq": N`` (left open, as GraphQL's are), counting its calls."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.calls = 0

    def render(self, event: Event) -> bytes | None:
        self.calls += 1
        return b'{"seq":' + str(event.seq).encode()

    def opening(self, start: Mapping[str, Any]) -> bytes:
        return b',"start":' + orjson.dumps(start) + b"}]"


def _tx(seq: int, sender: str) -> Event:
    return Event("transactions", seq, {"from": sender, "to": "0x" + "ff" * 20, "seq": seq}, 0.0)


def test_one_rendering_per_group_and_each_subscriber_gets_its_envelope() -> None:
    """Three subscribers of one view and filter: one render per event; each frame is its
    prefix, the shared payload and its suffix."""
    hub, loop, stats = _hub()
    view = CountingView("doc")
    subs = [Recorder() for _ in range(3)]
    for i, sub in enumerate(subs):
        hub.subscribe(
            sub,
            "metrics",
            PLAIN,
            everything("metrics"),
            view=view,
            envelope=(b'{"id":"' + str(i).encode() + b'","payload":', b"}}"),
        )
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0), Event("metrics", 2, {"seq": 2}, 0.0)])
    loop.run()
    assert view.calls == 2
    for i, sub in enumerate(subs):
        assert [orjson.loads(_text(f)) for f in sub.writes[0]] == [
            {"id": str(i), "payload": {"seq": 1}},
            {"id": str(i), "payload": {"seq": 2}},
        ]
    assert stats.endpoints["metrics"].messages_sent == 6


def test_equal_envelopes_share_the_frame_object() -> None:
    """Subscribers with the same view, filter and envelope get the very same bytes."""
    hub, loop, _ = _hub()
    view = CountingView("doc")
    subs = [Recorder() for _ in range(4)]
    for sub in subs:
        hub.subscribe(sub, "metrics", PLAIN, view=view, envelope=(b'{"p":', b"}}"))
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0)])
    loop.run()
    frames = [sub.writes[0][0] for sub in subs]
    assert all(frame is frames[0] for frame in frames)


def test_different_views_are_different_groups() -> None:
    """Two views of one stream and filter: each renders for its own subscribers."""
    hub, loop, _ = _hub()
    first, second = CountingView("a"), CountingView("b")
    a, b = Recorder(), Recorder()
    hub.subscribe(a, "metrics", PLAIN, view=first, envelope=(b"[", b"}]"))
    hub.subscribe(b, "metrics", PLAIN, view=second, envelope=(b"[", b"}]"))
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0)])
    loop.run()
    assert (first.calls, second.calls) == (1, 1)
    assert orjson.loads(_text(a.writes[0][0])) == [{"seq": 1}]


def test_the_opening_suffix_goes_on_the_first_message_only() -> None:
    """A subscription with an opening gets it on its first delivered message, then the usual
    suffix; one that joins later gets its own opening while the first keeps the usual."""
    hub, loop, _ = _hub()
    view = CountingView("doc")
    first, later = Recorder(), Recorder()
    envelope = (b"[", b"}]")
    hub.subscribe(first, "metrics", PLAIN, view=view, envelope=envelope, opening=b',"o":1}]')
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0)])
    hub.subscribe(later, "metrics", PLAIN, view=view, envelope=envelope, opening=b',"o":2}]')
    hub.publish([Event("metrics", 2, {"seq": 2}, 0.0), Event("metrics", 3, {"seq": 3}, 0.0)])
    loop.run()
    assert [orjson.loads(_text(f)) for f in first.writes[0]] == [
        [{"seq": 1, "o": 1}],
        [{"seq": 2}],
        [{"seq": 3}],
    ]
    assert [orjson.loads(_text(f)) for f in later.writes[0]] == [[{"seq": 2, "o": 2}], [{"seq": 3}]]
    assert view.calls == 3  # the opening is a suffix: the rendering stays shared


def test_filtered_views_render_per_match_not_per_subscriber() -> None:
    """A thousand subscribers, each on its own address with the same document: an event
    is rendered once, for the one group it matches."""
    hub, loop, _ = _hub()
    view = CountingView("doc")
    subs = []
    for n in range(1000):
        sub = Recorder()
        flt = parse_filter("transactions", {"address": "0x" + f"{n:040x}"})
        hub.subscribe(sub, "transactions", PLAIN, flt, view=view, envelope=(b"[", b"}]"))
        subs.append(sub)
    hub.publish([_tx(seq, "0x" + f"{seq * 7:040x}") for seq in range(1, 101)])
    loop.run()
    assert view.calls == 100
    assert sum(len(sub.writes) for sub in subs) == 100
    assert orjson.loads(_text(subs[7].writes[0][0])) == [{"seq": 1}]


def test_leaving_empties_the_group_and_the_index() -> None:
    """Removing every subscription of a view's group leaves nothing behind."""
    hub, loop, _ = _hub()
    view = CountingView("doc")
    sub = Recorder()
    subscription = hub.subscribe(
        sub,
        "transactions",
        PLAIN,
        parse_filter("transactions", {"address": "0x" + "11" * 20}),
        view=view,
        envelope=(b"[", b"}]"),
        opening=b"!}]",
    )
    hub.remove(subscription)
    hub.publish([_tx(1, "0x" + "11" * 20)])
    loop.run()
    assert (view.calls, sub.writes, hub.subscribers("transactions")) == (0, [], 0)
    members = hub._streams["transactions"]
    assert (members.groups, members.index, members.valuesets) == ({}, {}, {})
    assert (members.scanned, members.joining, members.loading) == ([], {}, {})


def _inflated(frame: bytes) -> bytes:
    """The message of a server frame, inflated when it is compressed (RSV1)."""
    body = _text(frame)
    if frame[0] & 0x40:
        return zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")
    return body


def test_envelopes_of_their_own_cost_an_envelope_each_when_several_groups_match() -> None:
    """Two documents, 100 subscribers each with an operation id of its own, one event
    matching both: each envelope is charged ENVELOPE_COST (a join), not FRAME_COST, so
    three events fit one tick of a budget that three times the frame cost would not."""
    loop = Loop()
    per_event = 2 * RENDER_COST + 200 * ENVELOPE_COST + 200  # renders, envelopes, deliveries
    hub = Hub(
        Stats.for_streams(NAMES),
        schedule=loop.schedule,
        max_buffered=1 << 20,
        tick_budget=3 * per_event + 1,
    )
    assert 3 * per_event < 200 * FRAME_COST  # what the frame cost would have charged
    subs = []
    for name in ("a", "b"):
        view = CountingView(name)
        for n in range(100):
            sub = Recorder()
            prefix = b'{"id":"' + f"{name}{n}".encode() + b'","payload":'
            hub.subscribe(sub, "metrics", PLAIN, view=view, envelope=(prefix, b"}}"))
            subs.append(sub)
    hub.publish([Event("metrics", seq, {"seq": seq}, 0.0) for seq in (1, 2, 3)])
    assert hub.backlog == 0  # all three in this tick
    loop.run()
    assert all(len(sub.writes) == 1 and len(sub.writes[0]) == 3 for sub in subs)
    assert orjson.loads(_text(subs[150].writes[0][2])) == {"id": "b50", "payload": {"seq": 3}}


@pytest.mark.parametrize("groups", [1, 2])
def test_compressed_envelopes_share_one_compression_per_group(
    groups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """permessage-deflate and an operation id per subscriber: the rendered payload is
    compressed once per group, not once per subscriber, and each frame inflates to its
    own whole message (the envelope joined around it as stored blocks); the first message
    of a subscription with an opening carries it."""
    calls: list[int] = []

    def counting(payload: bytes, level: int, bits: int = 15) -> bytes:
        calls.append(bits)
        return compress(payload, level, bits)

    monkeypatch.setattr(fanout_module, "compress", counting)
    hub, loop, _ = _hub()
    subs = []
    for g in range(groups):
        view = CountingView(f"doc{g}")
        for n in range(50):
            sub = Recorder()
            prefix = b'{"id":"' + f"{g}-{n}".encode() + b'","payload":['
            hub.subscribe(
                sub, "metrics", DEFLATE, view=view, envelope=(prefix, b"}]}"), opening=b',"o":1}]}'
            )
            subs.append(sub)
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0), Event("metrics", 2, {"seq": 2}, 0.0)])
    loop.run()
    assert calls == [15] * (2 * groups)  # once per event and group
    for i, sub in enumerate(subs):
        first, second = (orjson.loads(_inflated(f)) for f in sub.writes[0])
        op_id = f"{i // 50}-{i % 50}"
        assert first == {"id": op_id, "payload": [{"seq": 1, "o": 1}]}
        assert second == {"id": op_id, "payload": [{"seq": 2}]}
        assert all(f[0] & 0x40 for f in sub.writes[0])  # RSV1: compressed


@pytest.mark.parametrize("variant", [PLAIN, DEFLATE])
def test_removing_with_drop_queued_takes_only_that_subscriptions_frames(
    variant: tuple[str, int],
) -> None:
    """remove(drop_queued=True): the frames queued for the subscription and not yet written
    (its envelope's prefix, compressed or not) are dropped; the subscriber's other frames,
    queued before and after, are written in order."""
    hub, loop, _ = _hub()
    view = CountingView("doc")
    sink = Recorder()
    one, two = (b'{"id":"' + n + b'","type":"next","payload":' for n in (b"1", b"2"))
    gone = hub.subscribe(sink, "metrics", variant, view=view, envelope=(one, b"}}"))
    hub.subscribe(sink, "metrics", variant, view=view, envelope=(two, b"}}"))
    reply = b'{"type":"next","id":"1","payload":{}}'  # another operation's, that had id 1
    hub.enqueue(sink, [build_frame(1, reply, 6, variant[1])])
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0), Event("metrics", 2, {"seq": 2}, 0.0)])
    hub.remove(gone, drop_queued=True)
    hub.publish([Event("metrics", 3, {"seq": 3}, 0.0)])
    loop.run()
    (written,) = sink.writes
    assert [_inflated(frame) for frame in written] == [
        reply,
        two + b'{"seq":1}}',
        two + b'{"seq":2}}',
        two + b'{"seq":3}}',
    ]


def test_a_reset_gives_view_subscriptions_a_new_opening() -> None:
    """reset(): a subscription with a view gets ``view.opening`` of the new position with
    recovered false on its next message (it has no control frame), then its usual suffix."""
    hub, loop, _ = _hub()
    view = CountingView("doc")
    sink = Recorder()
    hub.subscribe(sink, "metrics", PLAIN, view=view, envelope=(b"[", b"}]"))
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0)])
    hub.reset("metrics", Position(0, "e2"))
    hub.publish([Event("metrics", 1, {"seq": 1}, 0.0), Event("metrics", 2, {"seq": 2}, 0.0)])
    loop.run()
    assert [orjson.loads(_text(f)) for w in sink.writes for f in w] == [
        [{"seq": 1}],
        [
            {
                "seq": 1,
                "start": {"position": {"seq": 0, "epoch": "e2"}, "recovered": False, "replayed": 0},
            }
        ],
        [{"seq": 2}],
    ]
