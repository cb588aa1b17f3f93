"""What an image needs to serve one bundle: the serving runtime, plus what this bundle's
models, runtime and prediction log need, each pinned to the version this environment has
(the image reproduces the environment the bundle was checked in).

Two sources, both from the bundle rather than from a guess:

* declared: the manifest's models (their types and runtimes), the runtime asked for, and
  the bundle's ``serving.log`` setting;
* probed: a subprocess loads and warms the bundle exactly as ``modelmill serve`` does and
  reports the distributions it imported. That is how a text feature's ``tokenizers`` (or a
  pretrained encoder's ``transformers`` and ``peft``) come in without this module asking
  which type a feature is (features own that question).

The training-only dependencies (matplotlib, scikit-learn, scipy, openpyxl) stay out unless
the probe finds the served model really imports them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from modelmill.bundle import MAIN_MODEL, Bundle
from modelmill.errors import ModelmillError, unknown_choice

# The serving runtime: what ``modelmill serve`` imports for any bundle (the CLI, the config
# tree, the server and its event loop, the predictor). The ``serve`` extra in pyproject.toml
# lists the same names (a test keeps the two equal). httpx is modelmill.Client's, not the
# server's; sqlalchemy only comes with a prediction log.
SERVE_BASE: tuple[str, ...] = (
    "torch", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "typer", "rich", "safetensors",
    "fastapi", "uvicorn", "uvloop", "httptools", "prometheus-client", "fastapi-offline", "pillow",
    "cryptography",
)
# What each model runtime needs beside the base (the runtime names of the bundle manifest).
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {"torch": (), "onnxruntime": ("onnxruntime",)}
# Learners of their own library: model type → the distribution that predicts with it.
MODEL_PACKAGES: dict[str, tuple[str, ...]] = {"gbdt": ("lightgbm",)}
# The prediction log: SQLAlchemy for every store, a driver for PostgreSQL, scipy for the
# drift statistics the log's monitoring computes.
LOG_PACKAGES: tuple[str, ...] = ("sqlalchemy", "scipy")
POSTGRES_PACKAGES: tuple[str, ...] = ("psycopg", "psycopg-binary")
# Never in an image unless the probe proves the served model imports them.
TRAINING_ONLY: tuple[str, ...] = ("matplotlib", "scikit-learn", "scipy", "openpyxl", "transformers", "peft")

# Loads and warms the bundle as a server's worker does, on the runtime the image will use;
# the prediction log is left closed (a build must not open, create or migrate the production
# store), its packages come from the declared ones.
PROBE = """
import json, sys
import uvicorn
import modelmill.cli, modelmill.serving.app
from modelmill.bundle import read_bundle
from modelmill.serving.models import ServedModel
bundle = read_bundle(sys.argv[1])
settings = bundle.config().serving
if sys.argv[2]:
    settings = settings.model_copy(update={"runtime": sys.argv[2]})
ServedModel.load(bundle, "1", settings).warm_up(2)
print(json.dumps(sorted({name.split(".")[0] for name in list(sys.modules)})))
"""


class RequirementsError(ModelmillError):
    """The bundle's serving requirements cannot be worked out in this environment."""


@dataclass(frozen=True)
class Requirement:
    """One distribution of the image, pinned, and why it is there."""

    name: str
    version: str
    reason: str

    @property
    def line(self) -> str:
        return f"{self.name}=={self.version}"


def canonical(name: str) -> str:
    """PEP 503 normalised name (``Prometheus_Client`` → ``prometheus-client``)."""
    return name.lower().replace("_", "-").replace(".", "-")


def declared_packages(bundle: Bundle, runtime: str | None = None) -> dict[str, str]:
    """Distribution → reason, from the manifest (the main model's runtime, every model's type),
    the runtime asked for and the serving config (``serving.runtime``, ``serving.log``)."""
    found = {name: "the serving runtime" for name in SERVE_BASE}
    configured = str(getattr(bundle.config().serving, "runtime", "auto"))  # serving.runtime
    main = bundle.models.get(MAIN_MODEL)
    runtimes = {r for r in (main.runtime if main else None, configured, runtime) if r and r != "auto"}
    for name in sorted(runtimes):
        if name not in RUNTIME_PACKAGES:
            raise RequirementsError(unknown_choice("model runtime", name, RUNTIME_PACKAGES))
        found.update({package: f"runtime {name}" for package in RUNTIME_PACKAGES[name]})
    for entry in bundle.models.values():
        found.update({package: f"model type {entry.type}" for package in MODEL_PACKAGES.get(entry.type, ())})
    url = bundle.config().serving.log.url
    if url:
        found.update({package: "the prediction log" for package in LOG_PACKAGES})
        if url.startswith("postgresql"):
            found.update({package: "the prediction log on PostgreSQL" for package in POSTGRES_PACKAGES})
    return found


def probed_packages(bundle_path: Path, *, runtime: str | None = None, timeout_s: float = 300) -> dict[str, str]:
    """Distribution → reason: what loading and warming the bundle as the server does imports
    (on ``runtime``, when the image serves with one)."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(bundle_path), runtime or ""], capture_output=True,
                          text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])[:600]
        raise RequirementsError(f"the bundle at {bundle_path} does not load for serving in this environment, so "
                                f"its image could not serve it either: {tail}")
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    owners = metadata.packages_distributions()
    found: dict[str, str] = {}
    for module in modules:
        if module in sys.stdlib_module_names or module == "modelmill" or module.startswith("_"):
            continue  # private shims (_distutils_hack, _cython_*) belong to no serving need
        for distribution in owners.get(module, ()):
            if canonical(distribution) != "modelmill":
                found.setdefault(canonical(distribution), f"imported by the served model ({module})")
    return found


def pin(packages: dict[str, str]) -> list[Requirement]:
    """Each distribution at the version installed here, sorted by name.

    Raises:
        RequirementsError: a needed distribution is not installed here (with the fix).
    """
    pinned, missing = [], []
    for name, reason in sorted(packages.items()):
        try:
            pinned.append(Requirement(name, metadata.version(name), reason))
        except metadata.PackageNotFoundError:
            missing.append(f"{name} ({reason})")
    if missing:
        raise RequirementsError(f"the image needs {', '.join(missing)}, not installed here, so no tested version "
                                f"can be pinned. Fix: pip install {' '.join(m.split()[0] for m in missing)}")
    return pinned


def serving_requirements(bundle: Bundle, *, runtime: str | None = None, probe: bool = True) -> list[Requirement]:
    """The pinned distributions an image needs to serve ``bundle`` (the probe adds what the
    served model imports; without it only what the manifest and config declare)."""
    packages = declared_packages(bundle, runtime)
    if probe:
        for name, reason in probed_packages(bundle.path, runtime=runtime).items():
            packages.setdefault(name, reason)
    return pin(packages)


def requirements_text(requirements: Iterable[Requirement]) -> str:
    lines = ["# What `modelmill build` installs beside modelmill (installed with --no-deps): the serving",
             "# runtime and what this bundle needs, pinned to the versions it was checked with."]
    lines += [f"{r.line:<40} # {r.reason}" for r in requirements]
    return "\n".join(lines) + "\n"
