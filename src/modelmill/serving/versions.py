"""Where versions come from: one bundle (or run) directory, or a folder of versions
(``1/``, ``2/``, … each a bundle or a run). Names of versions that come from requests go
through :func:`modelmill.paths.safe_child` before they touch the filesystem. Nothing here
loads a model (or imports torch), so a wrong path fails at once.
"""

from __future__ import annotations

from pathlib import Path

from modelmill.bundle import resolve_bundle_dir
from modelmill.errors import BundleError, ModelmillError, ServingError
from modelmill.paths import UnsafePathError, safe_child
from modelmill.serving.problem import Problem


def version_order(name: str) -> tuple[int, int, str]:
    """Numbers compare as numbers (2 before 10); other names alphabetically, after them."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


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
                resolve_bundle_dir(child)
            except ModelmillError:
                continue
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
        try:
            resolve_bundle_dir(path)
        except BundleError:
            known = ", ".join(self.versions()[-10:])
            raise Problem(404, "unknown_version",
                          f"version {version!r} does not exist; known versions: {known}") from None
        return path
