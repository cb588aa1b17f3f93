"""A registered model as the root a server's versions come from: ``modelmill serve
models:/credit@champion``. Its versions are the registry's version numbers; each is fetched
(and verified) into the local cache before it is loaded, and the folder of that cache is the
root's path. Unlike a folder of versions it never falls back: a server asked for what the
alias names serves that version or does not start, never silently an older one.

Resolving an alias and fetching a version talk to the tracking server: callers on the event
loop run them in a thread (see :meth:`ServerState._switch`), and a registry that never answers
fails them in bounded time (``tracking.client.SERVING_TIMEOUT``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from modelmill.bundle import MANIFEST
from modelmill.errors import KEY_ERRORS, ModelmillError, TrackingError
from modelmill.serving.problem import Problem, without_paths
from modelmill.serving.versions import ModelRoot, is_version_dir, version_order
from modelmill.tracking import tags
from modelmill.tracking.client import (URI_VARIABLE, failure, mlflow_client, redact, serving_timeout_default,
                                       tracking_uri)
from modelmill.tracking.fetch import cache_folder, fetch_version
from modelmill.tracking.registry import (VERSION, ModelRef, NotRegistered, get_version,
                                        parse_model_uri, resolve)


def open_model_root(path: str | Path) -> ModelRoot:
    """The root of ``serve PATH``: a registered model for a ``models:/…`` URI, else a bundle,
    a run or a folder of versions on disk."""
    from modelmill.tracking.registry import is_model_uri

    if isinstance(path, str) and is_model_uri(path):
        serving_timeout_default()
        return RegistryRoot(parse_model_uri(path))
    return ModelRoot(Path(path))


class RegistryRoot(ModelRoot):
    """The versions of one registered model, as fetched into the cache. ``newest()`` is what
    the URI names now: the alias resolved again (or the newest version, or the pinned one).
    A cached copy is served only once it has been checked against the version as the registry
    has it now (see :func:`~modelmill.tracking.fetch.fetch_version`)."""

    def __init__(self, ref: ModelRef, uri: str | None = None) -> None:
        found = uri or tracking_uri()
        if found is None:
            raise TrackingError(f"serving {ref} needs the MLflow tracking server that holds the model registry. "
                                f"Fix: set {URI_VARIABLE}=http://HOST:5000")
        self.ref, self.uri = ref, found
        self.path = cache_folder(found, ref.name)
        self.single = None
        self._client: Any = None
        self._found: dict[str, Any] = {}  # version → the ModelVersion last asked for (its tag, its source)
        self._checked: dict[str, tuple[str, str]] = {}  # version → (tag, sha256 of the cached manifest) checked
        self._start: Any = None  # a worker's first version, as its parent resolved it (see start_with)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = mlflow_client(self.uri)
        return self._client

    def newest(self) -> str:
        """The version the URI names now, fetched and verified (network I/O: not on the event loop)."""
        def step() -> str:
            found = resolve(self.client, self.ref, self.uri)
            self._fetch(found)
            return str(found.version)

        return self._fetching(step, str(self.ref))

    @property
    def falls_back(self) -> bool:
        return False

    def versions(self) -> list[str]:
        """The versions fetched into the cache so far (what rollback and ``/v1/model`` list)."""
        if not self.path.is_dir():
            return []
        found = [c.name for c in self.path.iterdir() if VERSION.fullmatch(c.name) and is_version_dir(c)]
        return sorted(found, key=version_order)

    def first_versions(self) -> list[str]:
        if self._start is not None:
            return [str(self._start.version)]
        return [self.newest()]

    def pinned(self, version: str) -> dict[str, Any]:
        """What a worker needs to start with ``version`` (as resolved here) without asking the
        registry again: its number, the digest it is checked against and where it is fetched from."""
        found = self._found[version]
        return {"version": str(found.version), "sha256": dict(found.tags or {}).get(tags.BUNDLE_SHA256),
                "source": found.source}

    def start_with(self, pinned: dict[str, Any] | None) -> None:
        """A worker's first version is the one its parent resolved (:meth:`pinned`), checked
        against the digest the parent read: the alias is not resolved again (it may have moved
        since; the registry may be down). None: back to asking the registry (after the start)."""
        if pinned is None:
            self._start = None
            return
        self._start = SimpleNamespace(name=self.ref.name, version=str(pinned["version"]), source=pinned["source"],
                                      tags={tags.BUNDLE_SHA256: pinned["sha256"]} if pinned.get("sha256") else {})

    def older_versions(self, version: str) -> list[str]:
        if self.ref.alias is not None:
            fix = (f"point the alias back with `modelmill promote {self.ref.name} VERSION --alias {self.ref.alias}`, "
                   "then POST /v1/admin/reload (or POST /v1/admin/reload with {\"version\": \"N\"})")
        else:
            fix = "POST /v1/admin/reload with {\"version\": \"N\"}"
        raise Problem(409, "nothing_to_roll_back",
                      f"this server has served no version of registered model {self.ref.name!r} before version "
                      f"{version} since it started. Fix: {fix}")

    def locate(self, version: str) -> Path:
        """The cached copy of registry version ``version``, checked against the version's tag as
        the registry has it now (fetched again when it is not that version's bundle, fetched
        first when not there yet)."""
        if not VERSION.fullmatch(version):
            raise Problem(404, "unknown_version", f"version {version[:64]!r} is no version of registered model "
                          f"{self.ref.name!r}: registry versions are numbers 1, 2, …")
        start = self._start
        if start is not None and str(start.version) == version:
            return Path(self._fetching(lambda: self._fetch(start), f"version {version} of {self.ref.name!r}"))

        def step() -> str:
            return self._fetch(get_version(self.client, self.uri, self.ref.name, version))

        return Path(self._fetching(step, f"version {version} of {self.ref.name!r}"))

    def locate_shadow(self, name: str) -> Path:
        """A registered model has no ``.shadow/`` folder of challengers: refused, saying what to do."""
        raise Problem(409, "no_shadow_folder",
                      f"--shadow {name[:64]}: a server of registered model {self.ref} has no .shadow/ folder of "
                      "challengers (its versions come from the registry). Fix: serve without --shadow, or serve a "
                      "folder of versions holding .shadow/NAME/ (the challenger's bundle)")

    def registry_info(self, version: str) -> dict[str, Any] | None:
        """What ``/v1/model`` says of the registry: the registered model, the served version, the
        alias this server follows (none for ``models:/NAME/7`` or ``models:/NAME``), the server."""
        return {"model": self.ref.name, "version": version, "alias": self.ref.alias,
                "tracking_uri": redact(self.uri)}

    def _fetch(self, found: Any) -> str:
        """The verified cached copy of ``found`` (its folder): one already checked against this
        same tag in this process and unchanged since is not read again (a load locates a version
        twice); the files are verified again on load anyway."""
        number = str(found.version)
        self._found[number] = found
        tag = str(dict(found.tags or {}).get(tags.BUNDLE_SHA256, ""))
        folder = self.path / number
        checked = self._checked.get(number)
        if checked is not None and checked[0] == tag and tag:
            try:
                if hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest() == checked[1]:
                    return str(folder)
            except OSError:
                pass
        path = fetch_version(self.client, self.uri, found)
        self._checked[number] = (tag, hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest())
        return str(path)

    def _fetching(self, step: Any, what: str) -> str:
        """``step()``, its failures as 4xx answers (a server that cannot start says the same)."""
        try:
            return str(step())
        except Problem:
            raise
        except KEY_ERRORS as exc:
            raise Problem(409, "key_mismatch", without_paths(str(exc))) from None
        except NotRegistered as exc:
            raise Problem(404, "unknown_version", f"{what}: {exc}") from None
        except TrackingError as exc:
            raise Problem(409, "fetch_failed", f"{what}: {exc}") from None
        except ModelmillError as exc:
            raise Problem(409, "fetch_failed", f"{what}: {without_paths(str(exc))}") from None
        except Exception as exc:  # MLflow's own errors, a download's: a 409 saying why, never a 500
            raise Problem(409, "fetch_failed", f"{what}: the registry at {redact(self.uri)} failed: "
                          f"{without_paths(failure(exc))}") from None
