"""The Python face of modelmill: ``Pipeline`` and ``load``.

    pipeline = Pipeline.from_yaml("income.yaml").fit()
    pipeline.evaluate("test.csv")
    pipeline.predict(frame)
    pipeline.save("bundle/")
    modelmill.load("bundle/").predict(frame)
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Self, TypeAlias

import numpy as np
import pandas as pd
import torch
import yaml

from modelmill.assembly import FittedParts, build_feature, build_model, labelled_rows, model_maker, prediction_frame
from modelmill.bundle import WEIGHTS, Bundle, encode_weights, read_bundle, sha256, write_bundle
from modelmill.config import PipelineConfig, dump_config, load_config, parse_config
from modelmill.config.schema import DataConfig
from modelmill.data.image_values import hashable_frame, resolve_image_paths
from modelmill.data.clean import CleaningReport, clean_rows, count_clipped, drop_outlier_rows
from modelmill.data.sources import read_table
from modelmill.data.split import split_frame
from modelmill.data.validate import check_columns, validate_frame
from modelmill.errors import DataError, ModelError
from modelmill.evaluation.metrics import check_metric, compute_metrics, default_metric, metric_direction
from modelmill.evaluation.plots import make_plots
from modelmill.evaluation.report import render_report
from modelmill.features import TARGETS, Target
from modelmill.models import Learner
from modelmill.training import TensorData, Trainer, TrainResult, predict_raw

log = logging.getLogger("modelmill")
Data: TypeAlias = pd.DataFrame | str | Path


class Pipeline:
    """One config, the whole way from raw data to an evaluated bundle."""

    def __init__(self, config: PipelineConfig | dict[str, Any] | str | Path, *, base_dir: Path | None = None) -> None:
        self.config = load_config(config)
        self.base_dir = base_dir or (Path(config).parent if isinstance(config, (str, Path)) else Path.cwd())
        self.parts_: FittedParts | None = None
        self.result_: TrainResult | None = None
        self.metrics_: dict[str, Any] = {}
        self.cleaning_: CleaningReport | None = None
        self.warnings_: list[str] = []
        self.profile_: dict[str, Any] = {}
        self.plots_: dict[str, bytes] = {}  # PNG file name → bytes, of the latest scoring
        self.data_hash_ = ""

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        return cls(Path(path))

    # ---------------------------------------------------------------- reading

    def read(self, data: Data | None = None) -> pd.DataFrame:
        """A frame as given, or read from a path/URL, or from ``data.source`` of the config."""
        if isinstance(data, pd.DataFrame):
            return data
        if data is None:
            return self._image_paths(read_table(self.config.data, base_dir=self.base_dir),
                                     self.config.data.source, self.base_dir)
        return self._image_paths(read_table(DataConfig(source=str(data)), base_dir=Path.cwd()), str(data), Path.cwd())

    def _image_paths(self, frame: pd.DataFrame, source: str, base: Path) -> pd.DataFrame:
        """Relative image paths in a table start at the table's folder, not the cwd."""
        names = [f.name for f in self.config.features if f.type == "image" and f.name in frame.columns]
        if not names or "://" in source or source.startswith("dataset:"):
            return frame
        where = base / Path(source).expanduser()
        return resolve_image_paths(frame, names, where if where.is_dir() else where.parent)

    # ----------------------------------------------------------------- fitting

    def fit(self, data: Data | None = None, *, run_dir: Path | None = None, resume: bool = False) -> Self:
        """Validate, clean, split, fit the features on the training split, train, evaluate."""
        config = self.config
        frame = self.read(data)
        source = str(data) if isinstance(data, (str, Path)) else config.data.source
        self.warnings_ = validate_frame(frame, config, source=source)
        for warning in self.warnings_:
            log.warning(warning)
        self.data_hash_ = _frame_hash(frame)
        cleaned, report = clean_rows(frame, config)
        train, valid, test = self._split(cleaned)
        train = drop_outlier_rows(train, config, report)
        parts = self._fit_features(train, report)
        valid_data = parts.tensors(valid if len(valid) else train)
        self.result_ = self._train(parts, parts.tensors(train), valid_data, run_dir, resume)
        self.parts_, self.cleaning_ = parts, report
        self.profile_ = parts.profile(train)
        self.metrics_, self.plots_ = self._score(test, run_dir / "plots" if run_dir else None,
                                                 history=self.result_.history)
        self.metrics_["rows"] = {"train": len(train), "valid": len(valid), "test": len(test)}
        return self

    def _split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        split = self.config.data.split
        classify = self.config.target.type != "number"
        train, valid, test = split_frame(frame, split, target=self.config.target.name, classify=classify)
        if split.method == "files":
            test = self._read_extra(split.test_source)
            if split.valid_source:
                valid = self._read_extra(split.valid_source)
        if test.empty:
            raise DataError("the test split is empty; use more rows or a larger data.split.test")
        return train, valid, test

    def _read_extra(self, source: str | None) -> pd.DataFrame:
        options = self.config.data.model_copy(update={"source": str(source), "format": "auto", "query": None})
        frame = self._image_paths(read_table(options, base_dir=self.base_dir), str(source), self.base_dir)
        check_columns(frame, [f.name for f in self.config.features] + [self.config.target.name], source=str(source))
        return frame

    def _fit_features(self, train: pd.DataFrame, report: CleaningReport) -> FittedParts:
        config = self.config
        features = [build_feature(fc, config).fit(train[fc.name]) for fc in config.features]
        for feature in features:
            state = feature.state()
            if "clip" in state:
                count_clipped(train, feature.name, state["clip"], report)
            if "fill" in state:
                report.column(feature.name)["filled_with"] = state["fill"]
            if state.get("truncated", {}).get("texts"):
                cut = state["truncated"]
                report.column(feature.name)["truncated_texts"] = cut["texts"]
                log.warning(f"{feature.name}: {cut['texts']} of {cut['of']} training texts are longer than "
                            f"{cut['max_length']} tokens and were cut (raise max_length to keep more)")
        target = TARGETS.get(config.target.type)(config.target).fit(train[config.target.name])
        torch.manual_seed(config.training.seed)  # the initial weights are part of a repeatable run
        return FittedParts(config, features, target, build_model(config, features, target))

    def _train(self, parts: FittedParts, train: TensorData, valid: TensorData,
               run_dir: Path | None, resume: bool) -> TrainResult:
        task = parts.target.task
        metric = self.config.training.early_stopping.metric
        monitor = default_metric(task) if metric == "auto" else metric
        check_metric(task, monitor, "training.early_stopping.metric")
        mode: Literal["max", "min"] = "min" if monitor == "loss" else metric_direction(monitor)
        target = parts.target

        def scorer(raw: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
            metrics = _metrics(target, raw, target.untransform(truth))
            return {k: v for k, v in metrics.items() if isinstance(v, float)}

        maker = model_maker(self.config)
        if isinstance(maker, Learner):
            return _fit_learner(maker, parts, train, valid, scorer, monitor)
        trainer = Trainer(self.config.training, loss=target.loss(), scorer=scorer, monitor=monitor, mode=mode,
                          checkpoint_dir=run_dir / "checkpoints" if run_dir else None)
        return trainer.fit(parts.model, train, valid, resume=resume)

    # ------------------------------------------------------ using a fitted one

    @property
    def parts(self) -> FittedParts:
        if self.parts_ is None:
            raise ModelError("this pipeline is not fitted yet; call fit() or modelmill.load() first")
        return self.parts_

    def predict(self, data: Data) -> pd.DataFrame:
        """Predictions for every row: the predicted value and, for classes, probabilities."""
        frame = self.read(data)
        if frame.empty:
            raise DataError("0 rows to predict", source=str(data) if not isinstance(data, pd.DataFrame) else None)
        check_columns(frame, [f.name for f in self.parts.features],
                      source=str(data) if not isinstance(data, pd.DataFrame) else "the frame")
        predictions = self.parts.predict(frame)
        return prediction_frame(predictions, self.config.target.name, frame.index)

    def evaluate(self, data: Data, *, out_dir: Path | None = None) -> dict[str, Any]:
        """Metrics on labelled data; with ``out_dir`` also the plots and an HTML report."""
        frame = self.read(data)
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        check_columns(frame, [f.name for f in self.parts.features] + [self.config.target.name], source=source)
        metrics, plots = self._score(frame, out_dir / "plots" if out_dir else None, history=[])
        if out_dir:
            (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
            (out_dir / "report.html").write_bytes(
                self._report_html(f"{self.config.name}: evaluation on {source}", metrics, plots, {}))
        return metrics

    def _score(self, frame: pd.DataFrame, plots_dir: Path | None, *,
               history: list[dict[str, float]]) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Metrics on the labelled rows, and the plots as PNG bytes (also written to
        ``plots_dir`` when given)."""
        parts = self.parts
        known = labelled_rows(frame, parts.target)
        if not known.any():
            raise DataError("no row has a known target value to evaluate against", column=parts.target.name)
        frame = frame.loc[known]
        raw = parts.raw(frame)
        truth = parts.target.codes(frame[parts.target.name])
        metrics = _metrics(parts.target, raw, truth)
        plots: dict[str, bytes] = {}
        if self.config.evaluation.plots:
            predictions = parts.target.postprocess(raw)
            proba = predictions.proba[:, 1] if parts.target.task == "binary" and predictions.proba is not None \
                else predictions.proba
            with tempfile.TemporaryDirectory() as temp:
                written = make_plots(parts.target.task, np.asarray(truth), predictions.codes, proba,
                                     parts.target.class_names, history, plots_dir or Path(temp))
                plots = {path.name: path.read_bytes() for path in written.values()}
        return metrics, plots

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        """Write the bundle directory (atomically); returns its path."""
        parts = self.parts
        weights = encode_weights(parts.model.state_dict())
        files: dict[str, bytes] = {
            "config.yaml": dump_config(self.config).encode(),
            "schema.json": _json(parts.input_schema()),
            "features.json": _json(parts.feature_state()),
            WEIGHTS: weights,
            "profile.json": _json(self.profile_),
            "metrics.json": _json(self.metrics_),
        }
        if self.cleaning_ is not None:
            files["cleaning_report.json"] = _json(self.cleaning_.as_dict())
        if self.result_ is not None:
            files["history.json"] = _json(self.result_.history)
        for name, png in self.plots_.items():
            files[f"plots/{name}"] = png
        if self.config.evaluation.report:
            files["report.html"] = self._report_html(f"{self.config.name}: test-set report", self.metrics_,
                                                     self.plots_, self._run_sections())
        info = {"name": self.config.name, "config_sha256": sha256(files["config.yaml"]),
                "data_sha256": self.data_hash_}
        return write_bundle(Path(path), files, info)

    def _run_sections(self) -> dict[str, Any]:
        """Cleaning, training and warnings, as sections of the run's report."""
        sections: dict[str, Any] = {}
        if self.cleaning_ is not None:
            report = self.cleaning_.as_dict()
            sections["Cleaning"] = {k: v for k, v in report.items() if k != "columns"}
            sections["Cleaning per column"] = report["columns"]
        if self.result_ is not None:
            sections["Training"] = {"epochs run": self.result_.epochs_run, "best epoch": self.result_.best_epoch,
                                    "seconds": round(self.result_.seconds, 2), "stopped": self.result_.stop_reason}
        if self.warnings_:
            sections["Warnings"] = self.warnings_
        return sections

    def _report_html(self, title: str, metrics: dict[str, Any], pngs: dict[str, bytes],
                     sections: dict[str, Any]) -> bytes:
        plots = {name.removesuffix(".png"): png for name, png in pngs.items()}
        return render_report(title=title, metrics=metrics, plots=plots, sections=sections,
                             config_yaml=dump_config(self.config)).encode("utf-8")


def load(path: str | Path) -> Pipeline:
    """A fitted pipeline from a bundle (or a run) directory; every file's hash is verified."""
    return from_bundle(read_bundle(path))


def bundle_config(bundle: Bundle) -> PipelineConfig:
    """The resolved config a verified bundle was trained with."""
    return parse_config(yaml.safe_load(bundle.text("config.yaml")), origin=str(bundle.path / "config.yaml"))


def from_bundle(bundle: Bundle) -> Pipeline:
    """A fitted pipeline from a bundle already read and verified (so it is read once)."""
    config = bundle_config(bundle)
    pipeline = Pipeline(config, base_dir=bundle.path)
    pipeline.parts_ = FittedParts.from_state(config, bundle.json("features.json"), bundle.weights())
    pipeline.metrics_ = bundle.json("metrics.json")
    pipeline.profile_ = bundle.json("profile.json")
    return pipeline


def _fit_learner(learner: Learner[Any], parts: FittedParts, train: TensorData, valid: TensorData,
                 scorer: Callable[[torch.Tensor, torch.Tensor], dict[str, float]], monitor: str) -> TrainResult:
    """Fit a learner's module by its own solver; one history row, as one epoch would give."""
    start = time.perf_counter()
    learner.fit(parts.model, train.inputs, train.target, parts.target)
    seconds = time.perf_counter() - start
    loss = parts.target.loss()
    train_raw = predict_raw(parts.model, train.inputs, lengths=train.lengths)
    valid_raw = predict_raw(parts.model, valid.inputs, lengths=valid.lengths)
    row = {"epoch": 1.0, "seconds": seconds, "train_loss": float(loss(train_raw, train.target)),
           "valid_loss": float(loss(valid_raw, valid.target))}
    row.update({f"valid_{k}": v for k, v in scorer(valid_raw, valid.target).items()})
    return TrainResult([row], 1, row.get(f"valid_{monitor}"), 1, seconds, "fitted by the solver")


def _metrics(target: Target[Any], raw: torch.Tensor, truth: np.ndarray) -> dict[str, Any]:
    """Metrics of raw model outputs against true values given as codes (or numbers)."""
    predictions = target.postprocess(raw)
    if target.task == "number":
        return compute_metrics("number", truth.astype("float64"), predictions.codes)
    truth = truth.astype("int64")
    proba = predictions.proba
    if target.task == "binary" and proba is not None:
        proba = proba[:, 1]
    return compute_metrics(target.task, truth, predictions.codes, proba, target.class_names)


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()


def _frame_hash(frame: pd.DataFrame) -> str:
    """A fingerprint of the training data (row hashes), recorded in the manifest."""
    return sha256(pd.util.hash_pandas_object(hashable_frame(frame), index=False).to_numpy().tobytes())
