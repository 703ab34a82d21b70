"""The server tests' fixtures: a service served over real uvicorn on loopback."""

from tests.server.conftest import durability, serve

__all__ = ["durability", "serve"]
