"""What a fitted pipeline writes about itself: its model card (Mitchell et al. 2019) with its
count of trained parameters, the sections of its run's report, and the report's HTML. They
read the pipeline's fitted state (``Pipeline.result_``, ``metrics_``, ...) and change nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelmill.api.training import monitored_metric
from modelmill.config import PipelineConfig, dump_config
from modelmill.errors import ModelError
from modelmill.evaluation.card import ModelCard, TrainingCard, model_card
from modelmill.evaluation.report import render_report
from modelmill.predictor import Predictor

if TYPE_CHECKING:
    from modelmill.api.pipeline import Pipeline


def fitted_card(pipeline: Pipeline) -> ModelCard:
    """The card of the pipeline's latest fit, or the card a loaded bundle holds; with the
    columns' importance once ``importance_`` is set."""
    parts = pipeline.parts
    if pipeline.result_ is None and pipeline.card_ is not None:  # loaded: the card of its training
        card = pipeline.card_
    else:
        result, task = pipeline.result_, parts.target.task
        training = None if result is None else TrainingCard(
            epochs_run=result.epochs_run, best_epoch=result.best_epoch, seconds=round(result.seconds, 2),
            stop_reason=result.stop_reason, monitored=monitored_metric(pipeline.config, task),
            best_value=result.best_value)
        view = parts.maker.view
        card = model_card(
            config=pipeline.config, task=task, source=pipeline.source_ or pipeline.config.data.source,
            data_sha256=pipeline.data_hash_,
            cleaning=pipeline.cleaning_.as_dict() if pipeline.cleaning_ is not None else None,
            split_rows=pipeline.split_.rows if pipeline.split_ else pipeline.metrics_.get("rows"),
            class_rows=pipeline.class_rows_,
            widths=None if view == "raw" else {f.name: f.output_dim for f in parts.features}, inputs=view,
            parameters=trained_parameters(parts), training=training, metrics=pipeline.metrics_,
            intervals=pipeline.intervals_, profile=pipeline.profile_, warnings=pipeline.warnings_,
            privacy_columns=parts.privacy.describe(), created_at=pipeline.fitted_at_)
    if pipeline.importance_ is not None:
        card = card.with_importance(pipeline.importance_, method="permutation on the test split")
    return card


def run_sections(pipeline: Pipeline) -> dict[str, Any]:
    """Cleaning, training and warnings, as sections of the run's report."""
    sections: dict[str, Any] = {}
    if pipeline.cleaning_ is not None:
        report = pipeline.cleaning_.as_dict()
        sections["Cleaning"] = {k: v for k, v in report.items() if k != "columns"}
        sections["Cleaning per column"] = report["columns"]
    result = pipeline.result_
    if result is not None:
        sections["Training"] = {"epochs run": result.epochs_run, "best epoch": result.best_epoch,
                                "seconds": round(result.seconds, 2), "stopped": result.stop_reason}
    if pipeline.metrics_.get("candidates"):
        sections["Candidates (held-out and test scores, seconds, weight in the ensemble)"] = \
            pipeline.metrics_["candidates"]
    if pipeline.decision_:
        sections["Threshold and calibration"] = pipeline.decision_
    sections.update(pipeline.explained_)
    if pipeline.warnings_:
        sections["Warnings"] = pipeline.warnings_
    return sections


def report_html(config: PipelineConfig, title: str, metrics: dict[str, Any], pngs: dict[str, bytes],
                sections: dict[str, Any], card: ModelCard | None = None) -> bytes:
    """The HTML report: metrics, plots (PNG file name → bytes), sections, the card and the config."""
    plots = {name.removesuffix(".png"): png for name, png in pngs.items()}
    return render_report(title=title, metrics=metrics, plots=plots, sections=sections,
                         config_yaml=dump_config(config), card=card).encode("utf-8")


def trained_parameters(parts: Predictor) -> int | None:
    """The model's trained parameters; None when its runtime holds no torch module (ONNX)."""
    try:
        return parts.maker.trained_parameters(parts.model)
    except ModelError:
        return None
