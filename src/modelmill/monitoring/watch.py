"""Judging the prediction log against the bundle it came from: the records cut into windows
(by count or by time), each window's drift per column (each feature type's own ``drift``
hook against the bundle's reference profile), prediction drift, realised and estimated
performance, and the alarms. ``modelmill monitor``, the dashboard and the server's drift
gauges all judge through :class:`Monitor`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from modelmill.bundle import read_bundle, resolve_bundle_dir
from modelmill.config.monitoring import MonitoringConfig, parse_window, window_seconds
from modelmill.errors import ConfigError, ModelmillError, ServingError
from modelmill.evaluation.metrics import check_metric, metric_direction
from modelmill.features import DriftResult, DriftConfig
from modelmill.monitoring import decay
from modelmill.monitoring.export import log_frame, open_log
from modelmill.monitoring.identity import ModelIdentity
from modelmill.monitoring.store import LogStore, database_message, display_url
from modelmill.monitoring.summary import (Alarm, ColumnDrift, LogInfo, ModelInfo, Performance, Ranked, Realised,
                                          Settings, Skipped, Summary, Window)
from modelmill.predictor import Predictor
from modelmill.predictor.output import PREDICTION, logged_predictions, prediction_drift
from modelmill.serving.versions import ModelRoot

@dataclass
class Reference:
    """What the log is judged against: a model version's fitted predictor, its reference
    profile, its test metrics and its manifest (from a bundle, or from a served model)."""

    path: Path
    version: str
    predictor: Predictor
    profile: dict[str, Any]
    metrics: dict[str, Any]
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: Path, version: str | None = None) -> Reference:
        """The bundle at ``path``, or a version of the folder of versions there (default: the
        newest that loads, as a server started over the folder serves it)."""
        root = ModelRoot(path)
        known = root.versions()
        if version is not None and version not in known:
            raise ServingError(f"--version {version!r} is not in {path} (versions: {', '.join(known)}). Fix: "
                               "name one of them, or leave --version out for the newest")
        candidates = [version] if version is not None else list(reversed(known))
        problems = []
        for candidate in candidates:
            try:
                bundle = read_bundle(resolve_bundle_dir(root.path if root.single is not None else root.path / candidate))
                # reads treated values only: no hash key needed (nor a wrong one taken for a broken version)
                return cls(root.path, candidate, Predictor.from_bundle(bundle, hash_key=False), bundle.profile(),
                           bundle.metrics(), bundle.manifest)
            except ModelmillError as exc:
                if version is not None or root.single is not None:
                    raise
                problems.append(f"version {candidate}: {exc}")
        raise ServingError(f"no version of {path} loads: {'; '.join(problems)}")

    @property
    def identity(self) -> ModelIdentity:
        from modelmill.monitoring import identity_of

        return identity_of(self.predictor.config.name, self.predictor.input_schema())


class Monitor:
    """Judges windows of logged records: drift, performance, alarms."""

    def __init__(self, reference: Reference, settings: MonitoringConfig | None = None, *,
                 window: int | str | None = None, metric: str | None = None) -> None:
        self.reference = reference
        self.settings = settings or reference.predictor.config.monitoring
        try:
            self.window = parse_window(window) if window is not None else self.settings.window
        except ValueError as exc:
            raise ConfigError(str(exc), path="--window") from None
        target = reference.predictor.target
        self.task = target.task
        name = metric or self.settings.decay.metric
        self.metric = check_metric(self.task, name, "--metric" if metric else "monitoring.decay.metric")
        if self.metric == "loss":
            raise ConfigError("the training loss is not a metric of served records. Fix: name one of the "
                              "task's metrics (roc_auc, accuracy, rmse …)", path="--metric")
        self.direction = metric_direction(self.metric)
        self.thresholds = self.settings.drift
        value = reference.metrics.get(self.metric)
        self.reference_metric = float(value) if isinstance(value, (int, float)) else None
        self.profile = reference.profile
        estimates = (self.profile.get("prediction") or {}).get("estimated") or {}
        # bundles from before the profile kept the estimate compare with the realised figure
        self.estimated_at_training = self.metric in estimates
        self.reference_estimate = float(estimates[self.metric]) if self.estimated_at_training \
            else self.reference_metric

    # ---------------------------------------------------------------- windows

    def windows(self, frame: pd.DataFrame) -> list[pd.DataFrame]:
        """The log cut into windows, oldest first: row windows end at the newest record (the
        oldest rows short of a full window are left out); time windows are spans of the
        window's length counted from the Unix epoch (whole hours and days in UTC; the newest
        may be partial; an empty span is no window)."""
        if not len(frame):
            raise ServingError("the prediction log holds no records (yet) in that time range. Fix: serve "
                               "with --log URL, send requests, and monitor once records are stored")
        seconds = window_seconds(self.window)
        if seconds is None:
            size = int(self.window)
            if size > len(frame):
                raise ServingError(f"the window of {size} rows (--window or monitoring.window) is larger than the log "
                                   f"({len(frame)} records in that range). Fix: a smaller window, a longer time "
                                   "range, or a time window (1d)")
            starts = range(len(frame) - size, -1, -size)
            return [frame.iloc[start:start + size] for start in reversed(starts)]
        epoch = (frame["logged_at"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        buckets = np.floor(epoch / seconds).astype(np.int64)
        return [part for _, part in frame.groupby(buckets, sort=True)]

    def judge(self, index: int, frame: pd.DataFrame, *, realised: bool = True) -> Window:
        """One window: each column's drift (ranked), prediction drift, performance, alarms.
        Inputs are compared whichever version served them (they do not depend on it); the
        predictions and the performance only on the rows of the reference's version (another
        version's predictions are another model's). ``realised=False`` leaves out the realised
        metric and its bootstrap (the server's gauges need only the estimate)."""
        judged = len(frame) >= self.settings.min_rows
        thresholds = self._per_test()
        results, skipped = self._column_drift(frame, thresholds)
        drift = sorted((_column(r) for r in results), key=lambda c: -c.score)
        own = frame[frame["version"].astype(str) == self.reference.version] if "version" in frame else frame
        predictions = self._predictions(own)
        reference = self.profile.get("prediction")
        if not len(own):
            skipped.append(Skipped(column=PREDICTION, reason=f"no record of version {self.reference.version} in the "
                                   "window: its predictions and performance are not judged"))
        elif reference:
            drift.append(_column(prediction_drift(reference, self.task, predictions, thresholds)))
        else:
            skipped.append(Skipped(column=PREDICTION, reason="the bundle's profile has no reference predictions "
                                   "(trained before bundles kept them)"))
        extrapolating = any({"out_of_range", "unseen"} & set(c.alarms) for c in drift if c.column != PREDICTION)
        performance = self._performance(own, predictions, extrapolating, realised=realised)
        alarms = self._alarms(index, drift, performance) if judged else []
        times = frame["logged_at"]
        target = self.reference.predictor.target.name
        return Window(index=index, start=_iso(times.iloc[0]), end=_iso(times.iloc[-1]), rows=len(frame),
                      labelled=int(frame[target].notna().sum()), judged=judged,
                      versions={str(k): int(v) for k, v in frame["version"].value_counts().sort_index().items()},
                      drift=drift, skipped=skipped, performance=performance, alarms=alarms)

    def _per_test(self) -> DriftConfig:
        """The thresholds with ``alpha`` shared among a window's tests (Bonferroni: the
        columns and the prediction), so that ``alpha`` bounds the chance that a window with
        no change sees any test reject, however many columns the model has."""
        tests = len(self.reference.predictor.features) + 1
        return self.thresholds.model_copy(update={"alpha": self.thresholds.alpha / tests})

    def _column_drift(self, frame: pd.DataFrame, thresholds: DriftConfig) -> tuple[list[DriftResult], list[Skipped]]:
        profiles = self.profile.get("features", {})
        results, skipped = [], []
        for feature in self.reference.predictor.features:
            column = frame[feature.name] if feature.name in frame else pd.Series([None] * len(frame))
            column = feature.from_log(column.reset_index(drop=True))
            reason = self._not_comparable(feature, column)
            if reason is None and feature.name not in profiles:
                reason = "the bundle's reference profile has no entry for it"
            if reason:
                skipped.append(Skipped(column=feature.name, reason=reason))
                continue
            results.append(feature.drift(profiles[feature.name], column, thresholds))
        return results, skipped

    @staticmethod
    def _not_comparable(feature: Any, column: pd.Series) -> str | None:
        if getattr(feature.config, "pii", False):
            return "personal data: the log keeps only a keyed hash of it"
        return cast(str | None, feature.not_comparable(column))

    def _predictions(self, frame: pd.DataFrame) -> Any:
        target = self.reference.predictor.target
        return logged_predictions(frame, target.name, self.task, list(getattr(target, "class_names", []) or []))

    def _performance(self, frame: pd.DataFrame, predictions: Any, extrapolating: bool, *,
                     realised: bool = True) -> Performance:
        target = self.reference.predictor.target
        labels = frame[target.name].reset_index(drop=True)
        given = labels.notna().to_numpy()
        known = target.labelled(labels) & given
        found = None
        if realised and known.sum() >= self.settings.decay.min_labels:
            rows = np.flatnonzero(known & _predicted(predictions))  # a prediction the log could not read: left out
            truth = np.asarray(target.codes(labels.iloc[rows]))
            result = decay.realised(self.task, self.metric, truth, predictions.rows(rows), confidence=self.settings.decay.confidence,
                                    resamples=self.settings.decay.bootstrap)
            if result is not None:
                found = Realised(value=result.value, low=_finite(result.low), high=_finite(result.high),
                                 rows=result.rows)
        estimate = decay.estimated(self.task, self.metric, predictions) if len(frame) else None
        return Performance(metric=self.metric, rows=len(frame), labels=int(given.sum()),
                           unknown_labels=int((given & ~known).sum()), reference=_finite(self.reference_metric),
                           realised=found, estimated=_finite(estimate),
                           reference_estimated=_finite(self.reference_estimate) if self.task != "number" else None,
                           extrapolating=extrapolating)

    def _worse(self, value: float, reference: float | None) -> bool:
        """Worse than ``reference`` by more than ``max_drop`` (absolute for scores, relative
        for errors, whose scale is the target's)."""
        if reference is None:
            return False
        drop = self.settings.decay.max_drop
        if self.direction == "max":
            return value < reference - drop
        return value > reference * (1 + drop)

    def _alarms(self, index: int, drift: list[ColumnDrift], performance: Performance) -> list[Alarm]:
        alarms = []
        for column in drift:
            for reason in column.alarms:
                kind = "prediction" if column.column == PREDICTION else "drift" if reason == "distribution" \
                    else "quality"
                alarms.append(Alarm(window=index, kind=kind, column=column.column, message=_message(column, reason)))
        found = performance.realised
        reference = self.reference_metric
        if found is not None and reference is not None and self._worse(found.value, reference):
            outside = found.high is None or (found.high < reference if self.direction == "max"
                                             else found.low is not None and found.low > reference)
            if outside:
                interval = f" [{found.low:.3f}, {found.high:.3f}]" if found.low is not None else ""
                alarms.append(Alarm(window=index, kind="decay", column=None, message=(
                    f"{self.metric} {found.value:.3f}{interval} on {found.rows} labelled rows against "
                    f"{reference:.3f} on the test split (allowed: {self.settings.decay.max_drop})")))
        expected = self.reference_estimate
        if found is None and performance.estimated is not None and expected is not None \
                and self._worse(performance.estimated, expected):
            note = "; inputs outside the training range make it less reliable" if performance.extrapolating else ""
            why = "no labels yet" if not performance.labels else \
                f"{performance.labels} labels, too few or {self.metric} undefined on them"
            basis = "estimated on the held-out rows at training" if self.estimated_at_training \
                else "on the test split (the bundle keeps no estimate of its own)"
            alarms.append(Alarm(window=index, kind="estimated_decay", column=None, message=(
                f"estimated {self.metric} {performance.estimated:.3f} ({why}) against {expected:.3f} "
                f"{basis}{note}")))
        return alarms

    # ---------------------------------------------------------------- summary

    def summarise(self, frame: pd.DataFrame, log: LogInfo) -> Summary:
        windows = [self.judge(i, part) for i, part in enumerate(self.windows(frame))]
        best: dict[str, tuple[float, int]] = {}
        for window in windows:
            if not window.judged:
                continue
            for column in window.drift:
                if column.column == PREDICTION:
                    continue
                score, count = best.get(column.column, (0.0, 0))
                best[column.column] = (max(score, column.score), count + column.drifted)
        ranking = [Ranked(column=name, score=score, windows_drifted=count)
                   for name, (score, count) in sorted(best.items(), key=lambda item: -item[1][0])]
        alarms = [alarm for window in windows for alarm in window.alarms]
        config = self.reference.predictor.config
        created = self.reference.manifest.get("created_at")
        return Summary(
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            model=ModelInfo(name=config.name, path=str(self.reference.path), version=self.reference.version,
                            task=self.task, created_at=str(created) if created else None),
            log=log,
            settings=Settings(window=self.window, min_rows=self.settings.min_rows, metric=self.metric,
                              thresholds={k: float(v) for k, v in self.thresholds.model_dump().items()},
                              max_drop=self.settings.decay.max_drop, confidence=self.settings.decay.confidence),
            windows=windows, ranking=ranking, alarms=alarms, alarm=bool(alarms),
            latest_alarm=bool(windows and windows[-1].alarms))


def read_log(store: LogStore, reference: Reference, *, since: float | None = None,
             until: float | None = None) -> tuple[pd.DataFrame, LogInfo]:
    """The log's records (checked to be of the reference's model) and what it holds."""
    differences = store.identity().differences(reference.identity)
    if differences:
        raise ServingError(f"the prediction log at {display_url(store.url)} holds another model's records "
                           f"({'; '.join(differences)}). Fix: monitor it with the bundle that served it")
    try:
        frame = log_frame(store, since=since, until=until)
    except SQLAlchemyError as exc:  # the database went away after the log was opened
        raise ServingError(f"the prediction log at {display_url(store.url)} cannot be read: "
                           f"{database_message(exc)}. Fix: check that the database runs, then try again") from None
    target = reference.predictor.target.name
    times = frame["logged_at"]
    info = LogInfo(url=display_url(store.url), rows=len(frame), labelled=int(frame[target].notna().sum()),
                   first=_iso(times.iloc[0]) if len(frame) else None, last=_iso(times.iloc[-1]) if len(frame) else None)
    return frame, info


def monitor_log(model: Path, url: str, *, window: int | str | None = None, metric: str | None = None,
                since: float | None = None, until: float | None = None, version: str | None = None) -> Summary:
    """``modelmill monitor``: the log at ``url`` judged against the bundle at ``model`` (a
    version of it, when a folder of versions)."""
    reference = Reference.load(model, version)
    monitor = Monitor(reference, window=window, metric=metric)  # a wrong option fails before any reading
    store = open_log(url)
    try:
        frame, info = read_log(store, reference, since=since, until=until)
    finally:
        store.close()
    return monitor.summarise(frame, info)


# ------------------------------------------------------------------ helpers


def _column(result: DriftResult) -> ColumnDrift:
    return ColumnDrift(column=result.feature, statistic=result.statistic, value=_finite(result.value),
                       threshold=result.threshold, score=_finite(result.score) or 0.0, p_value=_finite(result.p_value),
                       drifted=result.drifted, alarms=list(result.alarms), details=_plain(result.details))


def _message(column: ColumnDrift, reason: str) -> str:
    details = column.details
    if reason == "distribution":
        value = "∞" if column.value is None else f"{column.value:.3f}"
        p = "" if column.p_value is None else f", p = {column.p_value:.2g}"
        return f"{column.column}: the distribution moved ({column.statistic} {value} > {column.threshold}{p})"
    if reason == "missing":
        return (f"{column.column}: {details.get('missing_rate', 0):.1%} missing against "
                f"{float(details.get('reference_missing_rate') or 0):.1%} in training")
    if reason == "out_of_range":
        return f"{column.column}: {details.get('out_of_range_share', 0):.1%} of the values outside the training range"
    if reason == "unseen":
        return f"{column.column}: {details.get('unseen_share', 0):.1%} of the values never seen in training"
    if reason == "embedding":
        return (f"{column.column}: what the texts are about moved (mean sentence embedding moved by "
                f"{details.get('embedding_shift', 0):.2f} of the training texts' spread)")
    if reason == "unknown_tokens":
        return (f"{column.column}: {details.get('unknown_share', 0):.1%} of the tokens unknown to the tokenizer "
                f"against {float(details.get('reference_unknown_share') or 0):.1%} in training")
    return f"{column.column}: {reason}"


def _iso(moment: Any) -> str:
    return pd.Timestamp(moment).isoformat()


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)) else None


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite numbers to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    return value


def _predicted(predictions: Any) -> np.ndarray:
    """Rows whose logged prediction could be read back (a number, or a known class)."""
    codes = np.asarray(predictions.codes)
    if codes.dtype.kind == "f":
        return np.isfinite(codes)
    return codes >= 0
