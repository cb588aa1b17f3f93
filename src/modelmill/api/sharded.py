"""``Pipeline.fit`` with ``data.shards: true``: the same stages on a table that never comes
whole to one machine. The source is read as shards on the Ray cluster (``sharding``),
cleaned there by the single-machine rules, split by a seeded hash, the features fitted from
merged per-shard statistics, the training rows turned into tensors on the cluster and
streamed to Ray Train's workers; the validation rows come to the driver (every worker
validates on them, as without shards), the test rows are scored on the cluster and only
their outputs and target values come back.

What needs the whole table at once, or a reader shards do not have, is refused before any
work (learners and ensembles, text and image features, a privacy policy, dropped outlier
rows, a time, column or files split, reader settings other than Parquet or comma-separated
CSV with a header, a threshold or calibration without a validation split, an encrypted run),
and what describes the table is taken from a seeded sample of about 100,000 training rows
(the data checks and the profile that drift monitoring compares against)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import torch

from modelmill.api.training import decide_threshold, monitored_metric, train_model
from modelmill.config import PipelineConfig
from modelmill.data.clean import CleaningReport
from modelmill.data.validate import check_columns, validate_frame
from modelmill.errors import ConfigError, DataError
from modelmill.evaluation.metrics import check_metric
from modelmill.features import Feature, Target, build_features, build_target
from modelmill.models import Learner, TensorData
from modelmill.models.ensemble import Weighted
from modelmill.predictor import Predictor, model_maker
from modelmill.predictor.output import prediction_profile
from modelmill.privacy.policy import PrivacyPolicy
from modelmill.scoring import decision_metrics, metric_intervals, score_outputs
from modelmill.training.decision import needs_held_out
from modelmill.training.streams import ALL_AT_ONCE

if TYPE_CHECKING:
    from modelmill.api.pipeline import Pipeline
    from modelmill.sharding import Shards

log = logging.getLogger("modelmill")
SAMPLE_ROWS = 100_000  # training rows drawn for the data checks and the profile


def check_sharded(config: PipelineConfig) -> None:
    """Refuse, before any reading, what a fit in shards cannot do (with the fix).

    Raises:
        ConfigError: the backend is not ray, or a setting needs the whole table at once.
        ModelError: a feature type that cannot be fitted from shards (text, images).
    """
    from modelmill.sharding.fit import check_partials
    from modelmill.sharding.split import check_split

    fix = "or data.shards: false"
    if config.training.backend != "ray":
        raise ConfigError("data.shards streams the rows to Ray Train's workers, which only the ray backend has. "
                          f"Fix: training.backend: ray (or --backend ray), {fix}", path="data.shards")
    if PrivacyPolicy.from_config(config, hash_key=False).active:
        raise ConfigError("a privacy policy (privacy:) is not applied to rows in shards yet: its treated values "
                          f"would be read on the cluster in clear. Fix: remove privacy.columns, {fix}",
                          path="privacy")
    outliers = config.cleaning.outliers
    if outliers.method != "none" and outliers.action == "drop":
        raise ConfigError("outliers.action: drop needs bounds fitted on the training split before its rows are "
                          f"dropped, a second pass this path does not make. Fix: cleaning.outliers.action: clip, {fix}",
                          path="cleaning.outliers.action")
    check_split(config.data.split)
    data = config.data
    readers = {"format": (data.format, ("auto", "csv", "parquet")), "delimiter": (data.delimiter, (None, ",")),
               "header": (data.header, (None, True)), "columns": (data.columns, (None,)),
               "encoding": (data.encoding, ("auto", "utf-8")), "query": (data.query, (None,)),
               "sheet": (data.sheet, (None,))}
    odd = [f"data.{name}: {value!r}" for name, (value, usual) in readers.items() if value not in usual]
    if odd:
        raise ConfigError(f"{', '.join(odd)}: shards are read as Parquet, or as comma-separated UTF-8 CSV with a "
                          f"header row, and nothing else. Fix: convert the files (Parquet keeps the types), {fix}",
                          path="data")
    if isinstance(model_maker(config), (Learner, Weighted)):
        raise ConfigError(f"model type {config.model.type!r} {ALL_AT_ONCE}", path="model.type")
    check_partials([*build_features(config), build_target(config)])  # text and images
    if needs_held_out(config.target) and not data.split.valid:
        raise ConfigError("threshold: auto and calibration are chosen on the validation split, and data.split.valid "
                          f"is 0. Fix: data.split.valid above 0, {fix}", path="data.split.valid")


def fit_in_shards(pipeline: Pipeline, data: str | Path | pd.DataFrame | None, *, given: tuple[Any, ...],
                  run_dir: Path | None, resume: bool, evaluate: bool) -> None:
    """Fit ``pipeline`` in shards (see the module) on ``data``, a path (relative to the working
    directory, as ``Pipeline.fit`` reads one) or None for ``data.source`` (relative to the
    config's folder); sets what ``Pipeline.fit`` sets. ``given``: the fit's test rows,
    validation rows and key, none of which a fit in shards takes."""
    from modelmill.sharding.read import user_errors

    config = pipeline.config
    if isinstance(data, pd.DataFrame) or any(value is not None for value in given):
        raise ConfigError("data.shards reads its rows on the Ray cluster from data.source (or a path given "
                          "instead): a frame in memory, given test or validation rows and an encryption key "
                          "are not taken. Fix: data.shards: false", path="data.shards")
    source, base = (str(data), Path.cwd()) if data is not None else (config.data.source, pipeline.base_dir)
    check_sharded(config)
    with user_errors(source):  # a batch's DataError, say, comes back from Ray as itself
        _fit(pipeline, source, base, run_dir=run_dir, resume=resume, evaluate=evaluate)


def _fit(pipeline: Pipeline, source: str, base: Path, *, run_dir: Path | None, resume: bool, evaluate: bool) -> None:
    from modelmill.api.pipeline import Stopwatch
    from modelmill.sharding import fit_features, read_shards
    from modelmill.sharding.clean import clean_shards
    from modelmill.sharding.collect import fingerprint, sample_frame, whole_frame
    from modelmill.sharding.split import split_shards
    from modelmill.sharding.tensors import class_rows_of, outputs_of, tensor_rows

    config = pipeline.config
    clock = Stopwatch()
    features = build_features(config)
    model_maker(config).check(features)
    if config.data.split.method == "stratified":
        log.info("data.shards: the stratified split is random here (by a seeded hash of each row's position)")
    if config.evaluation.explain:
        log.info("a fit in shards explains no test records (evaluation.explain): `modelmill explain` the bundle "
                 "on a sample of rows instead")
    shards = read_shards(source, base=base)
    check_columns(_columns(shards),
                  [f.name for f in config.features] + [config.target.name], source=source)
    pipeline.source_, pipeline.data_hash_ = source, fingerprint(shards)
    clock.lap("read")
    read = shards.rows
    cleaned, report = clean_shards(shards, config, features)
    del shards  # each stage's copy leaves the object store once the next one is materialised
    clock.lap("validate and clean")
    parts = split_shards(cleaned, config.data.split)
    kept = cleaned.rows
    del cleaned
    rows = {part: shards.rows for part, shards in parts.items()}
    log.info(f"rows in shards: {read:,} read, {kept:,} after cleaning; " +
             ", ".join(f"{part} {count:,}" for part, count in rows.items()))
    if not rows["train"]:
        raise DataError("no training rows are left after cleaning and the split. Fix: look at the cleaning report "
                        "(rows without a target, missing values a feature drops), or a smaller data.split.test / "
                        "valid", source=source)
    if needs_held_out(config.target) and not rows["valid"]:  # before any fitting, as on one machine
        raise DataError("the validation split is empty, and threshold: auto or calibration are chosen on it. Fix: "
                        "more rows or a larger data.split.valid", source=source)
    if evaluate and not rows["test"]:
        raise DataError("the test split is empty. Fix: more rows or a larger data.split.test", source=source)
    clock.lap("split")
    sample = sample_frame(parts["train"], SAMPLE_ROWS, seed=config.training.seed)
    pipeline.warnings_ = validate_frame(sample, config, features, source=f"{source} (a sample of training rows)")
    for warning in pipeline.warnings_:
        log.warning(warning)
    fitted = fit_features(parts["train"], [*features, build_target(config)])  # one pass over the shards
    features, target = [cast(Feature[Any], f) for f in fitted[:-1]], cast(Target[Any], fitted[-1])
    _note_features(features, report)
    torch.manual_seed(config.training.seed)  # the initial weights are part of a repeatable run
    predictor = Predictor.build(config, features, target)
    pipeline.class_rows_ = class_rows_of(parts["train"], predictor)
    train = tensor_rows(parts.pop("train"), predictor)  # the training rows are kept as tensors alone
    valid_frame = whole_frame(parts["valid"]) if rows["valid"] else sample
    valid = predictor.tensors(valid_frame)
    if not rows["valid"]:  # no held-out rows: the sample stands in, as the training rows do on one machine
        valid = TensorData(valid.inputs, valid.target, valid.lengths, held_out=False)
    clock.lap("fit features")
    check_metric(target.task, monitored_metric(config, target.task), "training.early_stopping.metric")
    pipeline.privacy_ = None
    pipeline.result_ = result = train_model(config, predictor, train, valid, callbacks=pipeline.callbacks,
                                            run_dir=run_dir, resume=resume, key=None)
    pipeline.decision_ = decide_threshold(config, predictor, result)
    clock.lap("fit the model")
    pipeline.predictor_, pipeline.cleaning_, pipeline.split_ = predictor, report, None
    pipeline.profile_ = predictor.profile(sample)
    pipeline.metrics_, pipeline.plots_, pipeline.intervals_ = {}, {}, {}
    if evaluate:
        raw, truth = outputs_of(parts["test"], predictor)
        pipeline.metrics_, pipeline.plots_ = score_outputs(
            target, raw, truth, plots=config.evaluation.plots, plots_dir=run_dir / "plots" if run_dir else None,
            history=result.history)
        pipeline.metrics_.update(decision_metrics(target, raw, truth))
        pipeline.intervals_ = metric_intervals(target, raw, truth, seed=config.training.seed)
        pipeline.profile_["prediction"] = prediction_profile(target.task, target.postprocess(raw))
    else:
        pipeline.profile_["prediction"] = prediction_profile(target.task, predictor.predict(valid_frame))
    pipeline.metrics_["rows"] = rows
    if rows["valid"] and result.best_value is not None:
        pipeline.metrics_[f"valid_{monitored_metric(config, target.task)}"] = float(result.best_value)
    clock.lap("evaluate")
    pipeline.timings_ = clock.laps
    pipeline.fitted_at_ = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.info(f"seconds ({sum(clock.laps.values()):.1f} in all): " +
             ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in clock.laps.items()))


def _columns(shards: Shards) -> pd.DataFrame:
    """An empty frame with the shards' columns, for the single-machine column check."""
    from modelmill.sharding import ROW

    return pd.DataFrame(columns=[name for name in shards.dataset.schema().names if name != ROW])


def _note_features(features: list[Feature[Any]], report: CleaningReport) -> None:
    for feature in features:
        notes = feature.report()
        report.column(feature.name).update(notes.entries)
        for warning in notes.warnings:
            log.warning(warning)
