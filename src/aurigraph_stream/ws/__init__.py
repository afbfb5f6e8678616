"""WebSocket connections: the session state machine, its asyncio glue, upgrades and commands."""
