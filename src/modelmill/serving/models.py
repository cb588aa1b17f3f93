"""A served model: one loaded, verified and warmed version of a bundle, its predictor and
its request contract."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from modelmill.bundle import Bundle, read_bundle
from modelmill.config.serving import ServingConfig
from modelmill.errors import ServingError
from modelmill.predictor import Predictor, prediction_records
from modelmill.serving.problem import Problem
from modelmill.serving.schema import RequestContract, build_contract
from modelmill.serving.versions import ModelRoot, load_failure

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
    profile: dict[str, Any] = field(default_factory=dict)  # the reference the drift gauges compare against
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, bundle: Bundle, version: str, serving: ServingConfig) -> ServedModel:
        predictor = Predictor.from_bundle(bundle, runtime=serving.runtime)
        contract = build_contract(predictor.features, bundle.profile(), max_records=serving.max_records,
                                  unknown_categories=serving.unknown_categories)
        return cls(predictor.config.name, version, predictor, contract, bundle.manifest, bundle.metrics(),
                   bundle.profile())

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
            "runtime": self.predictor.runtime.name,
            "target": {"name": target.name, "task": target.task, "classes": target.class_names},
            "inputs": self.predictor.input_schema()["inputs"],
            "metrics": self.metrics,
            "example": self.contract.example,
        }


def load_version(root: ModelRoot, version: str, serving: ServingConfig, bundle: Bundle | None = None) -> ServedModel:
    """Load (or take ``bundle``, already read) and warm one version of ``root``. Failures
    become a 409 whose message holds no paths."""
    path = root.locate(version)
    started = time.perf_counter()
    try:
        model = ServedModel.load(bundle or read_bundle(path), version, serving)
        model.warm_up(serving.max_batch_size)
    except Problem:
        raise
    except Exception as exc:  # any failure leaves the old version serving
        log.exception("version %s at %s failed to load or warm up", version, path)
        raise load_failure(root, version, exc) from None
    log.info("loaded %s version %s in %.2f s", model.name, version, time.perf_counter() - started)
    return model
