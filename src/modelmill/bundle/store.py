"""Reading and writing bundles (deriving one from another: :mod:`modelmill.bundle.deriving`).

``manifest.json`` lists the sha256 of every other file; reading verifies every hash up
front and never unpickles or executes anything, and members are parsed only when a
consumer asks for them. Writes are atomic (a temporary sibling renamed into place, so a
crash never leaves half a bundle) and never overwrite: a bundle is immutable once written.
Later stages make a new bundle with ``derive``, which records its parent's hash.

An encrypted bundle (``key=``) seals every file, the manifest too, with
:mod:`modelmill.encryption`; the manifest's hashes stay over the plaintext, so a bundle's
digest is the same whatever seals it. Reading one decrypts in memory only, with the key
given or the environment's; a bundle derived from it is sealed with the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from modelmill._version import __version__
from modelmill.bundle.layout import (CLEANING, CONFIG, FEATURES, FORMAT_VERSION, HISTORY, MAIN_MODEL, MANIFEST,
                                     METRICS, MODEL_CARD, PLOTS, PROFILE, REPORT, SCHEMA, SPLIT, Lineage,
                                     ModelEntry, model_file, models_of)
from modelmill.bundle.weights import parse_weights
from modelmill.config.io import TaskConfig, parse_task_config, task_of
from modelmill.config.schema import PipelineConfig
from modelmill.encryption import is_sealed, require_key, seal_if, unseal
from modelmill.errors import BundleError
from modelmill.files import atomic_folder

if TYPE_CHECKING:
    import torch


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ModelFiles:
    """A model to write: its type, its runtime and its artefacts (name → bytes)."""

    type: str
    runtime: str
    artifacts: dict[str, bytes]


@dataclass
class Contents:
    """The members of a new bundle, typed; :meth:`files` lays them out."""

    name: str
    config_yaml: str
    input_schema: dict[str, Any]
    features: dict[str, Any]
    models: dict[str, ModelFiles]
    profile: dict[str, Any]
    metrics: dict[str, Any]
    data_sha256: str = ""
    report: bytes | None = None
    plots: dict[str, bytes] = field(default_factory=dict)
    cleaning: dict[str, Any] | None = None
    history: list[dict[str, float]] | None = None
    split: dict[str, Any] | None = None
    model_card: dict[str, Any] | None = None

    def files(self) -> dict[str, bytes]:
        files = {CONFIG: self.config_yaml.encode(), SCHEMA: _json(self.input_schema),
                 FEATURES: _json(self.features), PROFILE: _json(self.profile), METRICS: _json(self.metrics)}
        for model, entry in self.models.items():
            files.update({model_file(model, name): data for name, data in entry.artifacts.items()})
        optional = {CLEANING: self.cleaning, HISTORY: self.history, SPLIT: self.split, MODEL_CARD: self.model_card}
        files.update({name: _json(value) for name, value in optional.items() if value is not None})
        files.update({f"{PLOTS}{name}": png for name, png in self.plots.items()})
        if self.report is not None:
            files[REPORT] = self.report
        return files

    def info(self) -> dict[str, Any]:
        """What the manifest says besides the files and the lineage."""
        models = {model: ModelEntry(model, entry.type, entry.runtime,
                                    {name: model_file(model, name) for name in entry.artifacts}).as_json()
                  for model, entry in self.models.items()}
        return {"name": self.name, "config_sha256": sha256(self.config_yaml.encode()),
                "data_sha256": self.data_sha256, "models": models}


def write_contents(target: Path, contents: Contents, lineage: Lineage | None = None, *,
                   key: bytes | None = None) -> Path:
    """Write a new bundle of ``contents`` (trained from data unless ``lineage`` says otherwise),
    encrypted with ``key`` when given."""
    return write_bundle(target, contents.files(), {**contents.info(), "lineage": (lineage or Lineage()).as_json()},
                        key=key)


@dataclass
class Bundle:
    """A bundle directory whose every file was verified against its manifest. Members are
    parsed when first asked for (a server never parses the report or the plots)."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]
    manifest_bytes: bytes = b""
    key: bytes | None = field(default=None, repr=False)  # an encrypted bundle's key (what derive seals with)
    _parsed: dict[str, Any] = field(default_factory=dict, repr=False)

    # --------------------------------------------------------------- generic

    def json(self, name: str) -> Any:
        if name not in self._parsed:
            try:
                self._parsed[name] = json.loads(self.files[name])
            except KeyError:
                raise BundleError(f"bundle {self.path} has no {name}") from None
            except ValueError as exc:
                raise BundleError(f"{self.path / name} is not valid JSON: {exc}") from None
        return self._parsed[name]

    def text(self, name: str) -> str:
        if name not in self.files:
            raise BundleError(f"bundle {self.path} has no {name}")
        return self.files[name].decode("utf-8")

    def artifact(self, name: str) -> bytes:
        """An extra artefact (added by a later stage), verified like every file."""
        try:
            return self.files[name]
        except KeyError:
            raise BundleError(f"bundle {self.path} has no artefact {name!r}; it has: "
                              f"{', '.join(sorted(self.files))}") from None

    # ----------------------------------------------------------------- typed

    @property
    def digest(self) -> str:
        """The sha256 of the manifest: one hash that stands for every file of the bundle."""
        return sha256(self.manifest_bytes)

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def stored_files(self) -> dict[str, bytes]:
        """Every file as it is stored (the manifest included): sealed afresh with the bundle's
        key when it is encrypted, so a copy (a container's context) holds no plaintext."""
        files = {**self.files, MANIFEST: self.manifest_bytes}
        return {name: seal_if(data, self.key, name) for name, data in files.items()}

    @property
    def format_version(self) -> int:
        return int(self.manifest.get("format_version", 1))

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @cached_property
    def lineage(self) -> Lineage:
        return Lineage.from_json(self.manifest.get("lineage"))

    @cached_property
    def models(self) -> dict[str, ModelEntry]:
        return models_of(self.manifest, dict(self.manifest.get("files", {})))

    def model(self, name: str = MAIN_MODEL) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise BundleError(f"bundle {self.path} has no model {name!r} (it has: "
                              f"{', '.join(self.models) or 'none'})") from None

    def model_artifacts(self, name: str = MAIN_MODEL) -> dict[str, bytes]:
        """A model's artefacts by their names (``weights.safetensors``, a tree model …)."""
        return {artifact: self.artifact(file) for artifact, file in self.model(name).artifacts.items()}

    def weights(self, name: str = MAIN_MODEL) -> dict[str, torch.Tensor]:
        """A torch model's tensors."""
        artifacts = self.model(name).artifacts
        file = next((f for a, f in artifacts.items() if a.endswith(".safetensors")), None)
        if file is None:
            raise BundleError(f"model {name!r} of bundle {self.path} holds no safetensors weights")
        return parse_weights(self.artifact(file), where=self.path / file)

    def config_text(self) -> str:
        return self.text(CONFIG)

    @property
    def task(self) -> str:
        """The task the bundle was trained for (``predict``, ``forecast``)."""
        return task_of(self._raw_config(), str(self.path / CONFIG))

    def task_config(self) -> TaskConfig:
        """The resolved config the bundle was trained with, of whichever task."""
        if CONFIG not in self._parsed:
            self._parsed[CONFIG] = parse_task_config(self._raw_config(), origin=str(self.path / CONFIG))
        config: TaskConfig = self._parsed[CONFIG]
        return config

    def config(self) -> PipelineConfig:
        """The resolved config of a ``task: predict`` bundle (another task's bundle is a clear error)."""
        config = self.task_config()
        if not isinstance(config, PipelineConfig):
            raise BundleError(f"{self.path} is a `task: {config.task}` bundle, and this takes `task: predict` "
                              "bundles only (one row in, one value out)")
        return config

    def _raw_config(self) -> dict[str, Any]:
        raw = yaml.safe_load(self.config_text())
        if not isinstance(raw, dict):
            raise BundleError(f"{self.path / CONFIG} does not hold a config mapping")
        return raw

    def input_schema(self) -> dict[str, Any]:
        return dict(self.json(SCHEMA))

    def features_state(self) -> dict[str, Any]:
        return dict(self.json(FEATURES))

    def profile(self) -> dict[str, Any]:
        return dict(self.json(PROFILE))

    def metrics(self) -> dict[str, Any]:
        return dict(self.json(METRICS))

    def history(self) -> list[dict[str, float]] | None:
        return list(self.json(HISTORY)) if HISTORY in self.files else None

    def cleaning_report(self) -> dict[str, Any] | None:
        return dict(self.json(CLEANING)) if CLEANING in self.files else None

    def split(self) -> dict[str, Any] | None:
        """How the test split was made (``data.split.SplitRecord`` reads it); None for a
        bundle written before bundles recorded it."""
        return dict(self.json(SPLIT)) if SPLIT in self.files else None

    def model_card(self) -> dict[str, Any] | None:
        """The model card as JSON data; None for a bundle written before bundles held one."""
        return dict(self.json(MODEL_CARD)) if MODEL_CARD in self.files else None

    def report_html(self) -> bytes | None:
        return self.files.get(REPORT)

    def plots(self) -> dict[str, bytes]:
        return {name.removeprefix(PLOTS): data for name, data in self.files.items() if name.startswith(PLOTS)}


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()


# ------------------------------------------------------------------- writing


def write_bundle(target: str | Path, files: Mapping[str, bytes], info: Mapping[str, Any], *,
                 key: bytes | None = None) -> Path:
    """Write ``files`` (relative POSIX names → bytes) and a manifest into ``target``
    atomically, every file sealed with ``key`` when given. ``target`` must not exist yet (or
    be an empty folder): bundles are never overwritten."""
    target = Path(target).resolve()
    _refuse_existing(target)

    try:
        with atomic_folder(target, _refuse_existing) as staging:
            for name, data in files.items():
                _write_synced(staging / _safe_name(name), seal_if(data, key, name))
            manifest = {
                "format_version": FORMAT_VERSION,
                "modelmill_version": __version__,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **info,
                "files": {name: sha256(data) for name, data in sorted(files.items())},
            }
            _write_synced(staging / MANIFEST, seal_if(json.dumps(manifest, indent=2).encode(), key, MANIFEST))
    except OSError as exc:  # a file where a folder should be, no permission, a full disk: nothing is left behind
        raise BundleError(f"cannot write the bundle {target}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}. Fix: save to a folder you can write "
                          "to (its parent a folder, not a file, with room on the disk)") from None
    return target


def _refuse_existing(target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        return
    if target.exists() or target.is_symlink():
        what = "a bundle" if (target / MANIFEST).is_file() else "files"
        raise BundleError(f"{target} already holds {what}; bundles are immutable once written and are never "
                          "overwritten. Fix: save to a new folder (or remove the old one first)")


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _safe_name(name: str) -> str:
    """Bundle file names are relative and stay inside the bundle."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in name or not pure.parts or name == MANIFEST:
        raise BundleError(f"invalid bundle file name {name!r}")
    return str(pure)


# ------------------------------------------------------------------- reading


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle directory, or a run directory holding one in ``bundle/``."""
    root = Path(path)
    for candidate in (root, root / "bundle"):
        if (candidate / MANIFEST).is_file():
            return candidate
    if not root.exists():
        raise BundleError(f"{root} does not exist. Fix: give the path of a bundle or of a run directory")
    raise BundleError(f"{root} is not a modelmill bundle (no {MANIFEST} in it or in {root / 'bundle'})")


def read_bundle(path: str | Path, key: bytes | None = None) -> Bundle:
    """Read and verify every file listed in the manifest (formats 1 and 2). An encrypted
    bundle is decrypted in memory with ``key``, or else the environment's key.

    Raises:
        BundleError: not a bundle, a file missing, or a hash that does not match.
        EncryptionError: an encrypted bundle and no key, another key, or a changed file.
    """
    root = resolve_bundle_dir(path)
    raw = (root / MANIFEST).read_bytes()
    if is_sealed(raw):
        key = key or require_key(f"bundle {root} is encrypted")
        raw = unseal(raw, key, MANIFEST, root / MANIFEST)
    else:
        key = None  # a plain bundle stays plain, whatever key is at hand
    try:
        manifest = json.loads(raw)
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{root / MANIFEST} is damaged ({exc}); the bundle cannot be trusted") from None
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(
            f"{root} has bundle format {manifest.get('format_version')}, newer than this modelmill "
            f"understands ({FORMAT_VERSION}). Fix: upgrade modelmill"
        )
    files: dict[str, bytes] = {}
    for name, digest in listed.items():
        file = root / _safe_name(name)
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing")
        data = file.read_bytes()
        if key is not None:
            data = unseal(data, key, name, file)
        if sha256(data) != digest:
            raise BundleError(
                f"integrity check failed for {file}: its sha256 does not match the manifest "
                "(the file was changed or damaged after the bundle was written)"
            )
        files[name] = data
    return Bundle(path=root, manifest=manifest, files=files, manifest_bytes=raw, key=key)
