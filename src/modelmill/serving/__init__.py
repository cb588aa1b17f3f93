"""The REST service: a bundle (or a folder of versions) behind FastAPI and uvicorn."""

from modelmill.serving.client import Client

__all__ = ["Client"]
