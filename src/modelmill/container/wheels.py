"""The wheels an image installs from, gathered into its build context, so the image build
needs no index and no network (``pip install --no-index --find-links wheels``): builds are
reproducible and work where no registry or index is reachable.

modelmill's own wheel is built from the project's source (``pip wheel --no-deps``, in a copy
of the source, so the working tree gets no build litter); every other wheel is fetched by
``pip download`` with this environment's pip settings (its index, its find-links), or
taken from a wheelhouse folder the user names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import modelmill._version as version_module
from modelmill._version import __version__
from modelmill.errors import ModelmillError

SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "src")


class WheelError(ModelmillError):
    """A wheel the image needs cannot be built or fetched."""


def project_root() -> Path | None:
    """The source tree modelmill runs from (an editable or source install), or None."""
    root = Path(version_module.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "modelmill"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _pip(args: Sequence[str], *, what: str, timeout_s: float) -> None:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise WheelError(f"{what} took longer than {timeout_s:.0f} s. Fix: pass --wheelhouse with the wheels, "
                         "or retry where the package index answers faster") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise WheelError(f"{what} failed:\n{tail}\nFix: pass --wheelhouse DIR with the wheels (a folder of "
                         "*.whl, e.g. made by `pip download`), or make the package index reachable")


def modelmill_wheel(target: Path, *, wheelhouse: Path | None = None, timeout_s: float = 600) -> Path:
    """Put modelmill's wheel (this version) into ``target``: from ``wheelhouse`` if it holds
    one, else built from the source tree."""
    if wheelhouse is not None:
        found = sorted(wheelhouse.glob(f"modelmill-{__version__}-*.whl"))
        if found:
            return Path(shutil.copy2(found[-1], target / found[-1].name))
    root = project_root()
    if root is None:
        raise WheelError(f"modelmill {__version__} is not installed from a source tree, so its wheel cannot be "
                         f"built here. Fix: pass --wheelhouse DIR holding modelmill-{__version__}-*.whl")
    with tempfile.TemporaryDirectory(prefix="modelmill-wheel-") as scratch:
        source = Path(scratch) / "source"
        source.mkdir()
        for name in SOURCE_FILES:
            if (root / name).is_dir():
                shutil.copytree(root / name, source / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            elif (root / name).is_file():
                shutil.copy2(root / name, source / name)
        _pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(target), str(source)],
             what=f"building modelmill's wheel from {root}", timeout_s=timeout_s)
    built = sorted(target.glob(f"modelmill-{__version__}-*.whl"))
    if not built:
        raise WheelError(f"pip built no modelmill-{__version__} wheel from {root}")
    return built[-1]


def dependency_wheels(target: Path, requirements_file: Path, *, wheelhouse: Path | None = None,
                      timeout_s: float = 1800) -> list[Path]:
    """Download the wheels of ``requirements_file`` and of everything they depend on into
    ``target`` (binary wheels only: the image has no compiler)."""
    args = ["download", "--quiet", "--only-binary=:all:", "--dest", str(target), "-r", str(requirements_file)]
    if wheelhouse is not None:
        args += ["--no-index", "--find-links", str(wheelhouse)]
    _pip(args, what="fetching the wheels of the serving requirements", timeout_s=timeout_s)
    return sorted(target.glob("*.whl"))
