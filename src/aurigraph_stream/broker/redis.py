"""Redis broker: one order per stream for every process and node, on Redis Streams.

Per stream, three keys share one hash tag (``aurigraph:{transactions}:...``):

- ``meta``, a hash: ``epoch``, ``seq``, the last seq assigned, and ``base``,
  the seq the epoch started after (0, or where a new epoch took over from
  one Redis lost writes of);
- ``log``, a Redis Stream: one entry per event (``s`` seq, ``e`` epoch,
  ``d`` the message as JSON, without ``seq``, ``t`` Redis' clock when it was
  stored, in microseconds), trimmed to the stream's
  history bounds (``MAXLEN`` for the count, ``MINID`` for the age);
- ``snap``, a hash: the snapshot set of ``validators`` and ``network``
  (item key -> ``seq:json``).

A publish is one Lua script, so one round trip: it creates the epoch if the
stream has none (a new stream, or one Redis lost), takes the next seqs with
``HINCRBY``, appends every event, trims, and updates the snapshot set. Redis
runs a script whole or not at all, so a request is stored entirely or not at
all, and its seqs are contiguous whichever node sent it.

Delivery needs no pub/sub: each process runs one reader that ``XREAD``s every
stream's log from the last entry it delivered. A reader cut off from Redis
picks up where it stopped when Redis is back, so subscribers get what was
published meanwhile. When the epoch of an entry is not the one it delivered
from, or a seq was skipped (trimmed before it was read), the reader re-reads
the stream's state and calls ``on_reset`` with the position it continues
from: subscribers are told ``recovered: false`` rather than left with a gap.

Redis may also lose its last writes and keep the epoch (an append-only file
fsynced every second, a replica promoted behind its master): it then numbers
again from below what readers delivered, and one ``SEQ:EPOCH`` would name two
events. A reader that finds a seq it delivered already, or a stored seq below
it, moves the stream to a new epoch in one script (once, whichever process
sees it first) and resyncs: that too is announced ``recovered: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aurigraph_stream.broker.base import (
    Broker,
    BrokerUnavailable,
    EventHandler,
    HistoryRead,
    ResetHandler,
)
from aurigraph_stream.broker.history import HistoryPolicy
from aurigraph_stream.contract import Position
from aurigraph_stream.event import Event
from aurigraph_stream.streams import SNAPSHOT_KEYS, snapshot_key

__all__ = ["KEY_PREFIX", "RedisBroker", "stream_keys"]

logger = logging.getLogger("aurigraph_stream.broker")

KEY_PREFIX = "aurigraph:"
COMMAND_TIMEOUT = 3.0  # seconds: a publish or read slower than this answers 503
PING_TIMEOUT = 1.0  # seconds: readiness goes DOWN within this of Redis hanging
CONNECT_TIMEOUT = 1.0
POOL_SIZE = 16  # connections for commands, per process (the reader has one of its own)
# The reader's XREAD BLOCK: how long an idle reader waits before it asks again,
# and so how long close() waits for it (a cancelled XREAD can leave redis-py's
# connection hanging, so the reader is asked to stop instead).
BLOCK_MS = 250
READ_COUNT = 1000  # entries per stream per XREAD

# The errors that mean "Redis cannot be reached or answered too late".
_UNREACHABLE = (RedisError, OSError, asyncio.TimeoutError)

# The epoch of the stream (KEYS[1] meta, KEYS[2] log, KEYS[3] snap), created from
# ARGV[1] if it has none (a new stream, or one Redis lost).
_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
"""

# trim(age ms, TIME or nil): drops the log's entries older than ``age`` (0: none).
_TRIM = """
local function trim(age, t)
  if age > 0 then
    t = t or redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('XTRIM', KEYS[2], 'MINID', now - age)
  end
end
"""

# KEYS: meta, log, snap. ARGV: a fresh epoch (used only when the stream has
# none), max length, max age ms (0: none), n, then n x (data, op, item key)
# where op is "" (no snapshot), "+" (set the item) or "-" (remove it).
_PUBLISH = (
    _EPOCH
    + _TRIM
    + """
local t = redis.call('TIME')
local stored = t[1] .. string.format('%06d', tonumber(t[2]))
local n = tonumber(ARGV[4])
local last = redis.call('HINCRBY', KEYS[1], 'seq', n)
local seq = last - n
for i = 0, n - 1 do
  seq = seq + 1
  local at = 5 + i * 3
  local data = ARGV[at]
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 's', seq, 'e', epoch, 'd', data, 't', stored)
  local op = ARGV[at + 1]
  if op == '+' then
    redis.call('HSET', KEYS[3], ARGV[at + 2], seq .. ':' .. data)
  elseif op == '-' then
    redis.call('HDEL', KEYS[3], ARGV[at + 2])
  end
end
trim(tonumber(ARGV[3]), t)
return last
"""
)

# The part both reads share: the epoch (created if missing), age trimming, the head.
# ARGV: fresh epoch, max age ms.
_ENSURE = (
    _EPOCH
    + _TRIM
    + """
trim(tonumber(ARGV[2]), nil)
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
"""
)

# KEYS: meta, log, snap. ARGV: fresh epoch, max age ms, since ("": none), newest
# ("": every event kept; used without since). Returns {epoch, head seq, oldest kept
# entry or {}, entries}, the entries newest first: after ``since`` the count that
# must be there, else the newest ones.
_HISTORY = (
    _ENSURE
    + """
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local entries
if ARGV[3] ~= '' then
  local since = tonumber(ARGV[3])
  if since >= head then
    entries = {}
  else
    entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', head - since)
  end
elseif ARGV[4] ~= '' then
  local newest = tonumber(ARGV[4])
  if newest > 0 then
    entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', newest)
  else
    entries = {}
  end
else
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-')
end
return {epoch, head, oldest, entries}
"""
)

# KEYS: meta, log, snap. ARGV: fresh epoch, max age ms. Returns {epoch, head seq,
# id of the newest entry or "0-0", the snapshot set, seq of the oldest entry or 0,
# the seq the epoch started after}.
_STATE_READ = """
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local last = '0-0'
local first = 0
if newest[1] then last = newest[1][1] end
if oldest[1] then first = tonumber(oldest[1][2][2]) end
local base = tonumber(redis.call('HGET', KEYS[1], 'base') or 0)
return {epoch, head, last, redis.call('HVALS', KEYS[3]), first, base}
"""
_STATE = _ENSURE + _STATE_READ

# Redis lost writes it had acknowledged (an AOF fsynced every second, a replica
# promoted behind its master) and went on numbering under the same epoch: seqs
# already delivered would name other events. KEYS: meta, log, snap. ARGV: fresh
# epoch, max age ms, the epoch that lost them. If the stream is still on it, it
# moves to the fresh epoch, which goes on from the stored seq (``base``, the seq
# the epoch starts after); the log, whose positions are now ambiguous, is
# dropped; the snapshot set is Redis' current one and stays. Returns the state as
# _STATE does (the fresh epoch, or the one another process moved it to first).
_FORK = (
    """
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[3] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'base', redis.call('HGET', KEYS[1], 'seq'))
  redis.call('DEL', KEYS[2])
end
"""
    + _STATE
)

# KEYS: the lease. ARGV: holder, ttl ms. 1 if the holder holds it now.
_LEASE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


# (position, id of the newest entry, the snapshot set or None, seq of the oldest entry,
# the seq the epoch started after).
_State = tuple[Position, bytes, list[dict[str, Any]] | None, int, int]


def stream_keys(stream: str) -> tuple[str, str, str]:
    """(meta, log, snap): one hash tag, so a Redis Cluster keeps them on one shard."""
    base = f"{KEY_PREFIX}{{{stream}}}:"
    return base + "meta", base + "log", base + "snap"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _snapshot_item(value: bytes) -> dict[str, Any]:
    seq, _, data = value.partition(b":")
    return {**orjson.loads(data), "seq": int(seq)}


class RedisBroker:
    """A broker whose order, history, epoch and snapshot sets live in Redis.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://...`` (TLS).
        policies: each stream's history bounds.
    """

    def __init__(self, url: str, policies: Mapping[str, HistoryPolicy]) -> None:
        self._policies = dict(policies)
        # No retries: a publish retried after a timeout could be stored twice. A bounded
        # pool: a burst of resumes (each a history read) waits for a connection rather
        # than opening one each and keeping them all open afterwards.
        self._client: redis.Redis = redis.Redis.from_pool(
            redis.BlockingConnectionPool.from_url(
                url,
                max_connections=POOL_SIZE,
                timeout=COMMAND_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        )
        # The reader's own pool (one connection in use): its XREAD blocks.
        self._reader: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=BLOCK_MS / 1000 + COMMAND_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._publish = self._client.register_script(_PUBLISH)
        self._history = self._client.register_script(_HISTORY)
        self._state = self._client.register_script(_STATE)
        self._fork = self._client.register_script(_FORK)
        self._lease = self._client.register_script(_LEASE)
        self._keys = {name: stream_keys(name) for name in policies}
        self._stream_of = {keys[1].encode(): name for name, keys in self._keys.items()}
        self._known: dict[str, Position] = {}  # what the handler was given last
        self._ids: dict[bytes, bytes] = {}  # log key -> the last entry id read
        self._handler: EventHandler | None = None
        self._on_reset: ResetHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._up = True

    # -- lifecycle ----------------------------------------------------------------
    async def start(self, handler: EventHandler, on_reset: ResetHandler | None = None) -> None:
        self._handler = handler
        self._on_reset = on_reset
        try:
            await self._sync()
        except _UNREACHABLE as exc:
            # The server still starts (readiness DOWN); the reader keeps trying.
            logger.warning("broker unreachable at start", extra={"error": type(exc).__name__})
            self._up = False
        self._task = asyncio.create_task(self._run(), name="redis-reader")
        self._task.add_done_callback(self._reader_ended)

    def _reader_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closing:
            return
        # Not expected (_run handles every Exception), but readiness must say it.
        logger.error("broker reader stopped; readiness is DOWN", exc_info=task.exception())

    async def close(self) -> None:
        self._handler = None
        self._on_reset = None
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            # Let the reader's XREAD come back and the loop see _closing; cancel only
            # if it does not within the longest a command may take.
            done, _ = await asyncio.wait({task}, timeout=BLOCK_MS / 1000 + COMMAND_TIMEOUT + 1)
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # an error of its own was logged when it ended
        await self._reader.aclose()
        await self._client.aclose()

    # -- publishing -----------------------------------------------------------------
    async def publish(self, stream: str, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        n = len(messages)
        if self._closing:
            raise BrokerUnavailable("the broker is closed")
        if n == 0:
            return []
        policy = self._policies[stream]
        args: list[Any] = [secrets.token_hex(4), policy.size, int(policy.max_age * 1000), n]
        for message in messages:
            where = snapshot_key(stream, message)
            if where is None:
                args += (orjson.dumps(message), "", "")
            else:
                args += (orjson.dumps(message), "+" if where[1] else "-", where[0])
        try:
            last = int(await self._publish(keys=self._keys[stream], args=args))
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(f"Redis did not store the events: {exc}") from exc
        return list(range(last - n + 1, last + 1))

    # -- reading ------------------------------------------------------------------------
    async def history(
        self, stream: str, since: int | None, newest: int | None = None
    ) -> HistoryRead:
        if self._closing:
            raise BrokerUnavailable("the broker is closed")
        policy = self._policies[stream]
        args: list[str | int] = [
            secrets.token_hex(4),
            int(policy.max_age * 1000),
            "" if since is None else since,
            "" if newest is None else newest,
        ]
        try:
            epoch, head, oldest, entries = await self._history(keys=self._keys[stream], args=args)
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(f"Redis did not answer: {exc}") from exc
        head = int(head)
        position = Position(head, _text(epoch))
        first = int(oldest[0][1][1]) if oldest else head + 1
        now = (time.perf_counter(), time.time())
        # Entries come newest first, each a flat list: s, seq, e, epoch, d, data, t, stored.
        events: list[Event] | None = [
            self._event(stream, e[0], int(f[1]), f[5], f[7] if len(f) > 7 else None, now)
            for e in reversed(entries)
            for f in (e[1],)
        ]
        if since is not None and since < head:
            assert events is not None
            if len(events) < head - since or events[0].seq != since + 1:
                # Some events after ``since`` are no longer kept, all of them when the
                # age bound emptied the log of an idle stream.
                events = None
        return HistoryRead(position, events, first)

    def history_now(self, stream: str, since: int | None) -> HistoryRead | None:
        return None  # a network round trip: subscribers buffer while history() loads

    def delivered(self, stream: str) -> Position:
        return self._known.get(stream) or Position(0, "")

    @staticmethod
    def _event(
        stream: str,
        entry_id: bytes,
        seq: int,
        data: bytes,
        stored: bytes | None,
        now: tuple[float, float],
    ) -> Event:
        """An entry as an event; ``stored``: when Redis stored it (us, Redis' clock)."""
        if stored is not None:
            at = int(stored) / 1e6
        else:  # an entry from before ``t`` was stored: the id's milliseconds
            at = int(entry_id.partition(b"-")[0]) / 1e3
        message = orjson.loads(data)  # stored without seq: a dict of its own to add it to
        message["seq"] = seq
        # accepted_at on this process's perf_counter, from when Redis stored it.
        return Event(stream, seq, message, now[0] - max(0.0, now[1] - at))

    # -- leases and health ----------------------------------------------------------------
    async def lease(self, name: str, holder: str, ttl: float) -> bool:
        if self._closing:
            return False
        try:
            held = await self._lease(
                keys=[f"{KEY_PREFIX}lease:{name}"], args=[holder, max(1, int(ttl * 1000))]
            )
        except _UNREACHABLE:
            return False  # cannot renew: behave as if it lapsed
        return int(held) == 1

    async def ping(self) -> bool:
        if self._closing:
            return False
        if self._task is not None and self._task.done():
            return False  # no reader: nothing published would be delivered here
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return bool(await self._client.ping())
        except _UNREACHABLE:
            return False

    # -- the reader -------------------------------------------------------------------------
    def _parsed_state(self, stream: str, reply: Sequence[Any]) -> _State:
        epoch, head, last, items, oldest, base = reply
        snapshot = [_snapshot_item(v) for v in items] if stream in SNAPSHOT_KEYS else None
        return Position(int(head), _text(epoch)), last, snapshot, int(oldest), int(base)

    def _state_args(self, stream: str, *more: str) -> list[str | int]:
        return [secrets.token_hex(4), int(self._policies[stream].max_age * 1000), *more]

    async def _state_of(self, stream: str) -> _State:
        reply = await self._state(keys=self._keys[stream], args=self._state_args(stream))
        return self._parsed_state(stream, reply)

    async def _resync(
        self, stream: str, *, new_epoch: bool = False, state: _State | None = None
    ) -> None:
        """Continue ``stream`` from its state in Redis now (``state`` when already read),
        telling the handler's owner.

        A new epoch whose log still starts at its first seq is delivered from
        its start (the reset says the position it started after; a new stream's
        snapshot set starts empty): subscribers then get every event of it.
        Otherwise delivery goes on after the head, with the stored snapshot set.
        """
        if state is None:
            state = await self._state_of(stream)
        position, last, items, oldest, base = state
        if new_epoch and oldest == base + 1:
            position = Position(base, position.epoch)
            last = b"0-0"
            if base == 0 and items is not None:
                items = []
        self._known[stream] = position
        self._ids[self._keys[stream][1].encode()] = last
        if self._on_reset is not None:
            self._on_reset(stream, position, items)

    async def _fork_epoch(self, stream: str, lost: str) -> None:
        """Redis numbers ``stream`` again from below what was delivered, under the epoch
        ``lost``: move it to a new epoch (atomically, once for every process) and resync."""
        logger.warning(
            "Redis lost acknowledged events of the stream: new epoch",
            extra={"stream": stream, "epoch": lost},
        )
        reply = await self._fork(keys=self._keys[stream], args=self._state_args(stream, lost))
        await self._resync(stream, new_epoch=True, state=self._parsed_state(stream, reply))

    async def _sync(self) -> None:
        """After (re)connecting: streams Redis lost start over, streams it numbers again
        from below what was delivered get a new epoch, the others read on."""
        streams = list(self._policies)
        async with self._client.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.hmget(self._keys[stream][0], ["epoch", "seq"])
            stored = await pipe.execute()
        for stream, (epoch, seq) in zip(streams, stored, strict=True):
            known = self._known.get(stream)
            if known is None:
                await self._resync(stream)
            elif epoch is None or _text(epoch) != known.epoch:
                logger.warning(
                    "stream history lost in Redis: new epoch",
                    extra={"stream": stream, "epoch": _text(epoch or b"")},
                )
                await self._resync(stream, new_epoch=True)
            elif int(seq or 0) < known.seq:
                await self._fork_epoch(stream, known.epoch)

    async def _run(self) -> None:
        backoff = 0.05
        need_sync = not self._up
        resync_all = False
        while not self._closing:
            try:
                if resync_all:
                    for stream in self._policies:
                        await self._resync(stream)
                    resync_all = need_sync = False
                elif need_sync:
                    await self._sync()
                    need_sync = False
                ids: Any = self._ids
                reply: Any = await self._reader.xread(ids, count=READ_COUNT, block=BLOCK_MS)
                if not self._up:
                    logger.info("broker reachable again")
                    self._up = True
                backoff = 0.05
                if reply and not self._closing:
                    await self._deliver(reply)
            except asyncio.CancelledError:
                raise
            except _UNREACHABLE as exc:
                if self._up:
                    logger.warning("broker unreachable", extra={"error": type(exc).__name__})
                    self._up = False
                need_sync = True
                if self._closing:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:
                # A bug, or an entry it cannot read: what was being delivered may be
                # lost, so every stream starts again from its head, announced.
                logger.exception("broker reader failed; resyncing every stream")
                resync_all = True
                if self._closing:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _deliver(self, reply: Sequence[Any]) -> None:
        now = (time.perf_counter(), time.time())
        event = self._event
        for key, entries in reply:
            stream = self._stream_of[key]
            known = self._known[stream]
            seq = known.seq
            epoch = known.epoch.encode()
            events: list[Event] = []
            last_id = None
            for entry_id, fields in entries:
                s = int(fields[b"s"])
                if s == seq + 1 and fields[b"e"] == epoch:
                    events.append(event(stream, entry_id, s, fields[b"d"], fields.get(b"t"), now))
                    seq = s
                    last_id = entry_id
                    continue
                if last_id is not None:
                    self._ids[key] = last_id
                self._known[stream] = Position(seq, known.epoch)
                if events:
                    self._hand_over(events)
                # Continue from the stream's state as it is now, which includes every
                # entry of this reply.
                if fields[b"e"] != epoch:
                    await self._resync(stream, new_epoch=True)  # Redis lost the stream
                elif s <= seq:
                    # A seq delivered already names another event: Redis lost writes
                    # and numbered on from where its copy was.
                    await self._fork_epoch(stream, known.epoch)
                else:
                    await self._resync(stream)  # entries trimmed before this reader got them
                break
            else:
                if last_id is not None:
                    self._ids[key] = last_id
                self._known[stream] = Position(seq, known.epoch)
                if events:
                    self._hand_over(events)

    def _hand_over(self, events: list[Event]) -> None:
        if self._handler is not None:
            self._handler(events)


def _conforms(broker: RedisBroker) -> Broker:
    """Checked by mypy: RedisBroker implements Broker."""
    return broker
