"""A registered model as the root a server's versions come from: ``modelmill serve
models:/credit@champion``. Its versions are the registry's version numbers; each is fetched
(and verified) into the local cache before it is loaded, and the folder of that cache is the
root's path. Unlike a folder of versions it never falls back: a server asked for what the
alias names serves that version or does not start, never silently an older one.

Resolving an alias and fetching a version talk to the tracking server: callers on the event
loop run them in a thread (see :meth:`ServerState._switch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelmill.errors import KEY_ERRORS, ModelmillError, TrackingError
from modelmill.serving.problem import Problem, without_paths
from modelmill.serving.versions import ModelRoot, is_version_dir, version_order
from modelmill.tracking.client import URI_VARIABLE, mlflow_client, redact, tracking_uri
from modelmill.tracking.registry import (ModelRef, NotRegistered, cache_folder, fetch_version, get_version,
                                        parse_model_uri, resolve)


def open_model_root(path: str | Path) -> ModelRoot:
    """The root of ``serve PATH``: a registered model for a ``models:/…`` URI, else a bundle,
    a run or a folder of versions on disk."""
    from modelmill.tracking.registry import is_model_uri

    if isinstance(path, str) and is_model_uri(path):
        return RegistryRoot(parse_model_uri(path))
    return ModelRoot(Path(path))


class RegistryRoot(ModelRoot):
    """The versions of one registered model, as fetched into the cache. ``newest()`` is what
    the URI names now: the alias resolved again (or the newest version, or the pinned one)."""

    def __init__(self, ref: ModelRef, uri: str | None = None) -> None:
        found = uri or tracking_uri()
        if found is None:
            raise TrackingError(f"serving {ref} needs the MLflow tracking server that holds the model registry. "
                                f"Fix: set {URI_VARIABLE}=http://HOST:5000")
        self.ref, self.uri = ref, found
        self.path = cache_folder(found, ref.name)
        self.single = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = mlflow_client(self.uri)
        return self._client

    def newest(self) -> str:
        """The version the URI names now, fetched and verified (network I/O: not on the event loop)."""
        return self._fetching(lambda: self._fetch(resolve(self.client, self.ref, self.uri)), str(self.ref))

    @property
    def falls_back(self) -> bool:
        return False

    def versions(self) -> list[str]:
        """The versions fetched into the cache so far (what rollback and ``/v1/model`` list)."""
        if not self.path.is_dir():
            return []
        found = [c.name for c in self.path.iterdir() if c.name.isdigit() and is_version_dir(c)]
        return sorted(found, key=version_order)

    def first_versions(self) -> list[str]:
        return [self.newest()]

    def older_versions(self, version: str) -> list[str]:
        raise Problem(409, "nothing_to_roll_back",
                      f"this server has served no version of registered model {self.ref.name!r} before version "
                      f"{version} since it started. Fix: POST /v1/admin/reload with {{\"version\": \"N\"}}")

    def locate(self, version: str) -> Path:
        """The cached copy of registry version ``version``, fetched first when not there yet."""
        if not version.isdigit() or len(version) > 18:
            raise Problem(404, "unknown_version", f"version {version[:64]!r} is no version of registered model "
                          f"{self.ref.name!r}: registry versions are numbers")
        path = self.path / version
        if is_version_dir(path):
            return path

        def fetch() -> str:
            return self._fetch(get_version(self.client, self.uri, self.ref.name, version))

        self._fetching(fetch, f"version {version} of {self.ref.name!r}")
        return path

    def registry_info(self, version: str) -> dict[str, Any] | None:
        """What ``/v1/model`` says of the registry: the registered model, the served version, the
        alias this server follows (none for ``models:/NAME/7`` or ``models:/NAME``), the server."""
        return {"model": self.ref.name, "version": version, "alias": self.ref.alias,
                "tracking_uri": redact(self.uri)}

    def _fetch(self, found: Any) -> str:
        fetch_version(self.client, self.uri, found)
        return str(found.version)

    def _fetching(self, step: Any, what: str) -> str:
        """``step()``, its failures as 4xx answers (a server that cannot start says the same)."""
        try:
            return str(step())
        except KEY_ERRORS as exc:
            raise Problem(409, "key_mismatch", without_paths(str(exc))) from None
        except NotRegistered as exc:
            raise Problem(404, "unknown_version", f"{what}: {exc}") from None
        except TrackingError as exc:
            raise Problem(409, "fetch_failed", f"{what}: {exc}") from None
        except ModelmillError as exc:
            raise Problem(409, "fetch_failed", f"{what}: {without_paths(str(exc))}") from None
