"""Reference server: the common Python choice, ``websockets`` with ``broadcast()``.

Subscribers connect to ``/ws/{stream}``; a publisher connects to
``/publish/{stream}`` and every text message it sends is handed, unchanged, to
``websockets.broadcast()`` for that stream's subscribers. This is the pattern
the websockets documentation recommends for fan-out, with the library's
defaults (permessage-deflate offered, keepalive pings), on uvloop.

Run: ``python -m bench.refserver --port PORT``.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.procstat import run_reference

__all__ = ["main"]


async def _serve(host: str, port: int) -> None:
    streams: dict[str, set[ServerConnection]] = {}

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        kind, _, stream = path.strip("/").partition("/")
        if kind == "publish":
            subscribers = streams.setdefault(stream, set())
            async for message in ws:
                broadcast(subscribers, message)
        elif kind == "ws":
            subscribers = streams.setdefault(stream, set())
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)

    async with serve(handler, host, port, backlog=4096, max_size=1 << 20) as server:
        print(f"ready on {host}:{port}", flush=True)
        await server.serve_forever()


def main() -> None:
    run_reference(__doc__ or "", _serve)


if __name__ == "__main__":
    main()
