"""The Python face of modelmill: ``Pipeline`` and ``load``.

    pipeline = Pipeline.from_yaml("income.yaml").fit()
    pipeline.evaluate("test.csv")
    pipeline.predict(frame)
    pipeline.save("bundle/")
    modelmill.load("bundle/").predict(frame)

Custom training callbacks (``modelmill.training.Callback``) go in with
``Pipeline(config, callbacks=[...])``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Self, TypeAlias

import pandas as pd
import torch

from modelmill.bundle import Bundle, Contents, Lineage, read_bundle, sha256, write_contents
from modelmill.config import PipelineConfig, dump_config, load_config
from modelmill.config.schema import DataConfig
from modelmill.data.clean import CleaningReport, clean_rows, drop_outlier_rows
from modelmill.data.image_values import hashable_frame
from modelmill.data.sources import read_table
from modelmill.data.split import SplitRecord, split_frame, split_rest
from modelmill.data.validate import check_columns, validate_frame
from modelmill.encryption import Key, as_key, seal_if
from modelmill.files import atomic_write_bytes
from modelmill.config.models import AutoModelConfig
from modelmill.errors import ConfigError, DataError, ModelError, ModelmillError
from modelmill.evaluation.card import ModelCard, TrainingCard, model_card
from modelmill.evaluation.metrics import Task, check_metric, default_metric, metric_direction
from modelmill.evaluation.report import render_report
from modelmill.explain import Explanation, attributions
from modelmill.features import Feature, Target, build_features, build_target
from modelmill.models import Learner
from modelmill.models.ensemble import Weighted
from modelmill.predictor import Predictor, model_maker, prediction_frame
from modelmill.predictor.output import prediction_profile
from modelmill.privacy.policy import PrivacyPolicy
from modelmill.scoring import candidate_scores, class_rows, decision_metrics, metric_intervals, metrics_of, score
from modelmill.training import Callback, TensorData, TrainResult
from modelmill.training.decision import decide, needs_held_out
from modelmill.training.ensemble import fit_ensemble
from modelmill.training.fitting import FitSettings, fit_model
from modelmill.training.learners import ignored_settings
from modelmill.training.privacy import DifferentialPrivacy

log = logging.getLogger("modelmill")
_PART = "__modelmill_part"  # which part a row given as train or validation belongs to, through cleaning
Data: TypeAlias = pd.DataFrame | str | Path


class Pipeline:
    """One config, the whole way from raw data to an evaluated bundle."""

    def __init__(self, config: PipelineConfig | dict[str, Any] | str | Path, *, base_dir: Path | None = None,
                 callbacks: Sequence[Callback] = ()) -> None:
        self.config = load_config(config)
        self.base_dir = base_dir or (Path(config).parent if isinstance(config, (str, Path)) else Path.cwd())
        self.callbacks = list(callbacks)
        self.predictor_: Predictor | None = None
        self.result_: TrainResult | None = None
        self.metrics_: dict[str, Any] = {}
        self.cleaning_: CleaningReport | None = None
        self.warnings_: list[str] = []
        self.profile_: dict[str, Any] = {}
        self.plots_: dict[str, bytes] = {}  # PNG file name → bytes, of the latest scoring
        self.split_: SplitRecord | None = None
        self.data_hash_ = ""
        self.timings_: dict[str, float] = {}  # seconds per stage of the latest fit
        self.decision_: dict[str, Any] = {}  # the threshold and calibration chosen, and what they gave
        self.source_ = ""  # where the data of the latest fit was read from
        self.class_rows_: dict[str, int] = {}  # rows per class the model learned from
        self.intervals_: dict[str, tuple[float, float]] = {}  # bootstrap intervals of the test metrics
        self.importance_: dict[str, float] | None = None  # column → importance, once computed; on the card
        self.explained_: dict[str, Any] = {}  # report sections: importance, records explained, tokens
        self.card_: ModelCard | None = None  # the card a loaded bundle holds
        self.privacy_: DifferentialPrivacy | None = None  # the latest fit's DP-SGD, with training.privacy
        self.key_: bytes | None = None  # an encrypted run's or bundle's key: whatever it writes is sealed

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        return cls(Path(path))

    # ---------------------------------------------------------------- reading

    def read(self, data: Data | None = None) -> pd.DataFrame:
        """A frame as given, or read from a path/URL, or from ``data.source`` of the config;
        under the privacy policy (dropped columns gone, personal values treated), so that
        nothing downstream (predictions, reports, explanation pages) sees a value in clear.
        Every value is treated, exactly once: a frame this policy treated already (its mark,
        such as one returned here) is taken as it is."""
        return self._policy().once(self._read(data))

    def _policy(self) -> PrivacyPolicy:
        return self.predictor_.privacy if self.predictor_ else PrivacyPolicy.from_config(self.config)

    def _read(self, data: Data | None = None) -> pd.DataFrame:
        if isinstance(data, pd.DataFrame):
            return data
        if data is None:
            return self._resolve_paths(read_table(self.config.data, base_dir=self.base_dir),
                                       self.config.data.source, self.base_dir)
        return self._resolve_paths(read_table(DataConfig(source=str(data)), base_dir=Path.cwd()), str(data),
                                   Path.cwd())

    def _resolve_paths(self, frame: pd.DataFrame, source: str, base: Path) -> pd.DataFrame:
        """Relative file paths in a table (of images, say) start at the table's folder, not
        the cwd; each feature knows whether its column holds paths."""
        if "://" in source or source.startswith("dataset:"):
            return frame
        where = base / Path(source).expanduser()
        folder = where if where.is_dir() else where.parent
        features = self.predictor_.features if self.predictor_ else build_features(self.config)
        resolved = frame
        for feature in features:
            if feature.name not in frame.columns:
                continue
            column = feature.resolve_paths(frame[feature.name], folder)
            if column is not frame[feature.name]:
                resolved = resolved.copy() if resolved is frame else resolved
                resolved[feature.name] = column
        return resolved

    # ----------------------------------------------------------------- fitting

    def fit(self, data: Data | None = None, *, run_dir: Path | None = None, resume: bool = False,
            evaluate: bool = True, test: pd.DataFrame | None = None, valid: pd.DataFrame | None = None,
            key: Key | None = None) -> Self:
        """Validate, clean, split, fit the features on the training split, train, evaluate.
        ``evaluate=False`` leaves the test split untouched (a search's trials are chosen on the
        validation score, ``metrics_["valid_<metric>"]``, alone). ``test``: the test split
        itself, kept out of ``data`` (retraining keeps the original one, so that challenger
        and champion are judged on the same rows); ``data`` then makes train and validation,
        unless ``valid`` gives the validation rows too (cleaned like ``data``). ``key``: an
        encrypted run, whose checkpoints and plots in ``run_dir`` (and bundle, by :meth:`save`)
        are sealed with it."""
        config = self.config
        if key is not None:
            self.key_ = as_key(key)
        if valid is not None and test is None:
            raise ValueError("valid= is given with test= only (the config's split makes both otherwise)")
        clock = _Stopwatch()
        # personal data is treated right after reading, so that cleaning, the split, the features,
        # the profile and the report only ever see treated values (a hash without its key fails here)
        policy = PrivacyPolicy.from_config(config)
        test = policy.once(test) if test is not None else None
        valid = policy.once(valid) if valid is not None else None
        features = build_features(config)  # unfitted, they already answer for their columns
        maker = model_maker(config)  # imports the model type's library (LightGBM for gbdt)
        maker.check(features)  # a model type that cannot take a column fails before any reading
        if isinstance(maker, Learner) and (ignored := ignored_settings(config.training)):
            log.warning(f"model type {config.model.type!r} fits by its own solver: {', '.join(ignored)} (settings "
                        "of the torch trainer, for torch model types) do not apply to it; its own are under model:")
        clock.lap("model type")
        frame = policy.once(self._read(data))
        if valid is not None:  # validated and cleaned with the rest (a duplicate across the two goes)
            frame = pd.concat([frame.assign(**{_PART: "train"}), valid.assign(**{_PART: "valid"})], ignore_index=True)
        clock.lap("read")
        source = str(data) if isinstance(data, (str, Path)) else config.data.source
        self.source_ = source
        self.warnings_ = validate_frame(frame, config, features, source=source)
        for warning in self.warnings_:
            log.warning(warning)
        self.data_hash_ = _frame_hash(frame)
        cleaned, report = clean_rows(frame, config, features)
        clock.lap("validate and clean")
        given_valid = None
        if valid is not None:
            part = cleaned.pop(_PART)
            cleaned, given_valid = cleaned.loc[part.eq("train")], cleaned.loc[part.eq("valid")]
        train, valid, test = self._split(cleaned.reset_index(drop=True), test, given_valid)
        self.split_ = SplitRecord.of(test, source=self._test_source(source), settings=config.data.split,
                                     columns=[f.name for f in config.features] + [config.target.name],
                                     rows={"train": len(train), "valid": len(valid), "test": len(test)})
        clock.lap("split")
        if needs_held_out(config.target) and not len(valid) and config.model.type not in ("auto", "ensemble"):
            raise ConfigError(_NO_HELD_OUT, path="target")  # before any fitting
        train = drop_outlier_rows(train, config, features, report)
        learned = pd.concat([train, valid], ignore_index=True) if maker.refits and len(valid) else train
        for treated in (train, valid, test, learned):  # whatever cleaning and splitting kept of the mark:
            policy.mark(treated)  # these rows were treated on reading, never again
        parts = self._fit_features(features, learned, report)
        parts.policy = policy
        self.class_rows_ = class_rows(parts.target, learned)
        train_data = parts.tensors(train)
        valid_data = parts.tensors(valid) if len(valid) else replace(train_data, held_out=False)
        clock.lap("fit features")
        self.result_ = self._train(parts, train_data, valid_data, run_dir, resume)
        self.decision_ = self._decide(parts, self.result_)
        clock.lap("fit the model")
        self.predictor_, self.cleaning_ = parts, report
        self.profile_ = parts.profile(learned)  # the rows the kept model learned from
        # predictions on rows the model did not learn from are what served predictions resemble
        profiled = test if evaluate and len(test) else valid if len(valid) and not maker.refits else learned
        self.profile_["prediction"] = prediction_profile(parts.target.task, parts.predict(profiled))
        self.metrics_, self.plots_, self.intervals_ = {}, {}, {}
        if evaluate:
            self._evaluate_test(parts, test, run_dir)
        self.metrics_["rows"] = {"train": len(train), "valid": len(valid), "test": len(test)}
        if self.privacy_ is not None:  # what differentially private training spent
            self.metrics_["privacy"] = self.privacy_.summary()
        held_out = bool(len(valid)) or isinstance(parts.maker, Weighted)  # an ensemble's folds hold rows out
        if held_out and self.result_.best_value is not None:  # the score the fit was chosen by
            self.metrics_[f"valid_{self._monitor(parts.target.task)}"] = float(self.result_.best_value)
        clock.lap("evaluate")
        self.timings_ = clock.laps
        log.info("seconds: " + ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in clock.laps.items()))
        return self

    def _evaluate_test(self, parts: Predictor, test: pd.DataFrame, run_dir: Path | None) -> None:
        if self.result_ is None:
            raise ModelError("the model is evaluated before it was fitted")
        self.metrics_, self.plots_ = score(parts, test, plots=self.config.evaluation.plots,
                                           plots_dir=run_dir / "plots" if run_dir else None,
                                           history=self.result_.history, key=self.key_)
        raw = parts.raw(test)
        self.metrics_.update(decision_metrics(parts.target, raw, test))
        self.intervals_ = metric_intervals(parts.target, raw, test, seed=self.config.training.seed)
        candidates = candidate_scores(parts, self.result_.members, test, self._monitor(parts.target.task))
        if candidates:
            self.metrics_["candidates"] = candidates
        if self.config.evaluation.explain and self.config.evaluation.report:
            self._explain_test(parts, test)

    def _explain_test(self, parts: Predictor, test: pd.DataFrame) -> None:
        """Importance and a few records explained, for the report and the card; a model they
        cannot explain leaves a note instead (explaining never fails a run)."""
        from modelmill.explain.report import explain_for_report

        try:
            found = explain_for_report(parts, test, self.profile_, records=self.config.evaluation.explain,
                                       seed=self.config.training.seed)
        except ModelmillError as exc:
            self.explained_ = {"Explanations": f"not made: {exc}"}
            return
        except Exception as exc:  # a fault of ours must not cost the trained model: noted, logged
            log.exception("explaining the test records failed")
            self.explained_ = {"Explanations": f"not made: an internal error ({type(exc).__name__}: {exc})"}
            return
        self.importance_ = found.importance
        self.explained_ = found.sections
        self.plots_.update(found.pngs)

    def _split(self, frame: pd.DataFrame, given_test: pd.DataFrame | None = None,
               given_valid: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        split = self.config.data.split
        classify = self.config.target.type != "number"
        if given_test is not None:
            if given_test.empty:
                raise DataError("the given test split is empty")
            if given_valid is not None:
                return frame, given_valid.reset_index(drop=True), given_test.reset_index(drop=True)
            train, valid = split_rest(frame, split, target=self.config.target.name, classify=classify)
            if split.method == "files" and split.valid_source:
                valid = self._read_extra(split.valid_source)
            return train, valid, given_test.reset_index(drop=True)
        train, valid, test = split_frame(frame, split, target=self.config.target.name, classify=classify)
        if split.method == "files":
            test = self._read_extra(split.test_source)
            if split.valid_source:
                valid = self._read_extra(split.valid_source)
        if test.empty:
            raise DataError("the test split is empty; use more rows or a larger data.split.test")
        return train, valid, test

    def _test_source(self, source: str) -> str:
        split = self.config.data.split
        return str(split.test_source) if split.method == "files" else source

    def read_source(self, source: str) -> pd.DataFrame:
        """Another table of the config's data (a test or validation file), read like
        ``data.source`` (paths relative to the config's folder)."""
        return self._read_extra(source)

    def _read_extra(self, source: str | None) -> pd.DataFrame:
        options = self.config.data.model_copy(update={"source": str(source), "format": "auto", "query": None})
        frame = self._resolve_paths(read_table(options, base_dir=self.base_dir), str(source), self.base_dir)
        frame = self._policy().once(frame)
        check_columns(frame, [f.name for f in self.config.features] + [self.config.target.name], source=str(source))
        return frame

    def _fit_features(self, features: list[Feature[Any]], train: pd.DataFrame, report: CleaningReport) -> Predictor:
        config = self.config
        for feature in features:
            notes = feature.fit(train[feature.name]).report()
            report.column(feature.name).update(notes.entries)
            for warning in notes.warnings:
                log.warning(warning)
        target = build_target(config).fit(train[config.target.name])
        torch.manual_seed(config.training.seed)  # the initial weights are part of a repeatable run
        return Predictor.build(config, features, target)

    def _train(self, parts: Predictor, train: TensorData, valid: TensorData,
               run_dir: Path | None, resume: bool) -> TrainResult:
        task = parts.target.task
        monitor = self._monitor(task)
        check_metric(task, monitor, "training.early_stopping.metric")
        mode: Literal["max", "min"] = "min" if monitor == "loss" else metric_direction(monitor)
        target = parts.target

        def scorer(raw: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
            metrics = metrics_of(target, raw, target.untransform(truth))
            return {k: v for k, v in metrics.items() if isinstance(v, float)}

        callbacks = [*self.callbacks, *self._private_training(target)]
        settings = FitSettings(self.config.training, target, scorer, monitor, mode, callbacks,
                               persist_cache=self.key_ is None)
        if isinstance(parts.maker, Weighted):
            model = self.config.model
            return fit_ensemble(parts.maker, parts.model, train, valid, settings, features=parts.features,
                                time_split=self.config.data.split.method == "time",
                                time_budget=(model.time_budget or "sized") if isinstance(model, AutoModelConfig)
                                else None)
        return fit_model(parts.maker, parts.model, train, valid, settings,
                         checkpoint_dir=run_dir / "checkpoints" if run_dir else None, resume=resume,
                         checkpoint_key=self.key_)

    def _private_training(self, target: Target[Any]) -> list[Callback]:
        """With ``training.privacy``: the DP-SGD callback, kept in ``privacy_`` for what it spent."""
        self.privacy_ = None
        settings = self.config.training.privacy
        if settings is None:
            return []
        if target.class_weights is not None:  # a weighted mean divides by the batch's total weight: rows not apart
            raise ConfigError("class weights cannot be combined with training.privacy: the weighted loss divides by "
                              "the weight of the whole batch, so one row's gradient depends on the others and DP-SGD "
                              "cannot bound it. Fix: class_weights: none", path="target.class_weights")
        self.privacy_ = DifferentialPrivacy(settings, seed=self.config.training.seed)
        return [self.privacy_]

    def _monitor(self, task: Task) -> str:
        """The metric early stopping watches, and ensembles are weighed and reported by."""
        metric = self.config.training.early_stopping.metric
        return default_metric(task) if metric == "auto" else metric

    def _decide(self, parts: Predictor, result: TrainResult) -> dict[str, Any]:
        """The target's threshold and calibration, chosen on the held-out predictions."""
        if not needs_held_out(self.config.target):
            return {}
        if result.held_out_raw is None or result.held_out_target is None:
            raise ConfigError(_NO_HELD_OUT, path="target")
        where = "the out-of-fold predictions" if isinstance(parts.maker, Weighted) else "the validation split"
        return decide(parts.target, result.held_out_raw, result.held_out_target, where=where)

    # ------------------------------------------------------ using a fitted one

    @property
    def parts(self) -> Predictor:
        """The fitted predictor (features, target and model)."""
        if self.predictor_ is None:
            raise ModelError("this pipeline is not fitted yet; call fit() or modelmill.load() first")
        return self.predictor_

    def predict(self, data: Data) -> pd.DataFrame:
        """Predictions for every row: the predicted value and, for classes, probabilities."""
        frame = self.read(data)
        if frame.empty:
            raise DataError("0 rows to predict", source=str(data) if not isinstance(data, pd.DataFrame) else None)
        check_columns(frame, [f.name for f in self.parts.features],
                      source=str(data) if not isinstance(data, pd.DataFrame) else "the frame")
        return prediction_frame(self.parts.predict(frame), self.config.target.name, frame.index)

    def explain(self, data: Data, *, steps: int | str = "auto", method: str = "auto") -> Explanation:
        """Per-record attributions per input column, in the model's raw output space, from a
        typical record of the training data (see :mod:`modelmill.explain`)."""
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        return attributions(self.parts, self.read(data), profile=self.profile_ or None, steps=steps,
                            method=method, source=source)

    def evaluate(self, data: Data, *, out_dir: Path | None = None) -> dict[str, Any]:
        """Metrics on labelled data; with ``out_dir`` also the plots and an HTML report (sealed
        with the pipeline's key when it has one: an encrypted bundle's evaluation is encrypted)."""
        frame = self.read(data)
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        check_columns(frame, [f.name for f in self.parts.features] + [self.config.target.name], source=source)
        metrics, plots = score(self.parts, frame, plots=self.config.evaluation.plots,
                               plots_dir=out_dir / "plots" if out_dir else None, history=[], key=self.key_)
        if out_dir:
            card = self.card_ if self.result_ is None else self.model_card()
            report = self._report_html(f"{self.config.name}: evaluation on {source}", metrics, plots, {}, card)
            for name, content in {"metrics.json": json.dumps(metrics, indent=2).encode(), "report.html": report}.items():
                # atomic: a reader (or a crash) never sees half a report
                atomic_write_bytes(out_dir / name, seal_if(content, self.key_, name))
        return metrics

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path, *, lineage: Lineage | None = None, key: Key | None = None) -> Path:
        """Write the bundle directory (atomically, never over an existing one); returns its path.
        ``lineage``: where it comes from, when not trained from data alone (retrained, say).
        ``key`` (32 bytes, their hex or base64 text, or a key file as a ``pathlib.Path``): every
        file sealed with it; by default the key of an encrypted fit or of the encrypted bundle loaded."""
        parts = self.parts
        config = self.config
        card = self.model_card()
        contents = Contents(
            name=config.name, config_yaml=dump_config(config), input_schema=parts.input_schema(),
            features=parts.feature_state(),
            models=parts.model_files(),
            profile=self.profile_, metrics=self.metrics_, data_sha256=self.data_hash_, plots=dict(self.plots_),
            cleaning=self.cleaning_.as_dict() if self.cleaning_ is not None else None,
            history=self.result_.history if self.result_ is not None else None,
            split=self.split_.as_json() if self.split_ is not None else None, model_card=card.as_json(),
            report=self._report_html(f"{config.name}: test-set report", self.metrics_, self.plots_,
                                     self._run_sections(), card) if config.evaluation.report else None)
        return write_contents(Path(path), contents, lineage, key=as_key(key) if key is not None else self.key_)

    def model_card(self) -> ModelCard:
        """The model card (Mitchell et al. 2019) of the latest fit, or the card a loaded bundle
        holds; with the columns' importance once ``importance_`` is set."""
        parts = self.parts
        if self.result_ is None and self.card_ is not None:  # loaded: the card of its training
            card = self.card_
        else:
            result, task = self.result_, parts.target.task
            training = None if result is None else TrainingCard(
                epochs_run=result.epochs_run, best_epoch=result.best_epoch, seconds=round(result.seconds, 2),
                stop_reason=result.stop_reason, monitored=self._monitor(task), best_value=result.best_value)
            view = parts.maker.view
            card = model_card(
                config=self.config, task=task, source=self.source_ or self.config.data.source,
                data_sha256=self.data_hash_,
                cleaning=self.cleaning_.as_dict() if self.cleaning_ is not None else None,
                split_rows=self.split_.rows if self.split_ else None, class_rows=self.class_rows_,
                widths=None if view == "raw" else {f.name: f.output_dim for f in parts.features}, inputs=view,
                parameters=_trained_parameters(parts), training=training, metrics=self.metrics_,
                intervals=self.intervals_, profile=self.profile_, warnings=self.warnings_,
                privacy_columns=parts.privacy.describe())
        if self.importance_ is not None:
            card = card.with_importance(self.importance_, method="permutation on the test split")
        return card

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
        if self.metrics_.get("candidates"):
            sections["Candidates (held-out and test scores, seconds, weight in the ensemble)"] = \
                self.metrics_["candidates"]
        if self.decision_:
            sections["Threshold and calibration"] = self.decision_
        sections.update(self.explained_)
        if self.warnings_:
            sections["Warnings"] = self.warnings_
        return sections

    def _report_html(self, title: str, metrics: dict[str, Any], pngs: dict[str, bytes],
                     sections: dict[str, Any], card: ModelCard | None = None) -> bytes:
        plots = {name.removesuffix(".png"): png for name, png in pngs.items()}
        return render_report(title=title, metrics=metrics, plots=plots, sections=sections,
                             config_yaml=dump_config(self.config), card=card).encode("utf-8")


def load(path: str | Path, *, runtime: str | None = None, key: Key | None = None) -> Pipeline:
    """A fitted pipeline from a bundle (or a run) directory; every file's hash is verified.
    ``runtime``: what runs the model (``torch``, ``onnxruntime``; None: what the bundle names).
    ``key``: an encrypted bundle's (bytes, hex or base64 text, or a key file as a ``pathlib.Path``; by
    default the environment's, ``MODELMILL_ENCRYPTION_KEY[_FILE]``); it is decrypted in memory."""
    return from_bundle(read_bundle(path, as_key(key) if key is not None else None), runtime=runtime)


def from_bundle(bundle: Bundle, *, runtime: str | None = None) -> Pipeline:
    """A fitted pipeline from a bundle already read and verified (so it is read once)."""
    pipeline = Pipeline(bundle.config(), base_dir=bundle.path)
    pipeline.predictor_ = Predictor.from_bundle(bundle, runtime)
    pipeline.metrics_ = bundle.metrics()
    pipeline.profile_ = bundle.profile()
    split = bundle.split()
    pipeline.split_ = SplitRecord.from_json(split) if split else None
    pipeline.card_ = _read_card(bundle)
    pipeline.key_ = bundle.key
    return pipeline


def _read_card(bundle: Bundle) -> ModelCard | None:
    """The bundle's model card; None for a bundle written before bundles held one, or whose
    card this version cannot read (the rest of the bundle still serves)."""
    data = bundle.model_card()
    if data is None:
        return None
    try:
        return ModelCard.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        log.warning(f"{bundle.path}: model_card.json left out: {exc}")
        return None


_NO_HELD_OUT = ("threshold: auto and calibration are chosen on held-out predictions, and this run holds no "
                "rows out: set data.split.valid above 0, or use model type auto or ensemble (which predict "
                "every row out of fold on small tables)")


def _trained_parameters(parts: Predictor) -> int | None:
    """The model's trained parameters; None when its runtime holds no torch module (ONNX)."""
    try:
        return parts.maker.trained_parameters(parts.model)
    except ModelError:
        return None


class _Stopwatch:
    """Seconds per stage, for the log (where a run's time goes)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = now - self.last
        self.last = now


def _frame_hash(frame: pd.DataFrame) -> str:
    """A fingerprint of the training data (row hashes), recorded in the manifest."""
    return sha256(pd.util.hash_pandas_object(hashable_frame(frame), index=False).to_numpy().tobytes())
