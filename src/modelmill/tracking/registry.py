"""The MLflow model registry: a bundle registered as a model version (its files as plain
artefacts: no pickle, no "model from code" that would run Python on load), aliases set on
versions, and a version fetched back into a local cache, verified against the hash the
version was registered with.

A registered version's files are downloaded into a temporary sibling of their cache folder,
verified (every file against the manifest, the manifest against the version's
``modelmill.bundle_sha256`` tag) and only then renamed into place: a reader never sees a half
copy, and two processes fetching the same version at once each verify their own copy and keep
whichever landed first. MLflow is imported lazily (through :mod:`modelmill.tracking.client`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelmill.bundle import MANIFEST, Bundle, read_bundle
from modelmill.errors import BundleError, ConfigError, TrackingError, did_you_mean
from modelmill.tracking import tags
from modelmill.tracking.client import failure, mlflow_client, redact
from modelmill.tracking.lineage import bundle_tags, run_of_bundle

URI_FORMS = "models:/NAME@ALIAS (the version an alias points to), models:/NAME/VERSION, or models:/NAME (the newest)"
_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]*)|/(?P<version>[^/@]*))?/?")
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,100}")
_T = TypeVar("_T")


class NotRegistered(TrackingError):
    """The registry holds no such model, alias or version (a server answers 404 for it)."""


@dataclass(frozen=True)
class ModelRef:
    """A registered model, and which of its versions: one ``alias`` or ``version``, or neither
    (the newest)."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        tail = f"@{self.alias}" if self.alias else f"/{self.version}" if self.version else ""
        return f"models:/{self.name}{tail}"


def is_model_uri(text: str) -> bool:
    """Whether ``text`` is meant as a registered model (``models:...``) rather than a path."""
    return text.startswith("models:") and not Path(text).exists()


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/credit@champion``, ``models:/credit/7`` or ``models:/credit``.

    Raises:
        ConfigError: another form, a version that is not a number, or an invalid alias.
    """
    match = _URI.fullmatch(uri.strip())
    if match is None:
        raise ConfigError(f"{uri[:200]!r} is not a registered model URI. Fix: write {URI_FORMS}")
    name, alias, version = match["name"], match["alias"], match["version"]
    if version is not None and not version.isdigit():
        raise ConfigError(f"{uri[:200]!r}: the version {version[:50]!r} is not a number. Fix: write {URI_FORMS}")
    if alias is not None:
        check_alias(alias)
    return ModelRef(name, alias, version)


def check_alias(alias: str) -> str:
    """``alias`` when MLflow accepts it as an alias name (letters, digits, ``_`` and ``-``; not
    ``latest`` nor ``v<digits>``, which MLflow reserves); else a ConfigError saying why."""
    if not _ALIAS.fullmatch(alias):
        raise ConfigError(f"invalid alias {alias[:80]!r}: an alias is 1-255 letters, digits, '_' or '-'. "
                          "Fix: use a name such as champion or challenger")
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ConfigError(f"alias {alias!r} is reserved by MLflow ('latest' names the newest version, v<N> "
                          "version N). Fix: use another name, such as champion; models:/NAME is the newest version")
    return alias


# ----------------------------------------------------------------------- calls


def _call(uri: str, what: str, call: Callable[[], _T]) -> _T:
    """``call()``, with a failure of the server (not of the request) as a TrackingError saying
    which server (without credentials) and why. Errors about the request itself (an unknown
    name) are raised as MLflow raised them, for the caller to explain."""
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as exc:
        if _code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
            raise
        raise TrackingError(f"{what}: the MLflow server at {redact(uri)} {_why(exc)}. Fix: check that the server "
                            "runs and the URI is right (--tracking-uri or MLFLOW_TRACKING_URI)") from None
    except OSError as exc:
        raise TrackingError(f"{what}: the MLflow server at {redact(uri)} did not answer: {failure(exc)}. Fix: check "
                            "that the server runs and the URI is right (--tracking-uri or MLFLOW_TRACKING_URI)") from None


def _why(exc: Exception) -> str:
    """What went wrong, in a few words: MLflow's message for a connection that failed holds the
    whole chain of urllib3's exceptions, the system's reason at its end."""
    text = str(exc)
    if "failed with exception" not in text:
        return f"failed: {failure(exc)}"
    reason = re.search(r"\[Errno -?\d+\] [^'\"()]+|Read timed out|Name or service not known", text)
    return f"did not answer ({redact(reason.group(0).strip()) if reason else 'no connection'})"


def _code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def registered_model(client: Any, uri: str, name: str) -> Any:
    """The registered model ``name``; unknown → TrackingError with the close matches."""
    from mlflow.exceptions import MlflowException

    try:
        return _call(uri, f"registered model {name!r}", lambda: client.get_registered_model(name))
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise TrackingError(f"registered model {name!r}: {failure(exc)}") from None
    known = sorted(m.name for m in _call(uri, "the registered models", lambda: client.search_registered_models()))
    close = did_you_mean(name, known)
    listed = ", ".join(known[:20]) or "none"
    raise NotRegistered(f"no registered model {name!r} at {redact(uri)}{close}; registered models: {listed}. "
                        "Fix: `modelmill register BUNDLE --name NAME` first, or correct the name")


def _versions(client: Any, uri: str, name: str) -> list[Any]:
    found = _call(uri, f"the versions of {name!r}", lambda: client.search_model_versions(f"name = '{name}'"))
    return sorted(found, key=lambda v: int(v.version))


def resolve(client: Any, ref: ModelRef, uri: str = "") -> Any:
    """The model version ``ref`` names (an MLflow ``ModelVersion``).

    Raises:
        TrackingError: the model, alias or version is unknown (the known ones listed), or the
            server failed.
    """
    model = registered_model(client, uri, ref.name)
    aliases: dict[str, str] = dict(getattr(model, "aliases", {}) or {})
    if ref.alias is not None:
        if ref.alias not in aliases:
            shown = ", ".join(f"@{a} → version {v}" for a, v in sorted(aliases.items())) or "none"
            raise NotRegistered(f"registered model {ref.name!r} has no alias {ref.alias!r}"
                                f"{did_you_mean(ref.alias, aliases)}; its aliases: {shown}. Fix: "
                                f"`modelmill promote {ref.name} VERSION --alias {ref.alias}`")
        return get_version(client, uri, ref.name, str(aliases[ref.alias]))
    if ref.version is not None:
        return get_version(client, uri, ref.name, ref.version)
    versions = _versions(client, uri, ref.name)
    if not versions:
        raise NotRegistered(f"registered model {ref.name!r} has no versions yet. Fix: `modelmill register BUNDLE "
                            f"--name {ref.name}`")
    return versions[-1]


def get_version(client: Any, uri: str, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return _call(uri, f"version {version} of {name!r}", lambda: client.get_model_version(name, version))
    except MlflowException as exc:
        if _code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise TrackingError(f"version {version} of registered model {name!r}: {failure(exc)}") from None
    known = ", ".join(v.version for v in _versions(client, uri, name)) or "none"
    raise NotRegistered(f"registered model {name!r} has no version {version}; its versions: {known}")


# ----------------------------------------------------------------- register


def register(uri: str, path: str | Path, name: str, *, description: str | None = None,
             key: bytes | None = None) -> Any:
    """Register the bundle at ``path`` (verified first) as a new version of ``name``: the files
    of the run that logged it, where one did, else of a new ``register`` run. The model version
    returned carries :func:`~modelmill.tracking.lineage.bundle_tags`."""
    bundle = read_bundle(path, key=key)
    client = mlflow_client(uri)
    run = _run_holding(client, uri, bundle)
    source = f"{run.info.artifact_uri.rstrip('/')}/{tags.BUNDLE_ARTIFACTS}"
    from mlflow.exceptions import MlflowException

    try:
        _call(uri, f"registered model {name!r}", lambda: client.create_registered_model(name))
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise TrackingError(f"cannot register a model named {name!r}: {failure(exc)}") from None
    waiting = logging.getLogger("mlflow.store.model_registry.abstract_store")
    level = waiting.level
    waiting.setLevel(logging.WARNING)  # its "Waiting up to 300 seconds …" would mix into our output
    try:
        return _call(uri, f"a version of {name!r}", lambda: client.create_model_version(
            name, source=source, run_id=run.info.run_id, tags=bundle_tags(bundle), description=description))
    finally:
        waiting.setLevel(level)


def _run_holding(client: Any, uri: str, bundle: Bundle) -> Any:
    """The run that logged ``bundle`` with its files, or a new run that logs them."""
    run = _call(uri, "the run of the bundle", lambda: run_of_bundle(client, bundle.digest))
    if run is not None and _holds_bundle(client, uri, run.info.run_id, bundle):
        return run
    experiment = _call(uri, "the experiment", lambda: client.get_experiment_by_name(bundle.name))
    experiment_id = experiment.experiment_id if experiment is not None else _call(
        uri, "a new experiment", lambda: client.create_experiment(bundle.name))
    run_tags = {tags.ACTION: "register", **bundle_tags(bundle)}
    parent = None
    if bundle.lineage.parent:
        parent = _call(uri, "the parent's run", lambda: run_of_bundle(client, str(bundle.lineage.parent)))
    if parent is not None:
        run_tags[tags.PARENT_RUN_ID] = parent.info.run_id
    run = _call(uri, "a new run", lambda: client.create_run(experiment_id, tags=run_tags,
                                                             run_name=f"register {bundle.name}"))
    try:
        with tempfile.TemporaryDirectory(prefix="modelmill-register-") as folder:
            # exactly the manifest and the files it lists, as stored (sealed ones stay sealed)
            for listed in [MANIFEST, *bundle.manifest["files"]]:
                target = Path(folder) / listed
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle.path / listed, target)
            _call(uri, "the bundle's upload",
                  lambda: client.log_artifacts(run.info.run_id, folder, tags.BUNDLE_ARTIFACTS))
    except BaseException:
        try:  # a run left half-uploaded says so in MLflow, instead of running for ever
            client.set_terminated(run.info.run_id, status="FAILED")
        except Exception:  # the server that failed the upload may fail this too: the first error tells
            pass
        raise
    _call(uri, "the run's end", lambda: client.set_terminated(run.info.run_id))
    return run


def _holds_bundle(client: Any, uri: str, run_id: str, bundle: Bundle) -> bool:
    """Whether the run logged ``bundle``'s files as they are stored here: the same manifest bytes
    (a bundle logged in clear is not the sealed copy being registered, nor the other way round)."""
    listed = _call(uri, "the run's artefacts", lambda: client.list_artifacts(run_id, tags.BUNDLE_ARTIFACTS))
    name = f"{tags.BUNDLE_ARTIFACTS}/{MANIFEST}"
    needed = {f"{tags.BUNDLE_ARTIFACTS}/{file.split('/')[0]}" for file in [MANIFEST, *bundle.manifest["files"]]}
    if not needed <= {item.path for item in listed}:  # not logged whole (or an upload cut short)
        return False
    with tempfile.TemporaryDirectory(prefix="modelmill-register-") as folder:
        logged = Path(_call(uri, "the run's manifest", lambda: client.download_artifacts(run_id, name, folder)))
        return logged.read_bytes() == (bundle.path / MANIFEST).read_bytes()


def promote(uri: str, name: str, version: str, alias: str) -> str | None:
    """Point ``alias`` of ``name`` at ``version`` (both checked first); the version it pointed
    at before, or None."""
    check_alias(alias)
    client = mlflow_client(uri)
    model = registered_model(client, uri, name)
    get_version(client, uri, name, version)
    before = dict(getattr(model, "aliases", {}) or {}).get(alias)
    _call(uri, f"alias {alias!r}", lambda: client.set_registered_model_alias(name, alias, version))
    return None if before is None else str(before)


# -------------------------------------------------------------------- fetch


def cache_folder(uri: str, name: str) -> Path:
    """Where the fetched versions of registered model ``name`` of the server ``uri`` are kept:
    ``$MODELMILL_CACHE/registry/<server>/<name>/`` (the server as a hash of its URI without
    credentials; a name that is no plain folder name gets a hash of its own)."""
    base = Path(os.environ.get("MODELMILL_CACHE") or Path.home() / ".cache" / "modelmill").expanduser()
    server = hashlib.sha256(redact(uri).encode()).hexdigest()[:16]
    folder = name if _FOLDER.fullmatch(name) else (
        re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60].lstrip(".") + "-" + hashlib.sha256(name.encode()).hexdigest()[:12])
    return base / "registry" / server / folder


def fetch(uri: str, ref: ModelRef, client: Any | None = None, *, key: bytes | None = None) -> Path:
    """The local, verified copy of the version ``ref`` names (fetched when not cached)."""
    client = client or mlflow_client(uri)
    return fetch_version(client, uri, resolve(client, ref, uri), key=key)


def fetch_version(client: Any, uri: str, version: Any, *, key: bytes | None = None) -> Path:
    """The folder holding ``version``'s bundle in the cache: downloaded, verified and renamed
    into place unless it is there already (a reader verifies every file on load anyway).

    Raises:
        TrackingError: the download failed, or the copy fails its checks (the file named).
    """
    target = cache_folder(uri, version.name) / str(version.version)
    if (target / MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{version.version}.{uuid.uuid4().hex[:12]}.partial"
    try:
        _download(uri, version, staging)
        _verify(uri, version, staging / tags.BUNDLE_ARTIFACTS, key)
        try:
            os.rename(staging / tags.BUNDLE_ARTIFACTS, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not another process's verified copy: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(uri: str, version: Any, staging: Path) -> None:
    from mlflow.artifacts import download_artifacts

    staging.mkdir()
    where = f"version {version.version} of registered model {version.name!r}"
    _call(uri, f"the download of {where}",
          lambda: download_artifacts(artifact_uri=version.source, dst_path=str(staging), tracking_uri=uri))
    if not (staging / tags.BUNDLE_ARTIFACTS / MANIFEST).is_file():
        raise TrackingError(f"{where} holds no modelmill bundle (no {MANIFEST} in {redact(version.source)}). "
                            "Fix: register a modelmill bundle with `modelmill register`")


def _verify(uri: str, version: Any, folder: Path, key: bytes | None) -> Bundle:
    """Every file against the manifest, and the manifest against the version's tag."""
    where = f"registered model {version.name!r} version {version.version} (fetched from {redact(uri)})"
    try:
        bundle = read_bundle(folder, key=key)
    except BundleError as exc:
        message = str(exc).replace(f"{folder}/", "").replace(str(folder), "the bundle")
        head, _, reason = message.partition(": ")  # "integrity check failed for FILE", "why"
        message = f"{head} of {where}: {reason}" if reason else f"{message} — in {where}"
        raise TrackingError(f"{message}; nothing was kept. Fix: register the bundle again from a good copy") from None
    expected = dict(version.tags or {}).get(tags.BUNDLE_SHA256)
    if expected is None:
        raise TrackingError(f"{where} has no {tags.BUNDLE_SHA256} tag to verify its bundle against. Fix: register "
                            "it with `modelmill register`")
    if bundle.digest != expected:
        raise TrackingError(f"integrity check failed for {MANIFEST} of {where}: its sha256 {bundle.digest[:16]}… "
                            f"is not the {expected[:16]}… the version was registered with; nothing was kept. Fix: "
                            "register the bundle again from a good copy")
    return bundle
