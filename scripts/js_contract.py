"""Print what the TypeScript client is generated from, as one JSON document.

The server's contract (close codes with their reason and reconnect rules, paths,
subprotocols, formats, filter options) and the JSON Schemas of the five
streams' messages, read from the modules the server runs on. The TypeScript
generator (clients/js/scripts/generate.mjs) turns it into
clients/js/src/generated/; ``make js-generate`` runs both, and
tests/integration/test_js_client.py fails when the committed files are stale.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from aurigraph_stream.codecs import CODECS
from aurigraph_stream.contract import (
    BEARER_PROTOCOL,
    LATEST_WINS_STREAMS,
    MUX_PATH,
    STREAM_PATH_PREFIX,
    SUBPROTOCOL_PREFIX,
    CloseCode,
)
from aurigraph_stream.streams import REGISTRY
from aurigraph_stream.subscription import SNAPSHOT_STREAMS, query_parameters

# Query parameters that are starting points or the format, not filters: the
# client sets them from its own options.
_NOT_FILTERS = frozenset(("replay", "since", "epoch", "format", "snapshot"))


def contract() -> dict[str, Any]:
    """The generator's input: everything the client must agree on with the server."""
    params = query_parameters()
    return {
        "closeCodes": [
            {
                "code": int(code),
                "name": code.name,
                "reason": code.reason,
                "reconnect": code.reconnect,
                "newToken": code.new_token,
            }
            for code in CloseCode
        ],
        "muxPath": MUX_PATH,
        "streamPathPrefix": STREAM_PATH_PREFIX,
        "subprotocolPrefix": SUBPROTOCOL_PREFIX,
        "bearerProtocol": BEARER_PROTOCOL,
        "formats": list(CODECS),
        "streams": list(REGISTRY),
        "snapshotStreams": list(SNAPSHOT_STREAMS),
        "latestWinsStreams": list(LATEST_WINS_STREAMS),
        "filterOptions": {
            name: sorted(set(params.get(name, {})) - _NOT_FILTERS) for name in REGISTRY
        },
        "messageSchemas": {name: dict(spec.message_schema) for name, spec in REGISTRY.items()},
    }


def main() -> None:
    sys.stdout.buffer.write(orjson.dumps(contract(), option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
