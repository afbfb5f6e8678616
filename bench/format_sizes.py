"""Message sizes per stream and format: JSON, MessagePack, Protocol Buffers.

Encodes simulated messages (the built-in simulator, seed 1, plus one metrics
sample per interval) with each codec exactly as the hub does, and reports the
mean payload size, and the mean size after permessage-deflate (level 6, fresh
window per message, as the server sends). Also the ``detail=summary``
transactions projection. The table in docs/formats.md comes from this script.

Run: ``.venv/bin/python bench/format_sizes.py``
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.filters import parse_filter
from aurigraph_stream.sources.simulator import NetworkSimulator, iso_timestamp
from aurigraph_stream.streams import NAMES
from aurigraph_stream.wire.deflate import compress

__all__ = ["main"]


def _messages(per_stream: int) -> dict[str, list[dict[str, Any]]]:
    sim = NetworkSimulator(seed=1, tx_rate=200, block_time=0.3)
    rng = random.Random(1)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    wall = 1_760_000_000.0
    seqs = dict.fromkeys(NAMES, 0)
    for _ in range(100_000):
        wall += 0.05
        for stream, message in sim.advance(wall):
            seqs[stream] += 1
            out[stream].append({**message, "seq": seqs[stream]})
        if all(len(out[s]) >= per_stream for s in NAMES if s != "metrics"):
            break
    for seq in range(1, per_stream + 1):
        out["metrics"].append(
            {
                "timestamp": iso_timestamp(wall + seq),
                "tps": round(rng.uniform(150, 250), 2),
                "cpu": round(rng.uniform(1, 40), 1),
                "memory": round(rng.uniform(60, 90), 1),
                "connections": rng.randrange(0, 10_000),
                "errorRate": 0.0,
                "seq": seq,
            }
        )
    return {s: out[s][:per_stream] for s in NAMES}


def main() -> int:
    per_stream = 1000
    messages = _messages(per_stream)
    summary = parse_filter("transactions", {"detail": "summary"})
    rows: list[tuple[str, str, list[Mapping[str, Any]]]] = [
        (s, s, list(messages[s])) for s in NAMES
    ]
    rows.append(
        (
            "transactions (detail=summary)",
            "transactions",
            [summary.project(m) for m in messages["transactions"]],
        )
    )
    formats = ("JSON", "MessagePack", "Protobuf")
    print("| stream | " + " | ".join([*formats, *(f"{f}+deflate" for f in formats)]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, stream, batch in rows:
        plain = []
        packed = []
        for name in ("json", "msgpack", "protobuf"):
            codec = CODECS[name]
            sizes = [codec.message(stream, m) for m in batch]
            plain.append(sum(map(len, sizes)) / len(sizes))
            packed.append(sum(len(compress(p, 6, 15)) for p in sizes) / len(sizes))
        cells = [f"{v:.0f} B" for v in plain] + [f"{v:.0f} B" for v in packed]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
