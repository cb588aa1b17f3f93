"""What every endpoint of the service checks before its own work: the capped body reader,
the admin token (and loopback rule) and the API keys, shared by the predict and forecast
routes."""

from __future__ import annotations

import hmac
import ipaddress
import os

from fastapi import Request

from modelmill.config.serving import ServingConfig
from modelmill.serving.problem import Problem


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "invalid_length", "the Content-Length header is not a number")
        if int(declared) > limit:
            raise Problem(413, "too_large", f"the body has {declared} bytes; the limit is {limit}. "
                          "Fix: send fewer records per request")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "too_large", f"the body passes the limit of {limit} bytes. "
                          "Fix: send fewer records per request")
        chunks.append(chunk)
    return b"".join(chunks)


def api_keys(settings: ServingConfig) -> list[str]:
    """The API keys of the environment variable ``serving.api_keys_env`` (none: no key needed)."""
    return [key.strip() for key in os.environ.get(settings.api_keys_env, "").split(",") if key.strip()]


def check_api_key(request: Request, keys: list[str]) -> None:
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip().encode()
    # every key compared, in constant time: the answer's timing tells nothing about the keys
    if not given or not any([hmac.compare_digest(given, key.encode()) for key in keys]):
        raise Problem(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer KEY'",
                      headers={"WWW-Authenticate": "Bearer"})


def check_admin(request: Request, settings: ServingConfig) -> None:
    client = request.client.host if request.client else ""
    if not settings.admin_remote and not _is_loopback(client):
        raise Problem(403, "forbidden", "admin calls are accepted from this host only "
                      "(serving.admin_remote is off)")
    token = os.environ.get(settings.admin_token_env, "")
    if not token:
        raise Problem(403, "admin_disabled", f"admin endpoints are off: start the server with the "
                      f"environment variable {settings.admin_token_env} set to a secret token")
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(401, "unauthorized", "missing or wrong admin token: send 'Authorization: Bearer TOKEN'",
                      headers={"WWW-Authenticate": "Bearer"})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
