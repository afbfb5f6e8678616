"""Sans-I/O WebSocket pieces: handshake, frames, permessage-deflate.

Nothing here touches a socket; :mod:`aurigraph_stream.ws.connection`
feeds bytes in and writes the bytes these functions return.
"""
