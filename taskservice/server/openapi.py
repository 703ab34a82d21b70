"""`GET /v1/openapi.json`: the API's OpenAPI 3.1 document, as checked in.

The document is package data (`openapi.json` beside this module), read with
`importlib.resources`, so an installed wheel (or a zip) serves it as well as
a checkout. `docs/gen_openapi.py` writes it, and its copy `docs/openapi.json`,
from the app's routes, the `wire` Structs and the error handler; a test
keeps both equal to what the generator produces and checks real answers
against it.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["DOCUMENT", "document", "openapi_json"]

DOCUMENT: Final = "openapi.json"
"""The document's file name in this package."""


@functools.cache
def document() -> bytes:
    """The checked-in document's bytes (read once)."""
    return files(__package__).joinpath(DOCUMENT).read_bytes()


async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of this API."""
    return Response(await run_in_threadpool(document), media_type="application/json")
