"""HTTP on the WebSocket port: the FastAPI app, ingest, CORS, and the guarded HTTP protocol."""
