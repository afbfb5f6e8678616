"""API documentation served by the server: OpenAPI, AsyncAPI, the /q/dev/ page and assets."""
