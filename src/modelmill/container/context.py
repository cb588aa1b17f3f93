"""The build context of an image that serves one bundle: a ``Dockerfile``, the bundle, the
pinned serving requirements and the wheels to install them offline.

The image: a slim Python 3.11 base; a virtual environment made in a first stage from the
context's wheels alone (``--no-index``: no index, no network, the same versions every
time) and copied into the second, so no wheel or pip cache is left in a layer; the bundle
in ``/models/<name>/1/``, verified by modelmill at build time; a non-root user;
``HEALTHCHECK`` on ``/readyz`` with the standard library (slim bases have no curl); and
``modelmill serve`` as the exec-form entry point, so it is PID 1 and the runtime's SIGTERM
reaches it (it then drains: ``serving.grace_s``).

The context is written like a bundle: staged in a temporary sibling and renamed into
place, never over a folder that holds anything, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelmill._version import __version__
from modelmill.bundle import MANIFEST, Bundle, read_bundle, resolve_bundle_dir
from modelmill.container.requirements import Requirement, requirements_text, serving_requirements
from modelmill.container.wheels import dependency_wheels, modelmill_wheel
from modelmill.encryption import is_sealed
from modelmill.errors import EncryptionError, ModelmillError
from modelmill.files import atomic_folder

# Debian with the CPython that runs this build: the wheels are gathered for its ABI (cp311 …)
DEFAULT_BASE = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
APP = "/opt/modelmill"  # the virtual environment
HOME = "/var/lib/modelmill"  # the user's home and working directory (a SQLite log, its spool)
UID = 10001  # numeric, so that a runtime can check runAsNonRoot without reading /etc/passwd
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "requirements.txt", "build.json", "bundle", "wheels")


class ContextError(ModelmillError):
    """The build context cannot be written where asked."""


def refuse_encrypted(bundle_path: str | Path) -> None:
    """An encrypted bundle is refused before it is read (and before a key is asked for): the
    image's build verifies its bundle (``modelmill.container.verify``), which needs the key in
    the build, and a key given at build time stays in a layer of the image (an ``ARG`` or a
    ``COPY`` is in its history), readable by anyone who can pull it.

    Raises:
        EncryptionError: the bundle's manifest is sealed.
        BundleError: ``bundle_path`` is not a bundle.
    """
    root = resolve_bundle_dir(bundle_path)
    with open(root / MANIFEST, "rb") as stream:
        head = stream.read(8)
    if is_sealed(head):
        raise EncryptionError(f"bundle {root} is encrypted, and an image cannot be built of it: the build verifies "
                              "the bundle, which needs its key, and a key given at build time would stay in a layer "
                              "of the image for anyone who pulls it. Fix: serve it with `modelmill serve --key-file` "
                              "(the key given when it runs), or build the image of a bundle in clear")


@dataclass(frozen=True)
class ImagePlan:
    """What the Dockerfile is rendered from."""

    name: str
    digest: str
    base: str
    port: int
    requirements: tuple[Requirement, ...]
    tag: str | None = None
    serve_args: tuple[str, ...] = field(default=())

    @property
    def bundle_dir(self) -> str:
        return f"/models/{self.name}/1"

    @property
    def entrypoint(self) -> list[str]:
        return ["modelmill", "serve", f"/models/{self.name}", "--host", "0.0.0.0", "--port", str(self.port),
                *self.serve_args]


def image_name(bundle_name: str) -> str:
    """A name images accept: lower case, ``[a-z0-9._-]``, starting with a letter or digit."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in bundle_name.lower()).strip("._-")
    return cleaned or "model"


def dockerfile(plan: ImagePlan) -> str:
    """The Dockerfile's text (each choice commented, for the person who reads it)."""
    pip = f"{APP}/bin/python -m pip install --no-cache-dir --no-index --find-links /tmp/build/wheels"
    probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{plan.port}/readyz', timeout=4)")
    labels = {"org.opencontainers.image.title": f"modelmill: {plan.name}",
              "org.opencontainers.image.version": __version__,
              "io.modelmill.bundle.name": plan.name, "io.modelmill.bundle.sha256": plan.digest}
    label_lines = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return f"""\
# Written by `modelmill build` (modelmill {__version__}) for bundle {plan.name!r},
# manifest sha256 {plan.digest}.
# Build: docker build -t {plan.tag or image_name(plan.name)} .   (or podman / buildah build --format docker)

# Stage 1: the serving environment, installed offline from this context's wheels only.
FROM {plan.base} AS install
COPY requirements.txt /tmp/build/requirements.txt
COPY wheels/ /tmp/build/wheels/
RUN python3 -m venv {APP} \\
 && {pip} -r /tmp/build/requirements.txt \\
 && {pip} --no-deps modelmill=={__version__}

# Stage 2: the image: the base, the environment and the bundle (no wheels, no pip cache).
FROM {plan.base}
LABEL {label_lines}
ENV PATH={APP}/bin:$PATH \\
    HOME={HOME} \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid {UID} modelmill \\
 && useradd --uid {UID} --gid {UID} --no-log-init --home-dir {HOME} --create-home --shell /usr/sbin/nologin modelmill
COPY --from=install {APP} {APP}
# Owned by root and read-only to the server: a bundle is immutable once written.
COPY bundle/ {plan.bundle_dir}/
USER {UID}:{UID}
WORKDIR {HOME}
# Every file against the manifest, and the manifest against the hash this image was made for.
RUN python -m modelmill.container.verify {plan.bundle_dir} {plan.digest}
EXPOSE {plan.port}
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \\
    CMD {json.dumps(["python", "-c", probe])}
STOPSIGNAL SIGTERM
# Exec form: modelmill is PID 1 and gets the SIGTERM itself, then drains in-flight requests.
ENTRYPOINT {json.dumps(plan.entrypoint)}
"""


DOCKERIGNORE = "*\n" + "".join(f"!{name}\n" for name in CONTEXT_FILES if name != ".dockerignore")


def write_context(bundle_path: str | Path, target_dir: str | Path, *, tag: str | None = None,
                  base: str = DEFAULT_BASE, runtime: str | None = None, wheelhouse: Path | None = None,
                  serve_args: Sequence[str] = (), fetch_wheels: bool = True, probe: bool = True) -> Path:
    """Write the build context of an image that serves ``bundle_path`` into ``target_dir``.

    Args:
        bundle_path: a bundle, or a run directory holding one.
        target_dir: the context folder; must not exist yet, or be empty.
        tag: the image's name, for the comment that says how to build it.
        base: the base image: Debian-based, with the Python that runs this (the wheels are
            gathered for it), ``python3 -m venv`` and ``useradd``.
        runtime: the model runtime the image must be able to run besides the bundle's own.
        wheelhouse: take the wheels from this folder instead of the package index.
        serve_args: more ``modelmill serve`` options for the entry point.
        fetch_wheels: gather the wheels (False writes everything else: for tests and reviews).
        probe: add what loading the bundle for serving imports (False: what it declares only).

    Returns:
        The context folder.

    Raises:
        BundleError: the bundle is missing or fails verification (before anything is written).
        EncryptionError: the bundle is encrypted (:func:`refuse_encrypted` says why).
        ContextError: ``target_dir`` holds files.
        RequirementsError, WheelError: the requirements or their wheels cannot be had.
    """
    refuse_encrypted(bundle_path)
    bundle = read_bundle(bundle_path)  # a damaged bundle fails here, before anything is written
    target = Path(target_dir).resolve()
    _refuse_existing(target)
    requirements = tuple(serving_requirements(bundle, runtime=runtime, probe=probe))
    plan = ImagePlan(bundle.name or "model", bundle.digest, base, bundle.config().serving.port, requirements,
                     tag, tuple(serve_args))
    with atomic_folder(target, _refuse_existing) as staging:
        os.chmod(staging, 0o755)
        _stage(staging, bundle, plan, fetch_wheels=fetch_wheels, wheelhouse=wheelhouse)
    return target


def _stage(staging: Path, bundle: Bundle, plan: ImagePlan, *, fetch_wheels: bool, wheelhouse: Path | None) -> None:
    folder = staging / "bundle"
    for name, data in bundle.stored_files().items():  # the bytes just verified (sealed again if encrypted)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        os.chmod(folder / name, 0o644)
    copied = read_bundle(folder, key=bundle.key)  # what the image will hold verifies, and is the same bundle
    if copied.digest != bundle.digest:
        raise ContextError(f"the copy of {bundle.path} in the context differs from it; the disk may be failing")
    (staging / "requirements.txt").write_text(requirements_text(plan.requirements), encoding="utf-8")
    (staging / "Dockerfile").write_text(dockerfile(plan), encoding="utf-8")
    (staging / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")
    wheels = staging / "wheels"
    wheels.mkdir()
    if fetch_wheels:
        modelmill_wheel(wheels, wheelhouse=wheelhouse)
        dependency_wheels(wheels, staging / "requirements.txt", wheelhouse=wheelhouse)
    info = {"modelmill_version": __version__, "bundle": {"name": plan.name, "sha256": plan.digest,
                                                          "source": str(bundle.path)},
            "tag": plan.tag, "base": plan.base, "entrypoint": plan.entrypoint, "port": plan.port,
            "requirements": [r.line for r in plan.requirements],
            "wheels": sorted(p.name for p in wheels.glob("*.whl"))}
    (staging / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _refuse_existing(target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        return
    if target.exists() or target.is_symlink():
        raise ContextError(f"{target} already exists and is not empty; a build context is never written over "
                           "other files. Fix: pass another --output folder (or remove that one first)")
