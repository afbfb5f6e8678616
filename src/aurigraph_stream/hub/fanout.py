"""Fan-out: each event is encoded, framed and compressed once per variant, and
the same bytes are queued for every subscriber of that variant.

The hub does no I/O. Frames queued during one event-loop tick are collected
per subscriber and written together by :meth:`Hub.flush`, which the server
schedules with ``loop.call_soon``: a burst of events costs each subscriber one
write, not one per event. Publishing never waits on a subscriber; one whose
unsent bytes pass ``max_buffered`` is told to go away (:meth:`Subscriber.overflow`)
instead of slowing anyone else.

Who gets an event is :mod:`.members`' business; how it becomes bytes, :mod:`.frames`'.

Paced work. What one subscriber asked for that is too much to queue at once (a
replay of thousands of messages) is a :class:`Job`: the hub runs one bounded
step of one job per turn of the event loop, round robin, and a job whose
subscriber's transport is full waits until it drains (:meth:`Hub.resume`). So
such work never holds the loop for long, and what it queues is bounded by the
subscriber's buffer, not by what it asked for.

Encode once. Per event, a payload is encoded once per (projection, format)
and a frame built and compressed once per (projection, format, deflate,
envelope), whatever the number of groups that match: subscribers that share a
filter and format share the very same ``bytes`` object. A group with a view
(:class:`~.members.View`) is rendered once per view key in place of the
encoding, and framed the same way. An envelope of its own per subscriber (a
``/ws`` subscription id, a GraphQL operation id) is joined around the shared
payload, which is compressed once for all of them: the envelope goes around
it as deflate stored blocks (:func:`~aurigraph_stream.wire.deflate.envelope`),
so a thousand operation ids cost a thousand joins, never a thousand compressions.

A bounded tick. One huge batch (thousands of events to thousands of
subscribers) must not hold the event loop for seconds, nor pile a whole batch
into every subscriber's transport at once. :meth:`Hub.publish` fans events out
until the tick's work passes ``tick_budget`` (one unit per delivery,
:data:`FRAME_COST` per frame built), then keeps the rest, in order, for the
next ticks: each tick ends with the flush (still one write per subscriber), and
the next chunk is fanned out in a callback of its own, so other sockets are
served in between and a subscriber that stopped reading is found slow (4008)
after one chunk, not after the whole batch. The budget is counted per event
and per variant, never per delivery.

A governed flush. With a :class:`~.governor.Governor`, once events are
published faster than flushes can be written one each (with half the loop to
spare), a flush is held for a bounded time (``schedule_later``), so that the
events arriving meanwhile share one write per subscriber; see :mod:`.governor`
for when and how long. While a flush is held, events of the
latest-wins streams (``conflate``: metrics and consensus) are not fanned out
one by one: they wait for the flush, and each group of subscribers gets only
the newest of them that passes its filter (the others are counted as
conflated). Their subscribers see the freshest state, and the seqs they skip
are not losses (docs/protocol.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from aurigraph_stream.filters import Filter, everything
from aurigraph_stream.hub.frames import (
    begins_with,
    control_frame,
    deflated_frame,
    encode_payload,
    message_frame,
)
from aurigraph_stream.hub.governor import Governor
from aurigraph_stream.hub.members import (
    DEFAULT_LOADING_LIMIT,
    Group,
    Members,
    Subscriber,
    Subscription,
    Variant,
    View,
    count_frames,
)
from aurigraph_stream.stats import Stats
from aurigraph_stream.wire.deflate import compress
from aurigraph_stream.wire.frames import encode_frame_parts

__all__ = ["DEFAULT_TICK_BUDGET", "ENVELOPE_COST", "FRAME_COST", "RENDER_COST", "Hub", "Job"]

#: Work units a tick may spend fanning out before the rest waits for the next tick.
DEFAULT_TICK_BUDGET = 100_000
#: Units per frame built (encoding, framing, compressing): about what 100 deliveries cost.
FRAME_COST = 100
#: Units per envelope joined around a shared payload (a copy and a header, no encoding).
ENVELOPE_COST = 5
#: Units per event rendered by a view (one GraphQL execution: about 70 us).
RENDER_COST = 700


class Job(Protocol):
    """Work for one subscriber, done a bounded step at a time (:meth:`Hub.pace`)."""

    @property
    def sink(self) -> Subscriber: ...

    def step(self) -> bool:
        """Do one bounded step; True when there is more to do."""
        ...


class Conflation:
    """Latest-wins states held for a flush, matched once, newest first (:meth:`Hub._conflation`).

    ``matched``: per event, the groups it matches; ``newest``: per group, the index
    of the newest event that reaches it, the only one it gets. ``stale``: streams
    where a joining subscription was admitted during the fan-out (it may have made
    a group none of them was matched against): their events are matched again.
    """

    __slots__ = ("matched", "newest", "stale")

    def __init__(self, matched: list[list[Group] | None], newest: dict[Group, int]) -> None:
        self.matched = matched
        self.newest = newest
        self.stale: set[str] = set()


class Hub:
    def __init__(
        self,
        stats: Stats,
        *,
        schedule: Callable[[Callable[[], None]], object],
        max_buffered: int,
        compression_level: int = 6,
        on_flush: Callable[[list[Event], float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        tick_budget: int = DEFAULT_TICK_BUDGET,
        schedule_later: Callable[[float, Callable[[], None]], object] | None = None,
        governor: Governor | None = None,
        conflate: frozenset[str] = frozenset(),
        loading_limit: int = DEFAULT_LOADING_LIMIT,
    ) -> None:
        """
        Args:
            schedule: runs a callback at the end of this event-loop tick (``call_soon``).
            schedule_later: runs a callback after a delay in seconds (``call_later``):
                how a governed flush is held.
            governor: decides when a flush is held; ``None`` flushes every tick.
            conflate: the latest-wins streams, conflated while a flush is held.
            loading_limit: the live events a subscription loading its history keeps.
        """
        self._stats = stats
        self._schedule = schedule
        self._later = schedule_later
        self.governor = governor
        self._conflate = conflate
        self.loading_limit = loading_limit
        self._max_buffered = max_buffered
        self._level = compression_level
        self._on_flush = on_flush
        self._clock = clock
        self._streams: dict[str, Members] = {}
        self._dirty: list[Subscriber] = []
        self._flushed_events: list[Event] = []
        self._flush_scheduled = False
        self._jobs: deque[Job] = deque()
        self._waiting: dict[Subscriber, list[Job]] = {}  # jobs of subscribers paused writing
        self._jobs_scheduled = False
        self._budget = tick_budget
        # Events accepted but not yet fanned out (a batch over one tick's budget), in order.
        self._backlog: list[Event] = []
        self._resume_scheduled = False
        # A governed flush is being held; the latest-wins events waiting for it, in order.
        self._holding = False
        self._deferred: list[Event] = []

    # -- membership ---------------------------------------------------------------
    def subscribe(
        self,
        sink: Subscriber,
        stream: str,
        variant: Variant = ("json", 0),
        flt: Filter | None = None,
        *,
        sub_id: str | None = None,
        after: int | None = None,
        live: bool = True,
        view: View | None = None,
        envelope: tuple[bytes, bytes] | None = None,
        opening: bytes | None = None,
        loading: bool = False,
        control: bool = False,
    ) -> Subscription:
        """Add a subscription of ``sink`` to ``stream``.

        Args:
            variant: (format, deflate window bits or 0).
            flt: what to deliver; ``None`` is every message in full.
            sub_id: on the multiplexed endpoint, the id each message is wrapped with.
            after: the seq the subscriber already has (a replay ended there):
                events up to it are skipped, so that a history read and live
                delivery never overlap, whatever order a broker delivers in.
            live: False: the subscription is held, but gets no event until
                :meth:`go_live` (its starting messages are still being sent).
            view: render events with it instead of encoding the message.
            envelope: the (prefix, suffix) around each payload, when not the format's.
            opening: the suffix of the first message delivered live, in place of the usual.
            loading: the history is still being read: live events that pass the
                filter are kept for the subscription (:meth:`drain_buffer`) until
                :meth:`take_buffer` and :meth:`join_after`.
            control: a /ws/{stream} subscription that gets control frames
                (on /ws, every subscription does): :meth:`reset` tells it.
        """
        sub = Subscription(
            sink,
            stream,
            flt or everything(stream),
            variant[0],
            variant[1],
            sub_id,
            view=view,
            envelope=envelope,
            opening=opening,
        )
        sink.subscriptions.append(sub)
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = Members(self.loading_limit)
        st.count += 1
        if control:
            st.control.add(sub)
        if not live:
            return sub
        if loading:
            st.loading[sub] = []
            st.joining[sub] = None
        elif after is not None:
            sub.after = after
            st.joining[sub] = None
        else:
            st.join(sub)
        return sub

    def take_buffer(self, sub: Subscription) -> list[Event] | None:
        """End a subscription's loading: the live events kept meanwhile, in order
        (``None`` if a reset came in between, or more than the loading limit passed
        its filter). It then waits for :meth:`join_after`.
        """
        st = self._streams[sub.stream]
        return st.loading.pop(sub)

    def drain_buffer(self, sub: Subscription) -> list[Event] | None:
        """The live events kept for a loading subscription so far (``None`` as for
        :meth:`take_buffer`); it goes on loading, keeping the next ones."""
        loading = self._streams[sub.stream].loading
        kept = loading[sub]
        if kept is not None:
            loading[sub] = []
        return kept

    def join_after(self, sub: Subscription, after: int) -> None:
        """Let a subscription whose buffer was taken receive the live events after ``after``."""
        sub.after = after

    def reset(self, stream: str, position: Position) -> None:
        """The broker lost the stream's history (or events) and continues after ``position``.

        Subscriptions that get control frames are told with a ``subscribed``
        frame saying ``recovered: false`` and the new position; those with a
        view (GraphQL) get it in their next message, as their first one says
        where they started (:meth:`View.opening`); subscriptions waiting for a
        seq of the old history join now; those still loading learn that their
        buffer no longer joins up.
        """
        # Events of the old history still waiting for a tick (or, conflated, for a held
        # flush) go out first: the announcement must follow them, not overtake them.
        self._fan_out_waiting()
        st = self._streams.get(stream)
        if st is None:
            return
        for sub in list(st.joining):
            if sub.after is not None:
                del st.joining[sub]
                sub.after = None
                st.join(sub)
            elif sub in st.loading:
                st.loading[sub] = None
        where = {"seq": position.seq, "epoch": position.epoch}
        start = {"position": where, "recovered": False, "replayed": 0}
        for sub in st.subscriptions():
            group = sub.group
            if sub.view is not None and group is not None:
                group.discard(sub)  # out of its variant before the variant's suffix changes
                sub.opening = sub.view.opening(start)
                group.add(sub)
                continue
            if sub.id is None and sub not in st.control:
                continue
            self.announce(sub, position)

    def announce(self, sub: Subscription, position: Position) -> None:
        """Queue a ``subscribed`` frame telling ``sub`` it continues after ``position``
        with ``recovered: false`` (what came before it was not all delivered)."""
        frame: dict[str, Any] = {"type": "subscribed"}
        if sub.id is not None:
            frame["id"] = sub.id
        where = {"seq": position.seq, "epoch": position.epoch}
        frame |= {"stream": sub.stream, "position": where, "recovered": False, "replayed": 0}
        self.enqueue(sub.sink, [control_frame(sub.codec, sub.bits, self._level, frame)])

    def go_live(self, sub: Subscription, after: int) -> None:
        """Start delivering to a held subscription: the events after seq ``after``."""
        if sub not in sub.sink.subscriptions:
            return
        sub.after = after
        self._streams[sub.stream].joining[sub] = None

    def remove(self, sub: Subscription, *, drop_queued: bool = False) -> None:
        """End one subscription; frames already queued for its subscriber stay queued.

        Args:
            drop_queued: drop the frames queued for this subscription that the
                flush has not written yet: those whose message begins with its
                envelope's prefix (GraphQL: ``complete`` has no reply to put after
                them, and the client may reuse the id at once).
        """
        sink = sub.sink
        if sub not in sink.subscriptions:
            return
        sink.subscriptions.remove(sub)
        sub.held = None
        st = self._streams[sub.stream]
        st.count -= 1
        st.leave(sub)
        if drop_queued and sub.prefix and sink.pending is not None:
            pending = sink.pending
            prefix = sub.prefix
            kept = [
                frame
                for frame in ([pending] if isinstance(pending, bytes) else pending)
                if not begins_with(frame, prefix)
            ]
            # Emptied, it stays on the dirty list: the flush passes over it.
            sink.pending = None if not kept else kept[0] if len(kept) == 1 else kept

    def unsubscribe(self, sink: Subscriber) -> None:
        """Remove every subscription of ``sink``; frames it has pending are dropped. Idempotent."""
        for sub in list(sink.subscriptions):
            self.remove(sub)
        self._waiting.pop(sink, None)  # its queued jobs find their subscription gone
        if sink.pending is not None:
            sink.counters.failed_sends += count_frames(sink.pending)
            sink.pending = None

    def subscribers(self, stream: str) -> int:
        """Subscriptions of ``stream`` (a connection on /ws may hold several)."""
        st = self._streams.get(stream)
        return st.count if st is not None else 0

    # -- delivery -------------------------------------------------------------------
    def enqueue(self, sink: Subscriber, frames: list[bytes]) -> None:
        """Queue frames built for one subscriber (replies, replays) behind its pending ones."""
        if not frames:
            return
        pending = sink.pending
        if pending is None:
            sink.pending = list(frames)
            self._dirty.append(sink)
        elif isinstance(pending, list):
            pending.extend(frames)
        else:
            sink.pending = [pending, *frames]
        if not self._flush_scheduled:
            self._request_flush()

    def resume(self, sink: Subscriber) -> None:
        """The transport drained: queue what latest-wins subscriptions held back, and go on
        with the subscriber's paced jobs."""
        sink.paused = False
        held = []
        for sub in sink.subscriptions:
            if sub.held is not None:
                held.append(sub.held)
                sub.held = None
        self.enqueue(sink, held)
        jobs = self._waiting.pop(sink, None)
        if jobs:
            self._jobs.extend(jobs)
            self._schedule_jobs()

    # -- paced work -------------------------------------------------------------------
    def pace(self, job: Job) -> None:
        """Run ``job`` one step per turn of the event loop, in turn with the other jobs."""
        self._jobs.append(job)
        self._schedule_jobs()

    def _schedule_jobs(self) -> None:
        if not self._jobs_scheduled:
            self._jobs_scheduled = True
            self._schedule(self._run_job)

    def _run_job(self) -> None:
        self._jobs_scheduled = False
        if self._jobs:
            job = self._jobs.popleft()
            sink = job.sink
            if sink.paused:  # its transport is full: the job waits for it to drain
                self._waiting.setdefault(sink, []).append(job)
            elif job.step():
                self._jobs.append(job)
        if self._jobs:
            self._schedule_jobs()

    @property
    def backlog(self) -> int:
        """Events accepted but not yet fanned out (they wait for a later tick)."""
        return len(self._backlog)

    def publish(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for their subscribers; they are written at the next flush.

        Events past this tick's budget, and every event while some wait, are kept
        in order and fanned out in the next ticks.
        """
        if self.governor is not None:
            self.governor.published(self._clock())
        if self._backlog:
            self._backlog.extend(events)
            return
        if self._holding and self._conflate:
            conflate = self._conflate
            if any(event.stream in conflate for event in events):
                self._deferred += [event for event in events if event.stream in conflate]
                events = [event for event in events if event.stream not in conflate]
        self._fan_out(events, self._budget)

    def drain(self) -> None:
        """Fan out every waiting event and write everything now (the server is shutting down)."""
        self._fan_out_waiting()
        self.flush()

    def _fan_out_waiting(self) -> None:
        """Fan out, in order, what waits: held latest-wins states, then the backlog."""
        if self._deferred:  # published before anything in the backlog
            deferred, self._deferred = self._deferred, []
            self._fan_out(deferred, 0, self._conflation(deferred))
        while self._backlog:
            events, self._backlog = self._backlog, []
            self._fan_out(events, 0)

    def _resume(self) -> None:
        self._resume_scheduled = False
        events, self._backlog = self._backlog, []
        self._fan_out(events, self._budget)

    def _request_flush(self) -> None:
        """Schedule the flush: at the end of this tick, or held when the governor says so."""
        self._flush_scheduled = True
        governor = self.governor
        # A backlog is already a batch: its chunks are written as they are fanned out.
        if governor is not None and self._later is not None and not self._backlog:
            hold = governor.delay()
            if hold > 0:
                self._holding = True
                self._later(hold, self.flush)
                return
        self._schedule(self.flush)

    def _conflation(self, events: Sequence[Event]) -> Conflation:
        """Latest-wins states held for a flush: per event, the groups it matches, and per
        group, the index of the newest of ``events`` that reaches it (one pass, newest first).

        Conflation: each group gets only that event, the newest that passes its
        filter. Groups are matched before any joining subscription is admitted; a
        group made by one admitted while they are fanned out is in none of them,
        and gets every event from its join on, so no group misses its newest state.
        """
        matched: list[list[Group] | None] = [None] * len(events)
        newest: dict[Group, int] = {}
        for at in range(len(events) - 1, -1, -1):
            event = events[at]
            st = self._streams.get(event.stream)
            if st is None:
                continue
            groups = matched[at] = st.matching(event.data)
            for group in groups:
                if group not in newest:
                    newest[group] = at
        return Conflation(matched, newest)

    def _fan_out(
        self, events: Sequence[Event], budget: int, conflation: Conflation | None = None
    ) -> None:
        """Fan ``events`` out until ``budget`` units are spent (0: no limit); keep the rest.

        ``conflation``: each group gets only the newest event that reaches it
        (:meth:`_conflation`).
        """
        dirty = self._dirty
        level = self._level
        spent = 0
        for at, event in enumerate(events):
            if budget and spent >= budget:
                self._backlog = list(events[at:])
                break
            self._flushed_events.append(event)
            st = self._streams.get(event.stream)
            if st is None:
                continue
            if st.joining:
                st.admit(event)
                if conflation is not None:  # a joining subscription may have made a group
                    conflation.stale.add(event.stream)
            data = event.data
            if conflation is None:
                matched = st.matching(data)
            else:
                matched = self._conflated(st, event, at, conflation)
            if not matched:
                continue
            payloads: dict[tuple[Any, str], bytes | None] = {}
            # Payloads compressed for envelopes, by (shape, format, window bits).
            bodies: dict[tuple[Any, str, int], bytes] = {}
            # A frame is kept for other groups only when there are others: within a
            # group every variant is a different frame.
            frames: dict[tuple[Any, ...], bytes] | None = {} if len(matched) > 1 else None
            sent = raw = wire = failed = 0
            for group in matched:
                shape = group.shape
                view = group.view
                latest = group.filter.latest
                last_codec = None
                payload = None
                opcode = 0
                for vkey, members in group.variants.items():
                    codec_name, bits, prefix, suffix = vkey
                    if codec_name is not last_codec:  # the variants of a group share a format
                        last_codec = codec_name
                        opcode = CODECS[codec_name].opcode
                        pkey = (shape, codec_name)
                        if pkey in payloads:
                            payload = payloads[pkey]
                        elif view is None:
                            payload = encode_payload(event, group.filter, codec_name)
                            payloads[pkey] = payload
                        else:
                            payload = payloads[pkey] = view.render(event)
                            spent += RENDER_COST
                    if payload is None:  # this format cannot carry the event
                        failed += len(members)
                        continue
                    if prefix:
                        # An envelope per subscriber (/ws ids, GraphQL operation ids), joined
                        # around the shared payload, whatever else matched: the one step that
                        # runs once per member, so no wrapper. Compressed, the payload is
                        # compressed once and the envelope joined as stored blocks.
                        if bits:
                            bkey = (shape, codec_name, bits)
                            body = bodies.get(bkey)
                            if body is None:
                                body = bodies[bkey] = compress(payload, level, bits)
                                spent += FRAME_COST
                            frame = deflated_frame(opcode, prefix, body, suffix)
                        else:
                            frame = encode_frame_parts(opcode, prefix, payload, suffix)
                        spent += ENVELOPE_COST
                    elif frames is None:
                        frame = message_frame(payload, codec_name, bits, prefix, suffix, level)
                        spent += FRAME_COST
                    else:
                        fkey = (shape, *vkey)
                        cached = frames.get(fkey)
                        if cached is None:
                            cached = frames[fkey] = message_frame(
                                payload, codec_name, bits, prefix, suffix, level
                            )
                            spent += FRAME_COST
                        frame = cached
                    if latest:
                        self._deliver_latest(members, frame, dirty)
                    else:
                        # The hot loop: one frame, queued for every member.
                        for sink in members.values():
                            pending = sink.pending
                            if pending is None:
                                sink.pending = frame
                                dirty.append(sink)
                            elif isinstance(pending, list):
                                pending.append(frame)
                            else:
                                sink.pending = [pending, frame]
                    n = len(members)
                    sent += n
                    raw += len(payload) * n
                    wire += len(frame) * n
                if group.fresh:  # first messages went out: the usual envelope from now on
                    group.settle()
            spent += sent
            counters = self._stats.endpoints[event.stream]
            counters.messages_sent += sent
            counters.bytes_raw += raw
            counters.bytes_wire += wire
            counters.failed_sends += failed
        if not self._flush_scheduled and self._flushed_events:
            self._request_flush()

    def _conflated(self, st: Members, event: Event, at: int, conflation: Conflation) -> list[Group]:
        """The groups ``events[at]`` goes to: those it is the newest event of; the
        deliveries to the others count as conflated."""
        newest = conflation.newest
        matched = conflation.matched[at]
        if matched is None or event.stream in conflation.stale:
            matched = st.matching(event.data)
        kept = []
        conflated = 0
        for group in matched:
            if newest.get(group, at) == at:
                kept.append(group)
            else:
                conflated += sum(len(members) for members in group.variants.values())
        if conflated:
            self._stats.endpoints[event.stream].conflated += conflated
        return kept

    @staticmethod
    def _deliver_latest(
        members: dict[Subscription, Subscriber], frame: bytes, dirty: list[Subscriber]
    ) -> None:
        """Latest-wins: a paused subscriber keeps only the newest frame, written on resume;
        the others get it queued as in the hot loop (the fan-out requests the flush)."""
        for sub, sink in members.items():
            if sink.paused:
                sub.held = frame
                continue
            pending = sink.pending
            if pending is None:
                sink.pending = frame
                dirty.append(sink)
            elif isinstance(pending, list):
                pending.append(frame)
            else:
                sink.pending = [pending, frame]

    def flush(self) -> None:
        """Write every subscriber's pending frames: one write per subscriber."""
        started = self._clock()
        self._holding = False
        if self._deferred:  # conflated: each group gets the newest event it passes
            deferred, self._deferred = self._deferred, []
            self._fan_out(deferred, 0, self._conflation(deferred))
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        events, self._flushed_events = self._flushed_events, []
        limit = self._max_buffered
        for sub in dirty:
            frames = sub.pending
            if frames is None:  # unsubscribed since it was queued
                continue
            # Slow means a backlog already over the cap, not a large tick: one
            # accepted ingest batch may itself be near the cap, and a reader
            # that has kept up must get it.
            # Only a paused transport (its buffer past the high-water mark, which
            # the connection keeps at or below the cap) can be over the cap, so
            # the others cost no call here.
            if sub.paused and sub.buffered_size() > limit:
                self.unsubscribe(sub)  # drops the pending frames, counted as failed sends
                sub.overflow()
                continue
            sub.pending = None
            sub.write_frames(frames)
        ended = self._clock()
        if self.governor is not None:
            self.governor.flushed(started, ended)
        if self._on_flush is not None and events:
            self._on_flush(events, ended)
        if self._backlog and not self._resume_scheduled:
            # The next chunk in a callback of its own: what the loop has waiting
            # (reads, other timers) runs between the chunks.
            self._resume_scheduled = True
            self._schedule(self._resume)
