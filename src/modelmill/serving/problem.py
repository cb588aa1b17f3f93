"""The one error type a request handler raises: an HTTP status, a stable code, a message
safe to show to a remote caller (no paths, no stack traces)."""

from __future__ import annotations

import re
from typing import Any

from modelmill.errors import ServingError

_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s'\"/]+/)*([^\s'\"/]+)")


class Problem(ServingError):
    def __init__(self, status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error, "request_id": request_id}


def without_paths(message: str) -> str:
    """A message with every absolute path cut to its last component, for remote callers."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), message)
