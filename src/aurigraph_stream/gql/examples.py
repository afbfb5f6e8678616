"""Example operations, one per kind of use: GraphiQL opens with them as tabs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["EXAMPLES", "Example"]


@dataclass(frozen=True, slots=True)
class Example:
    query: str
    variables: dict[str, Any] | None = None

    def tab(self) -> dict[str, str]:
        """As a GraphiQL tab (``defaultTabs``): the document, and variables as JSON text."""
        tab = {"query": self.query}
        if self.variables is not None:
            tab["variables"] = orjson.dumps(self.variables, option=orjson.OPT_INDENT_2).decode()
        return tab


EXAMPLES = (
    Example(
        """# The current state: latest metrics and consensus, the active validators,
# and the validators stream's position (to subscribe from it, missing nothing).
query CurrentState {
  metrics { tps cpu memory connections errorRate seq }
  consensus { epoch round term state leader activeValidators seq }
  validators(status: [ACTIVE]) { validator votingPower uptime lastBlockProposed seq }
  position(stream: validators) { seq epoch }
}
"""
    ),
    Example(
        """# Transactions the server still keeps, newest ten that touch an address.
query RecentTransactions($address: [String!]) {
  transactions(address: $address, last: 10) { txHash from to value status gasUsed seq }
}
""",
        {"address": ["0x1111111111111111111111111111111111111111"]},
    ),
    Example(
        """# Live: transactions of at least 1 ether (the first result's extensions.stream
# says where the subscription started). Press the run button, then publish one.
subscription LargeTransactions {
  transactions(minValue: "1000000000000000000") { txHash value status seq }
}
"""
    ),
    Example(
        """# Live consensus, latest-wins: a slow reader gets the newest state, not a backlog.
subscription Consensus {
  consensus(latest: true) { epoch round state leader performanceScore }
}
"""
    ),
    Example(
        """# Publish a transaction (needs the publish scope when tokens are on).
mutation PublishTransaction {
  publish(transactions: [{
    timestamp: "2025-10-25T09:35:02Z"
    txHash: "0xabababababababababababababababababababababababababababababababab"
    from: "0x1111111111111111111111111111111111111111"
    to: "0x2222222222222222222222222222222222222222"
    value: "2000000000000000000"
    status: PENDING
    gasUsed: 21000
  }]) { stream accepted seqs }
}
"""
    ),
)
