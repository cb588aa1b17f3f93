"""A served model: one loaded, verified and warmed version of a bundle, its predictor and
its request contract."""

from __future__ import annotations

import datetime
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import numpy as np
import pandas as pd

from modelmill.bundle import Bundle, read_bundle
from modelmill.config.serving import ServingConfig
from modelmill.errors import KEY_ERRORS, ServingError
from modelmill.predictor import Predictor, prediction_records
from modelmill.serving.problem import Problem
from modelmill.serving.schema import RequestContract, build_contract
from modelmill.serving.versions import ModelRoot, load_failure

if TYPE_CHECKING:
    from modelmill.explain import Explanation
    from modelmill.serving.forecast_model import ServedForecaster
    from modelmill.serving.recommend_model import ServedRecommender

log = logging.getLogger("modelmill.serving")


@dataclass
class ServedModel:
    """One loaded, verified version: its predictor, its request contract and its metadata."""

    task: ClassVar[str] = "predict"
    LIMITS: ClassVar[tuple[str, ...]] = ("max_batch_size", "max_wait_ms", "max_records", "max_body_bytes",
                                         "timeout_s", "unknown_categories", "explain_max_records",
                                         "explain_max_steps")  # the settings GET /v1/model shows
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
                                  unknown_categories=serving.unknown_categories, policy=predictor.privacy)
        return cls(predictor.config.name, version, predictor, contract, bundle.manifest, bundle.metrics(),
                   bundle.profile())

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One prediction per record, keyed like ``modelmill predict``'s output columns."""
        predictions = self.predictor.predict_records(records, treated=True)  # by the request contract
        return prediction_records(predictions, self.predictor.config.target.name)

    def explain(self, records: list[dict[str, Any]], *, max_steps: int) -> Explanation:
        """Attributions of ``records`` per input column from the bundle's own baseline record
        (:func:`modelmill.explain.attributions`). Integrated Gradients raise their steps per
        record until completeness holds, unless ``max_steps`` is below that method's own
        ceiling: then every record takes ``max_steps`` (``attributions`` has no cap on its
        automatic steps) and the answer's ``gap`` says how complete each one is.

        Raises:
            ModelError: the served model has no attribution method of its own (an ONNX graph).
        """
        from modelmill.explain import attributions  # captum and the methods load on the first call
        from modelmill.explain.gradients import MAX_STEPS

        names = [f.name for f in self.predictor.features]
        frame = self.predictor.privacy.mark(pd.DataFrame.from_records(records, columns=names))  # by the contract
        steps: int | str = "auto" if max_steps >= MAX_STEPS else max_steps
        return attributions(self.predictor, frame, profile=self.profile or None, steps=steps,
                            source="the request")

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


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """The JSON of ``POST /v1/explain``: the baseline record once, then per record what is
    explained, its output, the baseline's output, the completeness gap, the method, the
    steps and each column's attribution. A value JSON cannot hold (NaN, infinity) is null."""
    answers = []
    for row, explained in enumerate(explanation.explained):
        steps = None if explanation.steps is None else int(explanation.steps[row])
        answers.append({
            "explained": explained, "output": _number(explanation.output[row]),
            "baseline": _number(explanation.baseline[row]), "gap": _number(explanation.gap[row]),
            "method": explanation.method, "steps": steps,
            "attributions": {column: _number(value)
                             for column, value in zip(explanation.columns, explanation.attributions[row], strict=True)},
        })
    base = explanation.baseline_record
    return {"baseline_record": None if base is None else {k: _plain(v) for k, v in base.items()},
            "explanations": answers}


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A baseline value as JSON: numpy scalars as Python ones, dates as ISO text, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (pd.Timestamp, datetime.date)):
        return value.isoformat()
    return str(value)


Served: TypeAlias = "ServedModel | ServedForecaster | ServedRecommender"  # a version of any task, as served


def load_version(root: ModelRoot, version: str, serving: ServingConfig, bundle: Bundle | None = None) -> ServedModel:
    """Load and warm one ``task: predict`` version of ``root`` (see :func:`load_served`)."""
    model = load_served(root, version, serving, bundle, task="predict")
    assert isinstance(model, ServedModel)  # load_served refused another task
    return model


def load_served(root: ModelRoot, version: str, serving: ServingConfig, bundle: Bundle | None = None, *,
                task: str | None = None) -> Served:
    """Load (or take ``bundle``, already read) and warm one version of ``root``, of whichever
    task its config names (``task``: the one it must be; another is a 409 ``wrong_task``, the
    version not called broken). Failures become a 409 whose message holds no paths; a missing
    or wrong key (the privacy policy's hash key, a sealed bundle's encryption key) is raised
    as it is (:data:`KEY_ERRORS`): the process's key is wrong for every version, so it is no
    reason to call the version broken and serve an older one."""
    path = root.locate(version)
    started = time.perf_counter()
    try:
        bundle = bundle or read_bundle(path)
        _check_task(bundle, version, task)
        model: Served
        if bundle.task == "forecast":  # the forecasting package only where a forecast is served
            from modelmill.serving.forecast_model import ServedForecaster

            model = ServedForecaster.load(bundle, version, serving)
        elif bundle.task == "recommend":  # the recommending package only where a recommender is served
            from modelmill.serving.recommend_model import ServedRecommender

            model = ServedRecommender.load(bundle, version, serving)
        else:
            model = ServedModel.load(bundle, version, serving)
        model.warm_up(serving.max_batch_size)
    except (Problem, *KEY_ERRORS):
        raise
    except Exception as exc:  # any failure leaves the old version serving
        log.exception("version %s at %s failed to load or warm up", version, path)
        raise load_failure(root, version, exc) from None
    log.info("loaded %s version %s in %.2f s", model.name, version, time.perf_counter() - started)
    return model


def _check_task(bundle: Bundle, version: str, task: str | None) -> None:
    if task is None or bundle.task == task:
        return
    routes = {"predict": "/v1/predict", "forecast": "/v1/forecast", "recommend": "/v1/recommend"}
    raise Problem(409, "wrong_task", f"version {version!r} is a `task: {bundle.task}` model, and this server "
                  f"serves `task: {task}` models (its route is {routes.get(task, task)}); it stays unserved. "
                  "Fix: serve it with a server of its own, or remove it from this model folder")
