"""One example message per stream, as in the spec (with concrete addresses)."""

from __future__ import annotations

from typing import Any

__all__ = ["EXAMPLES"]

EXAMPLES: dict[str, dict[str, Any]] = {
    "metrics": {
        "timestamp": "2025-10-25T09:35:00Z",
        "tps": 8510000,
        "cpu": 45.2,
        "memory": 2048,
        "connections": 256,
        "errorRate": 0.001,
        "seq": 1,
    },
    "transactions": {
        "timestamp": "2025-10-25T09:35:02Z",
        "txHash": "0x" + "ab" * 32,
        "from": "0x" + "11" * 20,
        "to": "0x" + "22" * 20,
        "value": "1000000000000000000",
        "status": "PENDING",
        "gasUsed": 21000,
        "seq": 1,
    },
    "validators": {
        "timestamp": "2025-10-25T09:35:05Z",
        "validator": "0x" + "33" * 20,
        "status": "ACTIVE",
        "votingPower": 1000000,
        "uptime": 99.95,
        "lastBlockProposed": 12345,
        "seq": 1,
    },
    "consensus": {
        "timestamp": "2025-10-25T09:35:10Z",
        "leader": "0x" + "33" * 20,
        "epoch": 145,
        "round": 3,
        "term": 7,
        "state": "COMMITTED",
        "performanceScore": 0.98,
        "activeValidators": 156,
        "seq": 1,
    },
    "network": {
        "timestamp": "2025-10-25T09:35:15Z",
        "peerId": "12D3KooWAurigraphPeer0001",
        "ip": "192.168.1.100",
        "connected": True,
        "latency": 25,
        "version": "11.4.3",
        "seq": 1,
    },
}
