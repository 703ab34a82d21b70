"""The HTTP API of a running service (the `server` extra: Starlette and uvicorn).

`create_app(service, token=...)` is the API as an ASGI app (what
`service.asgi_app()` returns); `Serving` runs it with uvicorn on a thread
beside the service (what `taskservice serve --http` does).
"""

from .app import create_app
from .security import DEFAULT_MAX_BODY

__all__ = ["DEFAULT_MAX_BODY", "create_app"]
