"""``modelmill dashboard``: a read-only web page a team keeps open beside a served model.

It shows what :func:`modelmill.monitoring.watch.monitor_log` finds in the prediction log
(traffic, drift per column, performance, alarms) and the model's versions with their test
metrics. The summary is computed in a worker thread at most every ``refresh_s`` seconds and
shared by every viewer; the page (static HTML, CSS and JS from the package, Chart.js
vendored beside them: no CDN, no network at page time) fetches ``/api/summary`` and draws.

Bound to 127.0.0.1 by default, and then it answers only requests addressed to a loopback
name (a web page elsewhere cannot reach it by pointing its own domain at 127.0.0.1). On any
other address it needs a token (the environment variable ``MODELMILL_DASHBOARD_TOKEN``):
the data routes then ask for ``Authorization: Bearer TOKEN`` or the cookie that opening
``/?token=TOKEN`` once sets (HttpOnly, SameSite=Strict; the page then moves to ``/``, so the
token does not stay in the address bar or the browser's history).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.staticfiles import StaticFiles

from modelmill.bundle import Bundle, read_bundle, resolve_bundle_dir
from modelmill.errors import ModelmillError, ServingError
from modelmill.monitoring.store import database_message
from modelmill.monitoring.summary import Summary
from modelmill.serving.problem import Problem
from modelmill.serving.versions import ModelRoot, load_failure

log = logging.getLogger("modelmill.dashboard")
STATIC = Path(__file__).parent / "static"
TOKEN_ENV = "MODELMILL_DASHBOARD_TOKEN"
DECISIONS_SHOWN = 50  # retraining decisions on the page
OPEN_PATHS = ("/healthz",)  # what a load balancer probes without the token
OPEN_PREFIXES = ("/static/",)  # the page's own scripts and styles: nothing secret in them
COOKIE = "modelmill_dashboard"
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
# Scripts, styles and data come from the dashboard alone; the token in a page's URL is
# never sent on as a Referer.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
           "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

T = TypeVar("T")


class VersionInfo(BaseModel):
    """One version of the model folder and the metrics its bundle holds (test split)."""

    model_config = ConfigDict(extra="forbid")
    version: str
    created_at: str | None
    metrics: dict[str, Any]
    error: str | None = None


class Cached(Generic[T]):
    """A value computed in a worker thread at most every ``refresh_s`` seconds, shared by
    every request. A :class:`ModelmillError` is kept (and shown) like a value: an empty log
    is a state of the world, not a crash, and is not retried on every request either."""

    def __init__(self, compute: Callable[[], T], refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.compute = compute
        self.refresh_s = refresh_s
        self.clock = clock
        self._lock = asyncio.Lock()
        self._at: float | None = None
        self._value: T | None = None
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None  # the background refresh (kept: tasks are weakly held)

    async def get(self) -> tuple[T | None, str | None]:
        """The value and None, or None and the message of what went wrong. The first call
        waits for the computation; later ones get the last result at once while a stale one
        is recomputed in the background (viewers never wait for a refresh)."""
        if self._at is None:
            async with self._lock:  # viewers arriving together wait for one computation
                if self._at is None:
                    await self._refresh()
        elif self.clock() - self._at >= self.refresh_s and not self._lock.locked():
            self._task = asyncio.create_task(self._locked_refresh())
        return self._value, self._error

    async def _locked_refresh(self) -> None:
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        self._value, self._error = await asyncio.to_thread(self._attempt)
        self._at = self.clock()

    def _attempt(self) -> tuple[T | None, str | None]:
        try:
            return self.compute(), None
        except ModelmillError as exc:
            return None, str(exc)
        except (SQLAlchemyError, OSError) as exc:  # the database went away after the dashboard started
            return None, f"the prediction log cannot be read: {database_message(exc)}; retrying at the next refresh"
        except Exception:  # the page says so; the details go to the dashboard's log only
            log.exception("computing the dashboard's data failed")
            return None, "computing the summary failed unexpectedly; the dashboard's log has the details"


def read_versions(models: Path, loaded: dict[tuple[str, str], str | None] | None = None) -> list[VersionInfo]:
    """Every version under ``models`` (oldest first) with its bundle's test metrics, or the
    error of one that fails verification. With ``loaded`` (what was found, by version and
    manifest hash: each bundle is tried once) the newest versions that verify are also
    loaded and warmed as a restarted server would, down to the first that works, so that a
    version the server cannot serve does not look healthy."""
    root = ModelRoot(models)
    found = []
    working = loaded is None
    for version in reversed(root.versions()):
        where = root.path if root.single is not None else root.path / version
        try:
            bundle = read_bundle(resolve_bundle_dir(where))
        except ModelmillError as exc:  # one damaged version does not hide the others
            found.append(VersionInfo(version=version, created_at=None, metrics={}, error=str(exc)))
            continue
        error = None
        if loaded is not None and not working:
            error = _load_error(root, version, bundle, loaded)
            working = error is None
        created = bundle.manifest.get("created_at")
        found.append(VersionInfo(version=version, created_at=str(created) if created else None,
                                 metrics=bundle.metrics(), error=error))
    return found[::-1]


def _load_error(root: ModelRoot, version: str, bundle: Bundle,
                loaded: dict[tuple[str, str], str | None]) -> str | None:
    """Why ``version`` fails to load or warm up as the server loads it, or None."""
    key = (version, bundle.digest)
    if key not in loaded:
        from modelmill.serving.models import load_version  # torch, as the summary loads it anyway

        try:
            load_version(root, version, bundle.config().serving, bundle)
            loaded[key] = None
        except Exception as exc:
            loaded[key] = (exc if isinstance(exc, Problem) else load_failure(root, version, exc)).message
    return loaded[key]


def read_decisions(log_url: str, latest: int = DECISIONS_SHOWN) -> list[dict[str, Any]]:
    """The newest retraining decisions, newest first (``modelmill log decisions`` has all)."""
    from modelmill.monitoring.export import open_log

    store = open_log(log_url)
    try:
        return store.decisions(latest=latest)[::-1]
    finally:
        store.close()


def build_app(models: Path, log_url: str, *, refresh_s: float = 60.0, token: str | None = None,
              window: int | str | None = None, metric: str | None = None, version: str | None = None,
              summarise: Callable[[], Summary] | None = None, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The dashboard's app. ``summarise`` replaces ``monitor_log`` (tests, other sources);
    ``allowed_hosts``: the Host names it answers (None: any)."""
    if summarise is None:
        def summarise() -> Summary:
            from modelmill.monitoring.watch import monitor_log  # pandas and torch load with the first summary

            return monitor_log(models, log_url, window=window, metric=metric, version=version)

    summary = Cached(summarise, refresh_s)
    loaded: dict[tuple[str, str], str | None] = {}
    versions = Cached(lambda: read_versions(models, loaded), refresh_s)
    decisions = Cached(lambda: read_decisions(log_url), refresh_s)
    app = FastAPI(title="modelmill dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/summary")
    async def api_summary() -> JSONResponse:
        value, error = await summary.get()
        if value is None:
            return JSONResponse({"detail": error}, status_code=409, headers=HEADERS)
        return JSONResponse(value.model_dump(mode="json"), headers=HEADERS)

    @app.get("/api/versions")
    async def api_versions() -> JSONResponse:
        value, error = await versions.get()
        if value is None:
            return JSONResponse({"detail": error}, status_code=409, headers=HEADERS)
        return JSONResponse([v.model_dump(mode="json") for v in value], headers=HEADERS)

    @app.get("/api/decisions")
    async def api_decisions() -> JSONResponse:
        value, error = await decisions.get()
        if value is None:
            return JSONResponse({"detail": error}, status_code=409, headers=HEADERS)
        return JSONResponse(value, headers=HEADERS)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> Response:
        if token and "token" in request.query_params:  # the guard let it in: remember it, drop it from the URL
            moved = RedirectResponse("/", status_code=303, headers=HEADERS)
            moved.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return moved
        _, error = await summary.get()  # the message is in the page itself, readable without JS
        return HTMLResponse(render_page(refresh_s, error), headers=HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if token:
        app.add_middleware(_TokenGuard, token=token)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app


def render_page(refresh_s: float, error: str | None) -> str:
    """The page with its refresh interval and the error if any."""
    text = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    return (text.replace("__REFRESH_S__", f"{refresh_s:g}")
            .replace("__ERROR__", html.escape(error or "")).replace("__ERROR_HIDDEN__", "" if error else "hidden")
            .replace("__STATE__", "error" if error else "loading"))


# ------------------------------------------------------------------ security


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TokenGuard:
    """Pure ASGI middleware: every route but ``/healthz`` and the static files needs the
    token, from ``Authorization: Bearer``, the cookie, or (on the page, once) ``?token=``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": "missing or wrong token: open the page once as /?token=TOKEN, or "
                                 "send 'Authorization: Bearer TOKEN'"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        offered = []
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                offered.append(value.decode("latin-1").removeprefix("Bearer ").strip())
            elif key == b"cookie":
                cookies = SimpleCookie(value.decode("latin-1"))
                if COOKIE in cookies:
                    offered.append(cookies[COOKIE].value)
        if scope.get("path") == "/":
            offered.extend(parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [])
        return any(given and hmac.compare_digest(given.encode(), self.token) for given in offered)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard_token(host: str, token_env: str = TOKEN_ENV) -> str | None:
    """The token from ``token_env``; refuses a host other than loopback without one."""
    token = os.environ.get(token_env, "").strip() or None
    if token is None and not is_loopback(host):
        raise ServingError(f"the dashboard would be open to anyone who reaches {host}: it needs a token there. "
                           f"Fix: set the environment variable {token_env} to a secret (python -c 'import "
                           "secrets; print(secrets.token_urlsafe(32))'), or bind to 127.0.0.1")
    return token


# ------------------------------------------------------------------ running


@dataclass
class DashboardSettings:
    """What :func:`check_dashboard` found: ready to build the app."""

    refresh_s: float
    token: str | None


def check_dashboard(models: Path, log_url: str, *, host: str = "127.0.0.1", token_env: str = TOKEN_ENV,
                    window: int | str | None = None, metric: str | None = None, version: str | None = None,
                    refresh_s: float | None = None) -> DashboardSettings:
    """Every mistake found before a server starts: the model folder, the window and metric,
    the log, the token.

    Raises:
        ServingError: a path that holds no bundle, a log that cannot be opened, an exposed
            host without a token.
        ConfigError: a wrong ``window`` or ``metric``.
    """
    from modelmill.monitoring.export import open_log
    from modelmill.monitoring.watch import Monitor, Reference

    token = dashboard_token(host, token_env)
    if refresh_s is not None and refresh_s <= 0:
        raise ServingError(f"refresh_s {refresh_s} is not a positive number of seconds. Fix: give e.g. 60")
    monitor = Monitor(Reference.load(models, version), window=window, metric=metric)
    open_log(log_url).close()
    return DashboardSettings(refresh_s=refresh_s or monitor.settings.refresh_s, token=token)


def run_dashboard(models: Path, log_url: str, *, host: str = "127.0.0.1", port: int = 8050,
                  token_env: str = TOKEN_ENV, window: int | str | None = None, metric: str | None = None,
                  version: str | None = None, refresh_s: float | None = None) -> None:
    """Check everything, then serve the dashboard until stopped (Ctrl-C)."""
    import uvicorn

    settings = check_dashboard(models, log_url, host=host, token_env=token_env, window=window, metric=metric,
                               version=version, refresh_s=refresh_s)
    # on loopback only loopback names: a page elsewhere cannot point its own domain at it
    hosts = sorted({*LOOPBACK_NAMES, host}) if settings.token is None else None
    app = build_app(models, log_url, refresh_s=settings.refresh_s, token=settings.token, window=window,
                    metric=metric, version=version, allowed_hosts=hosts)
    # the first visit's URL holds the token (?token=): the access log would write it down
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=settings.token is None)
