"""Where versions come from: one bundle (or run) directory, or a folder of versions
(``1/``, ``2/``, … each a bundle or a run). Names of versions that come from requests go
through :func:`modelmill.paths.safe_child` before they touch the filesystem. Nothing here
loads a model (or imports torch), so a wrong path fails at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelmill.bundle import CONFIG, MANIFEST, resolve_bundle_dir
from modelmill.errors import BundleError, ModelmillError, ServingError
from modelmill.paths import UnsafePathError, safe_child
from modelmill.serving.problem import Problem, without_paths


def version_order(name: str) -> tuple[int, int, str]:
    """Numbers compare as numbers (2 before 10); other names alphabetically, after them."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


SHADOW_FOLDER = ".shadow"  # challengers for shadow mode: a hidden folder, so never served as a version


class ModelRoot:
    """Where versions come from: one bundle, or a folder of version folders."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.single: str | None = None
        try:
            bundle_dir = resolve_bundle_dir(self.path)
        except BundleError:
            if not self.path.is_dir():
                raise ServingError(f"{path} does not exist. Fix: give a bundle, a run directory, "
                                   "or a folder of versions (1/, 2/, … each a bundle)") from None
        else:
            self.single = bundle_dir.parent.name if bundle_dir.name == "bundle" else bundle_dir.name
        if not self.versions():
            raise ServingError(f"{path} holds no bundle: expected a bundle, a run directory, or a "
                               "folder of versions (1/, 2/, … each a bundle or a run)")

    @property
    def falls_back(self) -> bool:
        """Whether a version that fails to read or load at start gives way to the next older one
        (a folder of versions); a single bundle, or a registered model's alias, serves what was
        asked for or nothing."""
        return self.single is None

    def first_versions(self) -> list[str]:
        """The versions a server tries at start, best first."""
        return list(reversed(self.versions()))

    def older_versions(self, version: str) -> list[str]:
        """What a rollback with no history goes back to: the versions older than ``version``."""
        return [v for v in self.versions() if version_order(v) < version_order(version)]

    def registry_info(self, version: str) -> dict[str, Any] | None:
        """The model registry ``version`` came from, for ``/v1/model`` (none for folders on disk)."""
        return None

    def versions(self) -> list[str]:
        """Known version names, oldest first."""
        if self.single is not None:
            return [self.single]
        found = []
        for child in self.path.iterdir():
            if child.name.startswith(".") or not child.is_dir():
                continue
            try:
                safe_child(self.path, child.name)
            except ModelmillError:
                continue
            if is_version_dir(child):
                found.append(child.name)
        return sorted(found, key=version_order)

    def newest(self) -> str:
        versions = self.versions()
        if not versions:
            raise Problem(409, "no_versions", "the model folder holds no bundle any more")
        return versions[-1]

    def locate(self, version: str) -> Path:
        """The directory of a version named in a request; 400 for unsafe names, 404 if absent."""
        if self.single is not None:
            if version != self.single:
                raise Problem(404, "unknown_version",
                              f"version {version[:64]!r} is not served here; this server serves one "
                              f"bundle, version {self.single!r}")
            return self.path
        try:
            path = safe_child(self.path, version)
        except UnsafePathError as exc:
            raise Problem(400, "invalid_version", str(exc)) from None
        if not is_version_dir(path):
            known = ", ".join(self.versions()[-10:])
            raise Problem(404, "unknown_version",
                          f"version {version!r} does not exist; known versions: {known}")
        return path

    def locate_shadow(self, name: str) -> Path:
        """The directory of a challenger for shadow mode, ``.shadow/NAME/`` in the model folder
        (a bundle or a run): hidden, so that no reload or restart ever serves it. 400 for
        unsafe names, 404 if absent."""
        folder = self.path / SHADOW_FOLDER
        try:
            path = safe_child(folder, name)
        except UnsafePathError as exc:
            raise Problem(400, "invalid_version", str(exc)) from None
        if not is_version_dir(path):
            known = sorted(c.name for c in folder.iterdir() if is_version_dir(c)) if folder.is_dir() else []
            raise Problem(404, "unknown_version",
                          f"no challenger {name!r} in {SHADOW_FOLDER}/ of the model folder; known: "
                          f"{', '.join(known[:10]) or 'none'}. Fix: copy its bundle or run to "
                          f"{SHADOW_FOLDER}/{name}/")
        return path


def is_version_dir(path: Path) -> bool:
    """A folder of the model folder is a version when it holds a manifest, a bundle's config
    or a ``bundle/`` (a run): one whose manifest is damaged or missing (a copy cut short) is
    then a broken version, reported as such, not a folder silently passed over. (A bundle
    being written is staged in a hidden sibling, never seen here.)"""
    return any((path / name).exists() for name in (MANIFEST, CONFIG, "bundle"))


def load_failure(root: ModelRoot, version: str, exc: Exception) -> Problem:
    """The 409 for a version that failed to read, verify, build or warm up: a message
    without paths (paths inside the model folder are shown relative to it)."""
    text = str(exc) if isinstance(exc, ModelmillError) else f"{type(exc).__name__}: {exc}"
    message = without_paths(text.replace(str(root.path) + "/", ""))
    return Problem(409, "load_failed", f"version {version!r} failed to load or warm up: {message[:500]}")
