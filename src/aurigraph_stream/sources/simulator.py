"""A simulated Aurigraph network whose five streams agree with each other.

Pure and deterministic for a seed: :meth:`NetworkSimulator.advance` takes the
current time and returns the events due since the last call. The server's
driver calls it on a timer and publishes the result through the broker.

The model: validators with voting power (ACTIVE, INACTIVE, JAILED) and
uptime; a BFT cycle per block (PROPOSING, VOTING, COMMITTED; a VIEW_CHANGE
with a new term when a leader fails) whose leader is always an ACTIVE
validator, chosen by voting power; transactions at a Poisson rate, each
PENDING then CONFIRMED or FAILED about one block later; peers joining and
leaving. ``activeValidators`` is the number of ACTIVE validators at that
moment, as the validators stream last reported them.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["NetworkSimulator", "iso_timestamp"]

Emitted = list[tuple[str, dict[str, Any]]]


def iso_timestamp(wall: float) -> str:
    """ISO-8601 UTC with microseconds, ending in Z."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class _Validator:
    address: str
    status: str
    voting_power: int
    uptime: float
    last_block: int


@dataclass(slots=True)
class _Peer:
    peer_id: str
    ip: str
    latency: int


_PHASES = ("PROPOSING", "VOTING", "COMMITTED")
ROUNDS_PER_EPOCH = 100


class NetworkSimulator:
    def __init__(
        self,
        *,
        seed: int | None = None,
        validators: int = 21,
        peers: int = 16,
        tx_rate: float = 20.0,
        block_time: float = 1.0,
        version: str = "11.4.3",
    ) -> None:
        self._rng = random.Random(seed)
        self.tx_rate = tx_rate
        self.block_time = block_time
        self.version = version
        rng = self._rng
        self.validators = [
            _Validator(self._address(), "ACTIVE", rng.randrange(100_000, 5_000_000), 99.0, 0)
            for _ in range(validators)
        ]
        self.peers: dict[str, _Peer] = {}
        for _ in range(peers):
            peer = self._new_peer()
            self.peers[peer.peer_id] = peer
        self._accounts = [self._address() for _ in range(64)]
        # A heap by settle time: settling is O(log n) per transaction at any rate.
        self._pending: list[tuple[float, int, dict[str, Any]]] = []
        self._tx_count = 0
        self.height = 0
        self.epoch = 0
        self.round = 0
        self.term = 0
        self.phase = 2  # index in _PHASES; starts as if a block just committed
        self.leader = self.validators[0].address
        self._outcomes: list[bool] = []
        self._last: float | None = None
        self._next_phase = 0.0
        self._next_validator = 0.0
        self._next_peer = 0.0

    # -- random helpers -------------------------------------------------------
    def _address(self) -> str:
        return "0x" + self._rng.randbytes(20).hex()

    def _new_peer(self) -> _Peer:
        rng = self._rng
        ip = (
            f"198.51.100.{rng.randrange(1, 255)}"
            if rng.random() < 0.5
            else (f"203.0.113.{rng.randrange(1, 255)}")
        )
        return _Peer("12D3KooW" + rng.randbytes(16).hex(), ip, rng.randrange(5, 250))

    def _exp(self, rate: float) -> float:
        return self._rng.expovariate(rate) if rate > 0 else float("inf")

    # -- state views ------------------------------------------------------------
    def active_count(self) -> int:
        return sum(v.status == "ACTIVE" for v in self.validators)

    def _pick_leader(self) -> _Validator:
        active = [v for v in self.validators if v.status == "ACTIVE"]
        if not active:  # never leave consensus without a leader
            revived = self._rng.choice(self.validators)
            revived.status = "ACTIVE"
            active = [revived]
        return self._rng.choices(active, weights=[v.voting_power for v in active])[0]

    # -- messages ---------------------------------------------------------------
    def _validator_msg(self, v: _Validator, ts: str) -> dict[str, Any]:
        return {
            "timestamp": ts,
            "validator": v.address,
            "status": v.status,
            "votingPower": v.voting_power,
            "uptime": round(v.uptime, 2),
            "lastBlockProposed": v.last_block,
        }

    def _consensus_msg(self, ts: str) -> dict[str, Any]:
        window = self._outcomes[-50:]
        score = sum(window) / len(window) if window else 1.0
        return {
            "timestamp": ts,
            "leader": self.leader,
            "epoch": self.epoch,
            "round": self.round,
            "term": self.term,
            "state": _PHASES[self.phase] if self.phase >= 0 else "VIEW_CHANGE",
            "performanceScore": round(score, 4),
            "activeValidators": self.active_count(),
        }

    def _peer_msg(self, p: _Peer, connected: bool, ts: str) -> dict[str, Any]:
        return {
            "timestamp": ts,
            "peerId": p.peer_id,
            "ip": p.ip,
            "connected": connected,
            "latency": p.latency,
            "version": self.version,
        }

    def snapshot(self, wall: float) -> Emitted:
        """The current state of every validator and connected peer, as messages."""
        ts = iso_timestamp(wall)
        out: Emitted = [("validators", self._validator_msg(v, ts)) for v in self.validators]
        out += [("network", self._peer_msg(p, True, ts)) for p in self.peers.values()]
        return out

    # -- time -------------------------------------------------------------------
    def advance(self, wall: float) -> Emitted:
        """Return every event due between the previous call and ``wall`` (seconds)."""
        out: Emitted = []
        last = self._last
        if last is None:  # the first call: the network as it stands, then what follows
            last = wall
            self._next_phase = wall
            self._next_validator = wall + self._exp(1 / 3)
            self._next_peer = wall + self._exp(1 / 2)
            out += self.snapshot(wall)
        self._last = wall
        # New transactions: a Poisson process over (last, wall].
        t = last + self._exp(self.tx_rate)
        while t <= wall and len(out) < 100_000:
            out.append(("transactions", self._new_tx(t)))
            t += self._exp(self.tx_rate)
        pending = self._pending
        while pending and pending[0][0] <= wall:
            settle_at, _, tx = heapq.heappop(pending)
            settled = dict(tx, status="CONFIRMED" if self._rng.random() < 0.97 else "FAILED")
            settled["timestamp"] = iso_timestamp(settle_at)
            out.append(("transactions", settled))
        while self._next_validator <= wall:
            out.append(("validators", self._validator_change(self._next_validator)))
            self._next_validator += self._exp(1 / 3)
        while self._next_peer <= wall:
            out += self._peer_change(self._next_peer)
            self._next_peer += self._exp(1 / 2)
        while self._next_phase <= wall:
            out += self._consensus_step(self._next_phase)
            self._next_phase += self.block_time / 3
        return out

    def _new_tx(self, wall: float) -> dict[str, Any]:
        rng = self._rng
        sender, receiver = rng.sample(self._accounts, 2)
        tx = {
            "timestamp": iso_timestamp(wall),
            "txHash": "0x" + rng.randbytes(32).hex(),
            "from": sender,
            "to": receiver,
            "value": str(rng.randrange(1, 50) * 10 ** rng.randrange(12, 19)),
            "status": "PENDING",
            "gasUsed": rng.choice((21000, 21000, 46000, 65000, 120000)),
        }
        self._tx_count += 1
        settle_at = wall + self.block_time * rng.uniform(0.5, 1.5)
        heapq.heappush(self._pending, (settle_at, self._tx_count, tx))
        return tx

    def _validator_change(self, wall: float) -> dict[str, Any]:
        rng = self._rng
        # The current leader stays ACTIVE until its round ends.
        v = rng.choice([x for x in self.validators if x.address != self.leader] or self.validators)
        if v.status == "ACTIVE" and v.address != self.leader:
            v.status = "JAILED" if rng.random() < 0.2 else "INACTIVE"
            # Keep a working majority active.
            if self.active_count() < max(1, len(self.validators) * 2 // 3):
                v.status = "ACTIVE"
                v.voting_power += rng.randrange(1000, 50_000)
        else:
            v.status = "ACTIVE"
        v.uptime = max(0.0, min(100.0, v.uptime + rng.uniform(-0.5, 0.3)))
        return self._validator_msg(v, iso_timestamp(wall))

    def _peer_change(self, wall: float) -> Emitted:
        ts = iso_timestamp(wall)
        rng = self._rng
        if self.peers and (rng.random() < 0.5 or len(self.peers) > 64):
            peer = self.peers.pop(rng.choice(list(self.peers)))
            return [("network", self._peer_msg(peer, False, ts))]
        peer = self._new_peer()
        self.peers[peer.peer_id] = peer
        return [("network", self._peer_msg(peer, True, ts))]

    def _consensus_step(self, wall: float) -> Emitted:
        ts = iso_timestamp(wall)
        out: Emitted = []
        if self.phase in (2, -1):  # after COMMITTED or a view change: next round
            if self.phase == 2:
                self.height += 1
                self.round += 1
                if self.round >= ROUNDS_PER_EPOCH:
                    self.round = 0
                    self.epoch += 1
            leader = self._pick_leader()
            self.leader = leader.address
            self.phase = 0
        elif self.phase == 0 and self._rng.random() < 0.03:
            # The leader failed to propose: view change, new term, same round.
            self.term += 1
            self.phase = -1
            self._outcomes.append(False)
        else:
            self.phase += 1
            if self.phase == 2:
                self._outcomes.append(True)
                for v in self.validators:
                    if v.address == self.leader:
                        v.last_block = self.height + 1
                        out.append(("validators", self._validator_msg(v, ts)))
        out.insert(0, ("consensus", self._consensus_msg(ts)))
        return out
