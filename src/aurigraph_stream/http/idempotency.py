"""``Idempotency-Key`` on ingest: a retried request returns the original seqs, publishes nothing.

A publisher that lost an answer (a dropped connection, a timeout) cannot know
whether its events were published; retrying blindly creates duplicates. With
the same ``Idempotency-Key`` on the retry, the server answers with the seqs of
the first request and publishes nothing new. The key is the publisher's name
for one request, scoped by the token's subject and the stream.

A key is kept as long as its request can still be in the stream's history
window: at most ``size`` keys per stream (a request publishes at least one
event, so the history never holds events of more requests than that), and,
when the stream's history has a ``max_age``, no longer than that after its
request was published. A key whose request is still being published is kept
until that ends, whatever the bounds, and only that request's :class:`Claim`
settles it. Like the history, keys do not survive a restart (the epoch
changes then, too).

The same key with a different body is refused (422), and a retry that arrives
while the first request is still being published gets 409, as the IETF
``Idempotency-Key`` header draft says.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aurigraph_stream.broker.history import HistoryPolicy

__all__ = ["MAX_KEY_LENGTH", "Claim", "IdempotencyKeys", "check_key"]

MAX_KEY_LENGTH = 255


def check_key(key: str) -> str | None:
    """Why ``key`` is not a usable Idempotency-Key, or ``None`` when it is."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return f"the Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
    if not all("!" <= c <= "~" for c in key):
        return "the Idempotency-Key must be visible ASCII characters, without spaces"
    return None


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    stored_at: float  # when its request was published
    seqs: range | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Pending:
    """A key whose request is being published, held by that request's :class:`Claim`."""

    stream: str
    name: tuple[str, str]  # (subject, key)
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """What a key lookup found.

    ``seqs`` set: a replay, answer with them. ``conflict`` set: refuse with that
    slug. Neither: the caller owns the key and must :meth:`IdempotencyKeys.finish`
    or :meth:`IdempotencyKeys.release` this claim.
    """

    seqs: Sequence[int] | None = None
    conflict: str | None = None
    pending: _Pending | None = None


def _compact(seqs: Sequence[int]) -> range | tuple[int, ...]:
    # A batch's seqs are consecutive with any broker that orders a stream: a range
    # costs 48 bytes whatever the batch size.
    if seqs and list(seqs) == list(range(seqs[0], seqs[0] + len(seqs))):
        return range(seqs[0], seqs[0] + len(seqs))
    return tuple(seqs)


class IdempotencyKeys:
    """The keys of recent ingest requests, per stream, bounded like the stream's history.

    The keys of requests still being published are kept apart and never dropped: they
    are as many as the requests in progress, and dropping one would let its retry
    publish the same events again.
    """

    def __init__(
        self,
        policies: Mapping[str, HistoryPolicy],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policies = dict(policies)
        self._clock = clock
        # Published, oldest first.
        self._keys: dict[str, OrderedDict[tuple[str, str], _Entry]] = {
            name: OrderedDict() for name in policies
        }
        self._pending: dict[tuple[str, tuple[str, str]], _Pending] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys.values()) + len(self._pending)

    def _expire(self, stream: str, now: float) -> OrderedDict[tuple[str, str], _Entry]:
        keys = self._keys[stream]
        policy = self._policies[stream]
        while len(keys) > policy.size:
            keys.popitem(last=False)
        if policy.max_age > 0:
            oldest = now - policy.max_age
            while keys and next(iter(keys.values())).stored_at < oldest:
                keys.popitem(last=False)
        return keys

    def claim(self, stream: str, subject: str, key: str, body: bytes | bytearray) -> Claim:
        """Look ``key`` up for a request with ``body``; claim it when it is new."""
        keys = self._expire(stream, self._clock())
        fingerprint = hashlib.blake2b(body, digest_size=16).digest()
        name = (subject, key)
        pending = self._pending.get((stream, name))
        if pending is not None:
            if pending.fingerprint != fingerprint:
                return Claim(conflict="idempotency_key_reused")
            return Claim(conflict="idempotency_key_in_use")
        entry = keys.get(name)
        if entry is None:
            pending = self._pending[(stream, name)] = _Pending(stream, name, fingerprint)
            return Claim(pending=pending)
        if entry.fingerprint != fingerprint:
            return Claim(conflict="idempotency_key_reused")
        return Claim(seqs=entry.seqs)

    def finish(self, claim: Claim, seqs: Sequence[int]) -> None:
        """The claimed request was published with ``seqs``: later retries get them."""
        pending = self._settle(claim)
        if pending is not None:
            now = self._clock()
            self._keys[pending.stream][pending.name] = _Entry(
                pending.fingerprint, now, _compact(seqs)
            )
            self._expire(pending.stream, now)

    def release(self, claim: Claim) -> None:
        """The claimed request published nothing: a retry is a new request."""
        self._settle(claim)

    def _settle(self, claim: Claim) -> _Pending | None:
        """The claim's key, no longer being published; None if the claim holds none now."""
        pending = claim.pending
        if pending is None or self._pending.get((pending.stream, pending.name)) is not pending:
            return None
        del self._pending[(pending.stream, pending.name)]
        return pending
