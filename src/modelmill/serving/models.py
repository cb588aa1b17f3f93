"""Served models and their versions.

A model root is either one bundle (or run) directory, or a folder of versions
(``1/``, ``2/``, … each a bundle or a run). Names of versions that come from requests
go through :func:`modelmill.paths.safe_child` before they touch the filesystem.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelmill.bundle import Bundle, read_bundle, resolve_bundle_dir
from modelmill.config.serving import ServingConfig
from modelmill.errors import BundleError, ModelmillError, ServingError
from modelmill.paths import UnsafePathError, safe_child
from modelmill.predictor import Predictor, prediction_records
from modelmill.serving.problem import Problem, without_paths
from modelmill.serving.schema import RequestContract, build_contract

log = logging.getLogger("modelmill.serving")


@dataclass
class ServedModel:
    """One loaded, verified version: its predictor, its request contract and its metadata."""

    name: str
    version: str
    predictor: Predictor
    contract: RequestContract
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, bundle: Bundle, version: str, serving: ServingConfig) -> ServedModel:
        predictor = Predictor.from_bundle(bundle)
        contract = build_contract(predictor.features, bundle.profile(), max_records=serving.max_records,
                                  unknown_categories=serving.unknown_categories)
        return cls(predictor.config.name, version, predictor, contract, bundle.manifest, bundle.metrics())

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One prediction per record, keyed like ``modelmill predict``'s output columns."""
        predictions = self.predictor.predict_records(records)
        return prediction_records(predictions, self.predictor.config.target.name)

    def warm_up(self, batch_size: int) -> None:
        """Run the example, an all-missing record and a full batch through the model, so the
        first real request pays no first-call costs and a broken bundle fails here."""
        example = self.contract.adapter.validate_python(self.contract.example)["instances"][0]  # as a request
        empty = {column: None for column in self.contract.columns}
        for records in ([example], [empty], [example] * batch_size):
            out = self.predict(records)
            if len(out) != len(records):
                raise ServingError(f"warm-up returned {len(out)} predictions for {len(records)} records")

    def describe(self) -> dict[str, Any]:
        target = self.predictor.target
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.manifest.get("created_at"),
            "modelmill_version": self.manifest.get("modelmill_version"),
            "model_type": self.predictor.config.model.type,
            "target": {"name": target.name, "task": target.task, "classes": target.class_names},
            "inputs": self.predictor.input_schema()["inputs"],
            "metrics": self.metrics,
            "example": self.contract.example,
        }


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

    def load(self, version: str, serving: ServingConfig, bundle: Bundle | None = None) -> ServedModel:
        """Load (or take ``bundle``, already read) and warm one version. Failures become a
        409 whose message holds no paths."""
        path = self.locate(version)
        started = time.perf_counter()
        try:
            model = ServedModel.load(bundle or read_bundle(path), version, serving)
            model.warm_up(serving.max_batch_size)
        except Problem:
            raise
        except Exception as exc:  # any failure leaves the old version serving
            log.exception("version %s at %s failed to load or warm up", version, path)
            text = str(exc) if isinstance(exc, ModelmillError) else f"{type(exc).__name__}: {exc}"
            message = without_paths(text.replace(str(self.path) + "/", ""))
            raise Problem(409, "load_failed", f"version {version!r} failed to load or warm up: "
                          f"{message[:500]}") from None
        log.info("loaded %s version %s in %.2f s", model.name, version, time.perf_counter() - started)
        return model
