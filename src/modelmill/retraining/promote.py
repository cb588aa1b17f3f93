"""Where a champion lives and how a challenger takes its place: the folder of versions (the
next version folder written whole or not at all), the hidden ``.shadow/`` folder of a
challenger run in shadow, and the running service's admin calls."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelmill.bundle import Bundle, read_bundle, resolve_bundle_dir
from modelmill.errors import ServingError
from modelmill.serving.versions import SHADOW_FOLDER, ModelRoot

LOCK_FILE = ".retrain.lock"


class VersionFolder:
    """A folder of versions (``1/``, ``2/``, …), the only thing a challenger can be
    promoted into: a single bundle has no next version."""

    def __init__(self, path: Path) -> None:
        self.root = ModelRoot(path)
        if self.root.single is not None:
            raise ServingError(f"--versions {path} is one bundle, not a folder of versions (1/, 2/, … each a bundle): "
                               "a promotion writes the next version folder beside the others. Fix: move the bundle "
                               f"to {path}/1/ and serve the folder (modelmill serve {path})")
        self.path = self.root.path

    def bundle(self, version: str) -> Bundle:
        return read_bundle(resolve_bundle_dir(self.path / version))

    def next_version(self, taken: Iterable[str] = ()) -> str:
        """One more than any version, broken version, challenger in shadow or name in
        ``taken`` (the challengers the audit knows, whose folders may be gone)."""
        shadows = self.path / SHADOW_FOLDER
        names = [*(p.name for p in self.path.iterdir()), *taken,
                 *((p.name for p in shadows.iterdir()) if shadows.is_dir() else ())]
        return str(max((int(name) for name in names if name.isdigit()), default=0) + 1)

    def add(self, bundle: Path, version: str, *, shadow: bool = False) -> Path:
        """Copy ``bundle`` to the version folder ``version`` (under ``.shadow/`` for a shadow):
        copied beside it first, then renamed into place, so that a server (re)starting never
        sees half a version."""
        parent = self.path / SHADOW_FOLDER if shadow else self.path
        parent.mkdir(exist_ok=True)
        target = parent / version
        if target.exists():
            raise ServingError(f"{target} exists already; versions are never overwritten")
        temporary = parent / f".{version}.tmp-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.copytree(bundle, temporary)
        os.rename(temporary, target)
        return target

    def promote_shadow(self, version: str) -> Path:
        """The shadow ``version`` becomes the version of that name (one rename)."""
        source, target = self.path / SHADOW_FOLDER / version, self.path / version
        if target.exists():
            raise ServingError(f"{target} exists already; versions are never overwritten")
        os.rename(source, target)
        return target

    def remove(self, version: str, *, shadow: bool = False) -> None:
        shutil.rmtree((self.path / SHADOW_FOLDER if shadow else self.path) / version, ignore_errors=True)

    def shadow_bundle(self, version: str) -> Bundle:
        return read_bundle(resolve_bundle_dir(self.path / SHADOW_FOLDER / version))

    @contextmanager
    def lock(self, waiting: Any = None) -> Iterator[None]:
        """One retraining at a time per folder (``watch`` and a ``retrain`` from cron): a
        second one waits for the first to end."""
        with open(self.path / LOCK_FILE, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting("another retraining of this folder runs; waiting for it to end")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Service:
    """The running service a promotion reloads: checked before anything is trained."""

    url: str
    token_env: str
    served: dict[str, Any]

    @classmethod
    def connect(cls, url: str, token_env: str, folder: VersionFolder) -> Service:
        """The service at ``url``, which must serve a version of ``folder``."""
        service = cls.reach(url, token_env)
        served = service.served
        if served.get("registry"):  # /v1/model says version_folder: false for a registered model too
            raise ServingError(f"--serve {url} serves a registered model ({served['registry'].get('model')!r} from "
                               "MLflow), not a folder of versions. Fix: set monitoring.retrain.registry to "
                               "models:/NAME@ALIAS in the config instead of --versions")
        if served.get("version_folder") is False:
            raise ServingError(f"--serve {url} serves a single bundle, not a folder of versions: it cannot reload a "
                               f"new version. Fix: serve the folder (modelmill serve {folder.path})")
        version = str(served.get("version"))
        if version not in folder.root.versions():
            raise ServingError(f"--serve {url} serves version {version!r}, which {folder.path} does not hold "
                               f"(versions: {', '.join(folder.root.versions())}). Fix: give the folder that "
                               "service serves as --versions")
        manifest = folder.bundle(version).manifest
        if served.get("created_at") != manifest.get("created_at") or served.get("name") != manifest.get("name"):
            raise ServingError(f"--serve {url} serves a version {version!r} that is not the one in {folder.path}. "
                               "Fix: give the folder that service serves as --versions")
        return service

    @classmethod
    def reach(cls, url: str, token_env: str) -> Service:
        """The service at ``url`` as it describes itself (``/v1/model``), its admin token known."""
        from modelmill.serving.client import Client

        token = os.environ.get(token_env, "")
        if not token:
            raise ServingError(f"--serve {url}: promotion calls the service's POST /v1/admin/reload, which needs its "
                               f"admin token. Fix: set {token_env} to the token the service was started with")
        with Client(url, admin_token=token, retries=1, timeout=10) as client:
            try:
                served = client.model()
            except ServingError as exc:
                raise ServingError(f"--serve: the service does not answer ({exc}). Fix: check the URL and that "
                                   "modelmill serve runs there") from None
        return cls(url, token_env, served)

    @property
    def version(self) -> str:
        return str(self.served["version"])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        from modelmill.serving.client import Client

        with Client(self.url, admin_token=os.environ.get(self.token_env, ""), retries=3, timeout=120) as client:
            return dict(client.admin(method, path, body))

    def reload(self, version: str | None) -> dict[str, Any]:
        """Serve ``version``; None: the newest (a service serving a registry alias resolves it again)."""
        return self.call("POST", "/v1/admin/reload", None if version is None else {"version": version})

    def shadow(self, version: str | None) -> dict[str, Any]:
        if version is None:
            return self.call("DELETE", "/v1/admin/shadow")
        return self.call("POST", "/v1/admin/shadow", {"version": version})

    def model(self) -> dict[str, Any]:
        from modelmill.serving.client import Client

        with Client(self.url, retries=1, timeout=10) as client:
            return client.model()
