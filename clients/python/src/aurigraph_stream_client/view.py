"""How ``aurigraph-stream listen`` shows what arrives: JSON lines, a live view, or plain lines.

- :class:`JsonLines` (``--json``): one JSON object per line. Stream messages as
  the server sent them (they have no ``type`` key); a gap, a snapshot and the
  connection's events as objects whose ``type`` says which (``gap``,
  ``snapshot``, ``connected``, ``disconnected``, ``refreshed``).
- :class:`RichView` (the default, with the ``cli`` extra): a table that updates
  in place for ``metrics`` and ``consensus``, a scrolling feed for the other
  streams, and reconnects and gaps as they happen.
- :class:`PlainView`: the same as plain lines, when rich is not installed.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Mapping
from typing import IO, Any, Protocol

import orjson

from .events import Connected, ConnectionEvent, Disconnected, Gap, Snapshot, TokenRefreshed

__all__ = ["JsonLines", "PlainView", "RichView", "View", "make_view"]

TABLE_STREAMS = ("metrics", "consensus")  # one current state: shown as a table that updates


class View(Protocol):
    def message(self, msg: Mapping[str, Any]) -> None: ...

    def gap(self, gap: Gap) -> None: ...

    def snapshot(self, snapshot: Snapshot[Any]) -> None: ...

    def event(self, event: ConnectionEvent) -> None: ...

    def close(self) -> None: ...


class JsonLines:
    """``--json``: one object per line, flushed, for pipes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def _line(self, value: Any) -> None:
        self.out.write(orjson.dumps(value).decode() + "\n")
        self.out.flush()

    def message(self, msg: Mapping[str, Any]) -> None:
        self._line(msg)

    def gap(self, gap: Gap) -> None:
        self._line(gap.to_json())

    def snapshot(self, snapshot: Snapshot[Any]) -> None:
        self._line(snapshot.to_json())

    def event(self, event: ConnectionEvent) -> None:
        self._line(event.to_json())

    def close(self) -> None:
        self.out.flush()


def describe_event(event: ConnectionEvent) -> str:
    """A connection event in a few words, for people."""
    if isinstance(event, Connected):
        return f"connected to {event.url}" + (
            f" (reconnect {event.attempt})" if event.attempt else ""
        )
    if isinstance(event, Disconnected):
        what = f"disconnected: {event.code} {event.reason}".rstrip()
        if event.retry_in is None:
            return what + "; not reconnecting"
        return what + f"; reconnecting in {event.retry_in:.1f} s"
    if isinstance(event, TokenRefreshed):
        return "token refreshed" + (
            f", expires {time.strftime('%H:%M:%S', time.localtime(event.expires_at))}"
            if event.expires_at is not None
            else ""
        )
    return str(event)


def describe_gap(gap: Gap) -> str:
    if gap.old_epoch != gap.new_epoch:
        lost = "the server lost its history (new epoch)"
    else:
        lost = f"{gap.missed} messages missed" if gap.missed is not None else "messages missed"
    return f"GAP in {gap.stream}: {lost}; resuming after seq {gap.resume_seq}"


def feed_line(msg: Mapping[str, Any]) -> str:
    """A stream message on one line: seq first, long hex values shortened."""
    parts = [f"#{msg.get('seq')}"]
    for key, value in msg.items():
        if key in ("seq", "timestamp"):
            continue
        text = str(value)
        if text.startswith("0x") and len(text) > 20:
            text = text[:10] + "…" + text[-6:]
        parts.append(f"{key}={text}")
    return "  ".join(parts)


class PlainView:
    """Readable lines without rich: each message, gap and event as it happens."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def message(self, msg: Mapping[str, Any]) -> None:
        self._line(feed_line(msg))

    def gap(self, gap: Gap) -> None:
        self._line("!! " + describe_gap(gap))

    def snapshot(self, snapshot: Snapshot[Any]) -> None:
        self._line(f"snapshot of {snapshot.stream}: {len(snapshot.items)} items")
        for item in snapshot.items:
            self._line("  " + feed_line(item))

    def event(self, event: ConnectionEvent) -> None:
        self._line("-- " + describe_event(event))

    def close(self) -> None:
        self.out.flush()


class RichView:
    """The live terminal view (rich): a table for one-state streams, a feed for the others."""

    def __init__(self, stream: str, out: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.stream = stream
        self.console = Console(file=out, highlight=False)
        self.latest: Mapping[str, Any] = {}
        self.received = 0
        self.state = "connecting"
        self.notes: deque[str] = deque(maxlen=6)
        self.live: Live | None = None
        if stream in TABLE_STREAMS:
            self.live = Live(self._table(), console=self.console, refresh_per_second=4)
            self.live.start()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.stream}  ·  {self.state}", title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", justify="right")
        for key, value in self.latest.items():
            table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
        table.add_row("messages", str(self.received), style="dim")
        for note in self.notes:
            table.add_row("", note, style="yellow")
        return table

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())

    def message(self, msg: Mapping[str, Any]) -> None:
        self.received += 1
        if self.live is not None:
            self.latest = msg
            self._refresh()
        else:
            self.console.print(feed_line(msg), markup=False)

    def _note(self, text: str, style: str) -> None:
        if self.live is not None:
            self.notes.append(text)
            self._refresh()
        else:
            self.console.print(text, style=style, markup=False)

    def gap(self, gap: Gap) -> None:
        self._note(describe_gap(gap), "bold red")

    def snapshot(self, snapshot: Snapshot[Any]) -> None:
        self._note(f"snapshot: {len(snapshot.items)} {snapshot.stream}", "cyan")
        if self.live is None:
            for item in snapshot.items:
                self.console.print("  " + feed_line(item), markup=False, style="cyan")

    def event(self, event: ConnectionEvent) -> None:
        if isinstance(event, Connected):
            self.state = "connected"
        elif isinstance(event, Disconnected):
            self.state = "reconnecting" if event.retry_in is not None else "stopped"
        self._note(describe_event(event), "green" if isinstance(event, Connected) else "yellow")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def make_view(stream: str, as_json: bool, out: IO[str] | None = None) -> View:
    """``--json`` lines, else the rich view when rich is installed, else plain lines."""
    out = out if out is not None else sys.stdout
    if as_json:
        return JsonLines(out)
    try:
        import rich  # noqa: F401
    except ImportError:
        return PlainView(out)
    return RichView(stream, out)
