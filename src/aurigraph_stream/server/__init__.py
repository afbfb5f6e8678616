"""The I/O layer: ASGI app, WebSocket connections, uvicorn runner."""
