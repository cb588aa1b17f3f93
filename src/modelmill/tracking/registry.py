"""The MLflow model registry: a bundle registered as a model version (its files as plain
artefacts: no pickle, no "model from code" that would run Python on load), aliases set on
versions, and a version fetched back into a local cache, verified against the hash the
version was registered with (:mod:`modelmill.tracking.fetch`). MLflow is imported lazily (through
:mod:`modelmill.tracking.client`).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelmill.bundle import MANIFEST, Bundle, read_bundle
from modelmill.errors import ConfigError, TrackingError, did_you_mean
from modelmill.tracking import tags
from modelmill.tracking.client import failure, mlflow_client, redact
from modelmill.tracking.lineage import bundle_tags, run_of_bundle

URI_FORMS = "models:/NAME@ALIAS (the version an alias points to), models:/NAME/VERSION, or models:/NAME (the newest)"
_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]*)|/(?P<version>[^/@]*))?/?")
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,100}")
VERSION = re.compile(r"[1-9][0-9]{0,17}")  # what MLflow numbers versions with; nothing else reaches a path or a call
_T = TypeVar("_T")
log = logging.getLogger("modelmill.tracking")


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
    if version is not None and not VERSION.fullmatch(version):
        raise ConfigError(f"{uri[:200]!r}: the version {version[:50]!r} is not a version number (1, 2, …). "
                          f"Fix: write {URI_FORMS}")
    check_name(name)
    if alias is not None:
        check_alias(alias)
    return ModelRef(name, alias, version)


def check_name(name: str) -> str:
    """``name`` when it can be looked up safely: a name holding both quote characters cannot be
    quoted in MLflow's search filters (a ConfigError saying so)."""
    if "'" in name and '"' in name:
        raise ConfigError(f"the registered model name {name[:80]!r} holds both ' and \", which MLflow's searches "
                          "cannot quote. Fix: use a name without quote characters")
    return name


def _quoted(name: str) -> str:
    """``name`` as a string literal of an MLflow filter: in "…" when it holds a ', else in '…'
    (MLflow's filters have no escapes; :func:`check_name` refuses a name holding both)."""
    check_name(name)
    return f'"{name}"' if "'" in name else f"'{name}'"


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


def registry_call(uri: str, what: str, call: Callable[[], _T], expected: tuple[str, ...] = ()) -> _T:
    """``call()``, with every MLflow failure as a TrackingError saying which server (without
    credentials) and why: the server's own failures, and errors about the request (an invalid
    name, a deleted experiment). Only the error codes in ``expected`` (an unknown name, for the
    caller to explain with the known ones) are raised as MLflow raised them."""
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as exc:
        code = _code(exc)
        if code in expected:
            raise
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS",
                    "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise TrackingError(f"{what}: the MLflow server at {redact(uri)} refused it ({code}): {failure(exc)}. "
                                "Fix: correct what it names, or check your MLflow permissions") from None
        why = _why(exc)
        slow = ("; or, if it is only slow (an artefact proxy fetches a whole file before it answers), allow it "
                "more seconds with MLFLOW_HTTP_REQUEST_TIMEOUT") if "timed out" in why else ""
        raise TrackingError(f"{what}: the MLflow server at {redact(uri)} {why}. Fix: check that the server "
                            f"runs and the URI is right (--tracking-uri or MLFLOW_TRACKING_URI){slow}") from None
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
        return registry_call(uri, f"registered model {name!r}", lambda: client.get_registered_model(name),
                     ("RESOURCE_DOES_NOT_EXIST",))
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise TrackingError(f"registered model {name!r}: {failure(exc)}") from None
    known = sorted(m.name for m in registry_call(uri, "the registered models", lambda: client.search_registered_models()))
    close = did_you_mean(name, known)
    listed = ", ".join(known[:20]) or "none"
    raise NotRegistered(f"no registered model {name!r} at {redact(uri)}{close}; registered models: {listed}. "
                        "Fix: `modelmill register BUNDLE --name NAME` first, or correct the name")


def _versions(client: Any, uri: str, name: str) -> list[Any]:
    found = registry_call(uri, f"the versions of {name!r}", lambda: client.search_model_versions(f"name = {_quoted(name)}"))
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
    """Version ``version`` of ``name`` (a ModelVersion, with the tag its bundle is checked against).

    Raises:
        NotRegistered: no such version (the known ones listed); TrackingError: the server failed.
    """
    from mlflow.exceptions import MlflowException

    if not VERSION.fullmatch(version):
        raise NotRegistered(f"{version[:64]!r} is no version of registered model {name!r}: versions are numbers "
                            "1, 2, …")

    try:
        return registry_call(uri, f"version {version} of {name!r}", lambda: client.get_model_version(name, version),
                     ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"))
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
    check_name(name)
    bundle = read_bundle(path, key=key)
    client = mlflow_client(uri)
    run = _run_holding(client, uri, bundle)
    source = f"{run.info.artifact_uri.rstrip('/')}/{tags.BUNDLE_ARTIFACTS}"
    from mlflow.exceptions import MlflowException

    try:
        registry_call(uri, f"registered model {name!r}", lambda: client.create_registered_model(name),
              ("RESOURCE_ALREADY_EXISTS",))
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise TrackingError(f"cannot register a model named {name!r}: {failure(exc)}") from None
    waiting = logging.getLogger("mlflow.store.model_registry.abstract_store")
    level = waiting.level
    waiting.setLevel(logging.WARNING)  # its "Waiting up to 300 seconds …" would mix into our output
    try:
        return registry_call(uri, f"a version of {name!r}", lambda: client.create_model_version(
            name, source=source, run_id=run.info.run_id, tags=bundle_tags(bundle), description=description))
    finally:
        waiting.setLevel(level)


def _run_holding(client: Any, uri: str, bundle: Bundle) -> Any:
    """The run that logged ``bundle`` with its files, or a new run that logs them."""
    run = registry_call(uri, "the run of the bundle", lambda: run_of_bundle(client, bundle.digest))
    if run is not None and _holds_bundle(client, uri, run.info.run_id, bundle):
        return run
    experiment_id = _register_experiment(client, uri, bundle.name)
    run_tags = {tags.ACTION: "register", **bundle_tags(bundle)}
    parent = None
    if bundle.lineage.parent:
        parent = registry_call(uri, "the parent's run", lambda: run_of_bundle(client, str(bundle.lineage.parent)))
    if parent is not None:
        run_tags[tags.PARENT_RUN_ID] = parent.info.run_id
    run = registry_call(uri, "a new run", lambda: client.create_run(experiment_id, tags=run_tags,
                                                             run_name=f"register {bundle.name}"))
    try:
        with tempfile.TemporaryDirectory(prefix="modelmill-register-") as folder:
            # exactly the manifest and the files it lists, as stored (sealed ones stay sealed)
            for listed in [MANIFEST, *bundle.manifest["files"]]:
                target = Path(folder) / listed
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle.path / listed, target)
            registry_call(uri, "the bundle's upload",
                  lambda: client.log_artifacts(run.info.run_id, folder, tags.BUNDLE_ARTIFACTS))
    except BaseException:
        try:  # a run left half-uploaded says so in MLflow, instead of running for ever
            client.set_terminated(run.info.run_id, status="FAILED")
        except Exception:  # the server that failed the upload may fail this too: the first error tells
            pass
        raise
    registry_call(uri, "the run's end", lambda: client.set_terminated(run.info.run_id))
    return run


def _register_experiment(client: Any, uri: str, name: str) -> str:
    """The experiment a ``register`` run goes to: the bundle's name, or where the user deleted
    that one (MLflow keeps it, and no run can be made in it), ``NAME (registered)``. A deleted
    experiment is never restored behind the user's back."""
    for candidate in (name, f"{name} (registered)"):
        experiment = registry_call(uri, f"experiment {candidate!r}", lambda: client.get_experiment_by_name(candidate))
        if experiment is None:
            return str(registry_call(uri, f"a new experiment {candidate!r}", lambda: client.create_experiment(candidate)))
        if getattr(experiment, "lifecycle_stage", "active") != "deleted":
            return str(experiment.experiment_id)
        log.warning("registry: experiment %r is deleted; the register run goes to another experiment", candidate)
    raise TrackingError(f"the experiments {name!r} and {name + ' (registered)'!r} at {redact(uri)} are both deleted, "
                        "and a register run needs one of them. Fix: restore one (`mlflow experiments restore "
                        "--experiment-id ID`), or remove them for good (`mlflow gc`)")


def _holds_bundle(client: Any, uri: str, run_id: str, bundle: Bundle) -> bool:
    """Whether the run logged ``bundle``'s files as they are stored here: every file the
    manifest lists there with its size (an upload cut short is not reused), and the same
    manifest bytes (a bundle logged in clear is not the sealed copy being registered, nor the
    other way round)."""
    logged = _logged_sizes(client, uri, run_id, tags.BUNDLE_ARTIFACTS)
    for listed in [MANIFEST, *bundle.manifest["files"]]:
        if logged.get(f"{tags.BUNDLE_ARTIFACTS}/{listed}") != (bundle.path / listed).stat().st_size:
            return False
    name = f"{tags.BUNDLE_ARTIFACTS}/{MANIFEST}"
    with tempfile.TemporaryDirectory(prefix="modelmill-register-") as folder:
        copy = Path(registry_call(uri, "the run's manifest", lambda: client.download_artifacts(run_id, name, folder)))
        return copy.read_bytes() == (bundle.path / MANIFEST).read_bytes()


def _logged_sizes(client: Any, uri: str, run_id: str, folder: str, depth: int = 0) -> dict[str, int | None]:
    """Every file the run logged under ``folder``, with its size (the listing walked down)."""
    found: dict[str, int | None] = {}
    items = registry_call(uri, "the run's artefacts", lambda: client.list_artifacts(run_id, folder))
    for item in items:
        if item.is_dir and depth < 20:
            found.update(_logged_sizes(client, uri, run_id, item.path, depth + 1))
        elif not item.is_dir:
            found[item.path] = item.file_size
    return found


def promote(uri: str, name: str, version: str, alias: str) -> str | None:
    """Point ``alias`` of ``name`` at ``version`` (both checked first); the version it pointed
    at before, or None."""
    check_alias(alias)
    client = mlflow_client(uri)
    model = registered_model(client, uri, name)
    get_version(client, uri, name, version)
    before = dict(getattr(model, "aliases", {}) or {}).get(alias)
    registry_call(uri, f"alias {alias!r}", lambda: client.set_registered_model_alias(name, alias, version))
    return None if before is None else str(before)
