"""Does the server filter ``/ws/transactions`` by ``?address=``? Asked by behaviour.

Two subscribers filter on two different addresses; one transaction from the
first address is published. Filtering works if the first subscriber gets it
and the second does not. Anything else is a reason to skip scenario 4.
"""

from __future__ import annotations

import http.client
import time

import orjson
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from bench.client import iso_us
from bench.publisher import transaction

__all__ = ["probe_address_filter"]

HOST = "127.0.0.1"
A = "0x" + "a1" * 20
B = "0x" + "b2" * 20


def _subscribe(port: int, address: str) -> ClientConnection:
    return connect(
        f"ws://{HOST}:{port}/ws/transactions?address={address}", open_timeout=5, compression=None
    )


def probe_address_filter(port: int, ingest_path: str) -> str | None:
    """None if ``?address=`` filters; otherwise why scenario 4 cannot run."""
    try:
        sub_a = _subscribe(port, A)
        sub_b = _subscribe(port, B)
    except InvalidStatus as exc:
        body = exc.response.body or b""
        return (
            f"the server refuses /ws/transactions?address= (HTTP {exc.response.status_code}: "
            f"{body[:200].decode(errors='replace')})"
        )
    except (OSError, WebSocketException) as exc:
        return f"cannot connect with ?address=: {exc}"
    with sub_a, sub_b:
        event = transaction(int(time.time()), iso_us(time.time_ns() // 1000), A)
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request(
                "POST",
                ingest_path,
                body=orjson.dumps([event]),
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            reply = response.read()
        finally:
            conn.close()
        if response.status != 200:
            return (
                f"publishing the probe transaction failed: HTTP {response.status} {reply[:200]!r}"
            )
        try:
            got_a = orjson.loads(sub_a.recv(timeout=3))
        except TimeoutError:
            return "a subscriber filtering on the sender's address did not receive its transaction"
        if got_a.get("txHash") != event["txHash"]:
            return "a subscriber filtering on the sender's address received another message"
        try:
            sub_b.recv(timeout=0.5)
        except TimeoutError:
            return None
        return (
            "the server ignores ?address= (a subscriber filtering on another address "
            "received the transaction)"
        )
