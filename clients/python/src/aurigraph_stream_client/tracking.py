"""Where a subscription is: the seq delivered so far, duplicates, and gaps. No I/O.

One :class:`SeqTracker` per subscription, fed what the server sends::

    subscribed{position, recovered, replayed}  -> on_subscribed()  -> a Gap, or None
    snapshot{position}                         -> on_snapshot()
    a message with its seq                     -> accept()         -> deliver it or not

and asked :meth:`~SeqTracker.since` when it resubscribes after a reconnect. The
rules, which is all "never lose a message silently, never deliver one twice" needs:

- Every subscription on ``/ws`` is answered ``subscribed`` with the stream's
  position; live messages follow from ``position.seq + 1``.
- After a reconnect the SDK asks for ``since = last delivered seq : epoch``. The
  server answers ``recovered: true`` and replays what came after it, or
  ``recovered: false`` (the epoch changed, or the history no longer reaches
  back): that is a :class:`~aurigraph_stream_client.events.Gap`, and delivery
  goes on after the new position.
- A message whose seq is not above the last one delivered is a duplicate and is
  dropped (counted in ``duplicates``). Seqs may jump: a filter passes only some
  messages, so a jump is not a gap; only the server can say there is one.
- ``replay=N`` sends up to N messages at or below the subscribed position. If
  the connection drops before the first of them arrives, the SDK resumes from
  just before them: without a filter that drops messages they are the last
  ``replayed`` seqs, so ``since = position - replayed`` is exact. With such a
  filter their seqs cannot be known, so it resumes after the position (every
  live message) and reports the replay as a Gap with ``last_seq`` None.
"""

from __future__ import annotations

from .events import Gap, Position

__all__ = ["SeqTracker"]


class SeqTracker:
    """The position of one subscription, as delivered to the application.

    Args:
        stream: the stream's name (for the gaps it reports).
        since: a position the application resumes from (``SEQ:EPOCH``, or a seq
            alone: then the server cannot tell a restart, so give the epoch).
        filtered: the subscription's filter drops messages (any option but the
            projections ``fields`` and ``detail``), so its seqs are not consecutive.
    """

    __slots__ = ("_replay_at", "duplicates", "epoch", "filtered", "seq", "stream")

    def __init__(
        self, stream: str, since: Position | int | None = None, filtered: bool = False
    ) -> None:
        self.stream = stream
        self.seq: int | None = None  # the last seq delivered (or known to be behind us)
        self.epoch: str | None = None
        self.filtered = filtered
        self.duplicates = 0
        # The subscribed position of a filtered replay none of which has arrived yet.
        self._replay_at: Position | None = None
        if isinstance(since, Position):
            self.seq, self.epoch = since.seq, since.epoch
        elif since is not None:
            self.seq = since

    def since(self) -> str | None:
        """What to resume from: ``SEQ:EPOCH`` (or ``SEQ``); None before any position is known."""
        if self.seq is None:
            return self._replay_at.text() if self._replay_at is not None else None
        return f"{self.seq}:{self.epoch}" if self.epoch is not None else str(self.seq)

    def on_subscribed(self, position: Position, recovered: bool, replayed: int) -> Gap | None:
        """Take the ``subscribed`` reply; returns the gap to deliver first, if there is one.

        Args:
            position: the stream's position when the subscription started.
            recovered: the server's word on whether everything asked for is coming.
            replayed: how many messages it replays before live ones.
        """
        unreplayed, self._replay_at = self._replay_at, None
        if self.seq is None and unreplayed is not None:
            # This resumes a filtered replay that never began (since = its position).
            gap = Gap(
                stream=self.stream,
                last_seq=None,
                old_epoch=unreplayed.epoch,
                new_epoch=position.epoch,
                resume_seq=position.seq if not recovered else unreplayed.seq,
                missed=None,
            )
            self.seq = gap.resume_seq
            self.epoch = position.epoch
            return gap
        resumed = self.seq is not None
        if resumed and not recovered:
            same = self.epoch == position.epoch
            assert self.seq is not None
            missed = position.seq - self.seq if same and position.seq >= self.seq else None
            gap = Gap(
                stream=self.stream,
                last_seq=self.seq,
                old_epoch=self.epoch,
                new_epoch=position.epoch,
                resume_seq=position.seq,
                missed=missed,
            )
            self.seq, self.epoch = position.seq, position.epoch
            return gap
        self.epoch = position.epoch
        if not resumed:
            if not replayed:
                # Live messages follow position.seq: resuming from it loses nothing.
                self.seq = position.seq
            elif not self.filtered:
                # The replay is the `replayed` seqs up to position.seq.
                self.seq = max(0, position.seq - replayed)
            else:
                self._replay_at = position
        return None

    def on_snapshot(self, position: Position) -> None:
        """A snapshot stands for everything up to its position."""
        self._replay_at = None
        self.seq, self.epoch = position.seq, position.epoch

    def accept(self, seq: int) -> bool:
        """Whether to deliver the message with this seq (False: a duplicate, dropped)."""
        if self.seq is not None and seq <= self.seq:
            self.duplicates += 1
            return False
        self.seq = seq
        self._replay_at = None
        return True
