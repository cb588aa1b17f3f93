"""``Pipeline``: one config, the whole way from raw data to an evaluated bundle (fit, predict,
explain, evaluate, save). Its training stage is in ``api.training``, what it writes about
itself in ``api.documents``, loading a bundle in ``api.loading``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Self, TypeAlias

import pandas as pd
import torch

from modelmill.api.documents import fitted_card, report_html, run_sections
from modelmill.api.training import NO_HELD_OUT, decide_threshold, monitored_metric, private_training, train_model
from modelmill.bundle import Contents, Lineage, sha256, write_contents
from modelmill.config import PipelineConfig, dump_config, load_config
from modelmill.config.schema import DataConfig
from modelmill.data.clean import CleaningReport, clean_rows, drop_outlier_rows
from modelmill.data.image_values import hashable_frame
from modelmill.data.sources import read_table
from modelmill.data.split import SplitRecord, split_frame, split_rest
from modelmill.data.validate import check_columns, validate_frame
from modelmill.encryption import Key, as_key, seal_if
from modelmill.errors import ConfigError, DataError, ModelError, ModelmillError
from modelmill.evaluation.card import ModelCard
from modelmill.evaluation.metrics import check_metric
from modelmill.explain import Explanation, attributions
from modelmill.features import Feature, build_features, build_target
from modelmill.files import atomic_write_bytes
from modelmill.models import Learner
from modelmill.models.ensemble import Weighted
from modelmill.predictor import Predictor, model_maker, prediction_frame
from modelmill.predictor.output import prediction_profile
from modelmill.privacy.policy import PrivacyPolicy
from modelmill.scoring import candidate_scores, class_rows, decision_metrics, metric_intervals, score
from modelmill.training import Callback, TrainResult
from modelmill.training.decision import needs_held_out
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
        # when the latest fit ended (UTC, ISO): its card's time, so that every save of one fit writes the same card
        self.fitted_at_: str | None = None

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
        if config.data.shards:
            from modelmill.api.sharded import fit_in_shards

            fit_in_shards(self, data, given=(test, valid, key), run_dir=run_dir, resume=resume, evaluate=evaluate)
            return self
        if key is not None:
            self.key_ = as_key(key)
        if valid is not None and test is None:
            raise ValueError("valid= is given with test= only (the config's split makes both otherwise)")
        clock = Stopwatch()
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
            raise ConfigError(NO_HELD_OUT, path="target")  # before any fitting
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
        self.privacy_ = None  # the metric is checked first, as it always was; then privacy's own check
        check_metric(parts.target.task, monitored_metric(config, parts.target.task), "training.early_stopping.metric")
        self.privacy_ = private_training(config, parts.target)
        callbacks = [*self.callbacks, *([self.privacy_] if self.privacy_ is not None else [])]
        self.result_ = train_model(config, parts, train_data, valid_data, callbacks=callbacks, run_dir=run_dir,
                                   resume=resume, key=self.key_)
        self.decision_ = decide_threshold(config, parts, self.result_)
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
            self.metrics_[f"valid_{monitored_metric(config, parts.target.task)}"] = float(self.result_.best_value)
        clock.lap("evaluate")
        self.timings_ = clock.laps
        self.fitted_at_ = datetime.now(timezone.utc).isoformat(timespec="seconds")
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
        candidates = candidate_scores(parts, self.result_.members, test,
                                      monitored_metric(self.config, parts.target.task))
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
            report = report_html(self.config, f"{self.config.name}: evaluation on {source}", metrics, plots, {},
                                 card)
            for name, content in {"metrics.json": json.dumps(metrics, indent=2).encode(), "report.html": report}.items():
                # atomic: a reader (or a crash) never sees half a report
                atomic_write_bytes(out_dir / name, seal_if(content, self.key_, name))
        return metrics

    # ------------------------------------------------------------------ saving

    def model_card(self) -> ModelCard:
        """The model card (Mitchell et al. 2019) of the latest fit, or the card a loaded bundle
        holds; with the columns' importance once ``importance_`` is set."""
        return fitted_card(self)

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
            report=report_html(config, f"{config.name}: test-set report", self.metrics_, self.plots_,
                               run_sections(self), card) if config.evaluation.report else None)
        return write_contents(Path(path), contents, lineage, key=as_key(key) if key is not None else self.key_)


class Stopwatch:
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
