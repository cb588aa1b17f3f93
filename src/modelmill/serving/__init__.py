"""The REST service: a bundle (or a folder of versions) behind FastAPI and uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelmill.serving.client import Client

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    # The client (httpx) on first use: the server and the CLI do not need it.
    if name == "Client":
        from modelmill.serving.client import Client

        return Client
    raise AttributeError(f"module 'modelmill.serving' has no attribute {name!r}")
