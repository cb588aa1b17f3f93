"""The model card: what a model is, what it learned from and how far to trust it, in one
JSON document (``model_card.json`` in the bundle) that also opens the run's report.

In the spirit of Mitchell et al. 2019, "Model Cards for Model Reporting": the data (source,
rows, date range, hash), what cleaning did per column, the features and their encodings,
the model and its size, how training went, the test metrics with bootstrap confidence
intervals, the most important columns, privacy measures, and the known limits, each found
by a stated rule. The card is pydantic models, so what is written is checked; its JSON
Schema is published in ``docs/model-card.schema.json`` (written by :func:`schema_text`; a
test keeps it current).

This module sits in the evaluation layer: it takes plain facts (the config, counts, the
cleaning report as a dict, metrics), never the fitted pipeline's objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modelmill.config.schema import PipelineConfig
from modelmill.evaluation.metrics import METRIC_NAMES, Task, metric_direction

CARD_VERSION = 1
RESAMPLES = 200  # bootstrap resamples of the test rows (enough for a 95% percentile interval's second digit)
CONFIDENCE = 0.95
SMALL_TEST_ROWS = 200  # fewer test rows: a metric's 95% interval is several points wide
MINORITY_SHARE = 0.10  # a class under this share of the training rows: accuracy flatters the model
EVENTS_PER_COLUMN = 10  # rows of the rarest class (or rows) per input column; Peduzzi et al. 1996
# Settings of a feature that say nothing about its encoding (shown elsewhere on the card).
_NOT_ENCODING = ("name", "type", "pii", "missing")

LimitKind = Literal["no_test_metrics", "small_test_split", "class_imbalance", "few_rows_per_column", "leakage",
                    "data_warning"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DateRange(_Model):
    """The span of a date column over the rows the model learned from."""

    column: str
    first: str
    last: str


class SplitRows(_Model):
    method: str = Field(description="How the rows were divided (data.split.method).")
    train: int
    valid: int
    test: int


class DataCard(_Model):
    source: str = Field(description="Where the data was read from (a path, URL, dataset: or SQL source).")
    rows_read: int | None = Field(description="Rows read, before cleaning.")
    rows_kept: int | None = Field(description="Rows left after cleaning, before the split.")
    sha256: str = Field(description="Fingerprint of the data read (row hashes), as in the bundle's manifest.")
    date_range: DateRange | None = Field(description="Of the first date column; null when there is none.")
    split: SplitRows | None


class CleaningCard(_Model):
    duplicates_dropped: int | None
    target_missing_dropped: int | None
    columns: dict[str, dict[str, Any]] = Field(description="Per column: what cleaning and fitting did to it "
                                               "(missing values filled, outliers clipped, texts cut …).")


class FeatureCard(_Model):
    name: str
    type: str
    encoding: dict[str, Any] = Field(description="The feature's settings that shape its encoding.")
    width: int | None = Field(description="Numbers the encoded column gives the model; null when the model "
                              "reads the raw view (codes and numbers) instead.")
    missing: str = Field(description="What is done with a missing value (missing.strategy).")
    pii: bool = Field(description="Marked as personal data.")


class ClassShare(_Model):
    name: str
    rows: int = Field(description="Rows of this class in the training split.")
    share: float


class TargetCard(_Model):
    name: str
    task: Task
    classes: list[ClassShare] = Field(description="The class balance of the training split; empty for numbers.")


class ModelInfo(_Model):
    type: str
    parameters: int | None = Field(description="Numbers fitting learned from the data (frozen pretrained "
                                   "weights excluded).")
    inputs: str = Field(description="encoded, raw (codes and numbers, as trees take them) or both.")
    settings: dict[str, Any] = Field(description="The model section of the config, without its type.")


class TrainingCard(_Model):
    epochs_run: int
    best_epoch: int
    seconds: float
    stop_reason: str
    monitored: str = Field(description="The metric the kept epoch (or ensemble) was chosen by.")
    best_value: float | None = Field(description="Its value on the held-out rows.")


class MetricValue(_Model):
    name: str
    value: float
    low: float | None = Field(description="Lower end of the bootstrap interval; null when undefined.")
    high: float | None
    better: Literal["higher", "lower"]


class MetricsCard(_Model):
    split: str = Field(description="The rows the metrics are of.")
    rows: int
    confidence: float = Field(description="Coverage of the intervals.")
    resamples: int = Field(description="Bootstrap resamples of the rows (percentile intervals; 0: none).")
    values: list[MetricValue]


class ColumnImportance(_Model):
    column: str
    importance: float


class ImportanceCard(_Model):
    computed: bool
    method: str | None
    columns: list[ColumnImportance] = Field(description="Most important first.")


class PrivacyCard(_Model):
    configured: bool
    measures: list[str] = Field(description="Each measure in words; empty: none configured.")


class Limit(_Model):
    kind: LimitKind
    message: str


class ModelCard(_Model):
    """A model's card (Mitchell et al. 2019)."""

    card_version: int = CARD_VERSION
    name: str
    created_at: str
    data: DataCard
    cleaning: CleaningCard | None
    features: list[FeatureCard]
    target: TargetCard
    model: ModelInfo
    training: TrainingCard | None
    metrics: MetricsCard | None = Field(description="Null when the test split was not evaluated.")
    importance: ImportanceCard
    privacy: PrivacyCard
    limits: list[Limit] = Field(description="Known limits, each found by a stated rule (see its message).")

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_importance(self, importance: Mapping[str, float] | None, *, method: str) -> ModelCard:
        """This card with the columns' importance (computed after the card, by ``explain``)."""
        return self.model_copy(update={"importance": importance_card(importance, method)})


# ------------------------------------------------------------------ building


def model_card(*, config: PipelineConfig, task: Task, source: str, data_sha256: str,
               cleaning: Mapping[str, Any] | None, split_rows: Mapping[str, int] | None,
               class_rows: Mapping[str, int], widths: Mapping[str, int] | None, inputs: str,
               parameters: int | None, training: TrainingCard | None, metrics: Mapping[str, Any],
               intervals: Mapping[str, tuple[float, float]], profile: Mapping[str, Any],
               warnings: Sequence[str], importance: Mapping[str, float] | None = None,
               importance_method: str = "permutation on the test split",
               created_at: str | None = None, privacy_columns: Sequence[str] = ()) -> ModelCard:
    """The card of a fitted model, from what fitting knows.

    Args:
        config: The resolved config.
        task: The target's task.
        source: Where the data was read from.
        data_sha256: The fingerprint of the data read.
        cleaning: The cleaning report (``CleaningReport.as_dict()``); None when unknown.
        split_rows: Rows of train, valid and test.
        class_rows: Training rows per class, in class order (empty for a number target).
        widths: Encoded width per feature; None when the model reads the raw view only.
        inputs: What the model reads: ``encoded``, ``raw`` or ``both``.
        parameters: The model's trained parameters.
        training: How training went; None when unknown.
        metrics: The test metrics (``metrics.json``); empty when not evaluated.
        intervals: Metric name → (low, high) bootstrap interval, of :func:`bootstrap_intervals`.
        profile: The reference profile (its date columns give the date range).
        warnings: Validation warnings (target leakage …).
        importance: Column → importance; None: not computed.
        importance_method: How ``importance`` was computed.
        created_at: ISO time (default: now, UTC).
        privacy_columns: The privacy policy, a line per column and the hash key's fingerprint
            (``PrivacyPolicy.describe()``; never a key or a value).
    """
    rows = dict(split_rows or {})
    target = TargetCard(name=config.target.name, task=task, classes=_classes(class_rows))
    features = [_feature(f.model_dump(mode="json"), widths) for f in config.features]
    data = DataCard(source=source, rows_read=_count(cleaning, "rows_in"), rows_kept=_count(cleaning, "rows_out"),
                    sha256=data_sha256, date_range=_date_range(profile),
                    split=SplitRows(method=config.data.split.method, train=rows.get("train", 0),
                                    valid=rows.get("valid", 0), test=rows.get("test", 0)) if rows else None)
    card_metrics = _metrics(task, metrics, intervals)
    return ModelCard(
        name=config.name, created_at=created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data=data, cleaning=_cleaning(cleaning), features=features, target=target,
        model=ModelInfo(type=config.model.type, parameters=parameters, inputs=inputs,
                        settings=config.model.model_dump(mode="json", exclude={"type"})),
        training=training, metrics=card_metrics, importance=importance_card(importance, importance_method),
        privacy=_differential_privacy(_privacy(config, privacy_columns), config, metrics),
        limits=known_limits(target, len(features), rows, card_metrics, warnings))


def importance_card(importance: Mapping[str, float] | None, method: str) -> ImportanceCard:
    if importance is None:
        return ImportanceCard(computed=False, method=None, columns=[])
    ranked = sorted(importance.items(), key=lambda item: -float(item[1]))
    return ImportanceCard(computed=True, method=method,
                          columns=[ColumnImportance(column=c, importance=float(v)) for c, v in ranked])


def _count(cleaning: Mapping[str, Any] | None, key: str) -> int | None:
    return int(cleaning[key]) if cleaning is not None and key in cleaning else None


def _cleaning(cleaning: Mapping[str, Any] | None) -> CleaningCard | None:
    if cleaning is None:
        return None
    return CleaningCard(duplicates_dropped=_count(cleaning, "duplicates_dropped"),
                        target_missing_dropped=_count(cleaning, "target_missing_dropped"),
                        columns=json.loads(json.dumps(dict(cleaning.get("columns", {})), default=str)))


def _classes(class_rows: Mapping[str, int]) -> list[ClassShare]:
    total = sum(class_rows.values())
    return [ClassShare(name=str(name), rows=int(rows), share=rows / total if total else 0.0)
            for name, rows in class_rows.items()]


def _feature(settings: dict[str, Any], widths: Mapping[str, int] | None) -> FeatureCard:
    name = str(settings["name"])
    return FeatureCard(name=name, type=str(settings["type"]),
                       encoding={k: v for k, v in settings.items() if k not in _NOT_ENCODING},
                       width=widths.get(name) if widths is not None else None,
                       missing=str(settings.get("missing", {}).get("strategy", "auto")),
                       pii=bool(settings.get("pii", False)))


def _date_range(profile: Mapping[str, Any]) -> DateRange | None:
    """The first column whose profile holds a first and a last date (a date feature's)."""
    for column, entry in dict(profile.get("features", {})).items():
        if isinstance(entry, Mapping) and entry.get("first") and entry.get("last"):
            return DateRange(column=column, first=str(entry["first"]), last=str(entry["last"]))
    return None


def _metrics(task: Task, metrics: Mapping[str, Any],
             intervals: Mapping[str, tuple[float, float]]) -> MetricsCard | None:
    values = []
    for name in METRIC_NAMES[task]:
        value = metrics.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        low, high = intervals.get(name, (None, None))
        values.append(MetricValue(name=name, value=float(value), low=low, high=high,
                                  better="higher" if metric_direction(name) == "max" else "lower"))
    if not values:
        return None
    resamples = RESAMPLES if intervals else 0
    return MetricsCard(split="test", rows=int(metrics.get("n_samples", 0)), confidence=CONFIDENCE,
                       resamples=resamples, values=values)


def _privacy(config: PipelineConfig, privacy_columns: Sequence[str] = ()) -> PrivacyCard:
    measures = [f"privacy policy: {line}" for line in privacy_columns]
    personal = [f.name for f in config.features if f.pii]
    if personal:
        log = config.serving.log
        kept = "as a keyed HMAC-SHA256" if log.pii == "hash" else "not at all"
        measures.append(f"personal data (pii: true): {', '.join(personal)}; the prediction log stores them {kept}")
    return PrivacyCard(configured=bool(measures), measures=measures)


def _differential_privacy(card: PrivacyCard, config: PipelineConfig, metrics: Mapping[str, Any]) -> PrivacyCard:
    """The card's privacy measures with differentially private training's line: the ε spent (from the
    metrics' ``privacy``) and what the guarantee covers."""
    settings = config.training.privacy
    if settings is None:
        return card
    spent = metrics.get("privacy") if isinstance(metrics.get("privacy"), Mapping) else None
    if spent:
        line = (f"differential privacy (DP-SGD): ε = {spent['epsilon']:.3g} spent of {spent['target_epsilon']:g} at "
                f"δ = {spent['delta']:g} ({spent['accountant']} accountant), noise multiplier "
                f"{spent['noise_multiplier']:.3g}, per-row gradient norm clipped to {spent['max_grad_norm']:g}, "
                f"sample rate {spent['sample_rate']:.3g}, {spent['steps']} steps")
    else:
        line = (f"differential privacy (DP-SGD): target ε = {settings.epsilon:g} at δ = {settings.delta:g}, per-row "
                f"gradient norm clipped to {settings.max_grad_norm:g}")
    scope = ("the guarantee covers the training rows' effect on the weights; statistics the features fitted on "
             "them (scaling, bins, vocabularies) and the validation rows used to pick the best epoch are not private; "
             "batch norm layers are group norm in a private model")
    measures = [*card.measures, line, scope]
    return card.model_copy(update={"configured": True, "measures": measures})


def known_limits(target: TargetCard, columns: int, rows: Mapping[str, int], metrics: MetricsCard | None,
                 warnings: Sequence[str]) -> list[Limit]:
    """The limits found by simple, stated rules: a small test split, a rare class, few rows
    per input column, and every validation warning (target leakage …)."""
    limits: list[Limit] = []
    test = rows.get("test", 0)
    if metrics is None:
        limits.append(Limit(kind="no_test_metrics", message="the test split was not evaluated: no test metrics"))
    elif test < SMALL_TEST_ROWS:
        limits.append(Limit(kind="small_test_split", message=(
            f"the test split has {test} rows (under {SMALL_TEST_ROWS}): its metrics are uncertain, "
            "read them with their intervals")))
    rarest = min(target.classes, key=lambda c: c.rows) if target.classes else None
    if rarest is not None and rarest.share < MINORITY_SHARE:
        limits.append(Limit(kind="class_imbalance", message=(
            f"class {rarest.name!r} is {rarest.share:.1%} of the training rows (under {MINORITY_SHARE:.0%}): "
            "accuracy flatters the model; read balanced accuracy, recall and PR AUC")))
    events = rarest.rows if rarest is not None else rows.get("train", 0)
    if columns and events / columns < EVENTS_PER_COLUMN:
        what = f"rows of the rarest class {rarest.name!r}" if rarest is not None else "training rows"
        limits.append(Limit(kind="few_rows_per_column", message=(
            f"{events} {what} for {columns} input columns (under {EVENTS_PER_COLUMN} per column, "
            "Peduzzi et al. 1996): the model may learn noise")))
    for warning in warnings:
        limits.append(Limit(kind="leakage" if "leakage" in warning else "data_warning", message=warning))
    return limits


# ------------------------------------------------------------------ intervals


def bootstrap_intervals(metrics_of_rows: Callable[[np.ndarray], Mapping[str, Any]], rows: int, *,
                        resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (Efron & Tibshirani 1993) of every float metric.

    Args:
        metrics_of_rows: The metrics of the rows at these positions (drawn with replacement).
        rows: How many rows there are.
        resamples: Resamples drawn.
        confidence: Coverage of each interval.
        seed: Seed of the draws (the same rows give the same intervals).

    Returns:
        Metric name → (low, high); a metric undefined on most resamples (ROC AUC of a
        resample holding one class) has none, as in ``monitoring.decay``.
    """
    if rows < 2:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        for name, value in metrics_of_rows(rng.integers(0, rows, rows)).items():
            if isinstance(value, float) and np.isfinite(value):
                draws.setdefault(name, []).append(value)
    tail = (1 - confidence) / 2 * 100
    intervals: dict[str, tuple[float, float]] = {}
    for name, values in draws.items():
        if len(values) >= resamples // 2:
            low, high = np.percentile(values, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals


# ------------------------------------------------------------------ schema


def card_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`ModelCard`, as published in docs/."""
    schema = ModelCard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    """The text of ``docs/model-card.schema.json``: ``python -c "from modelmill.evaluation.card import
    schema_text; print(schema_text(), end='')" > docs/model-card.schema.json``."""
    return json.dumps(card_schema(), indent=2, sort_keys=True) + "\n"


__all__ = ["CARD_VERSION", "ModelCard", "TrainingCard", "bootstrap_intervals", "card_schema", "known_limits",
           "model_card", "schema_text"]
