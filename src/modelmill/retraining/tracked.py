"""The closed loop's challenger as an MLflow run (action ``retrain``): its epochs, its bundle (whose
tags link it to the champion's run) and the figures it was judged by. Tracking never fails a
retraining."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill.errors import ModelmillError

if TYPE_CHECKING:
    from modelmill.bundle import Bundle
    from modelmill.config import PipelineConfig
    from modelmill.tracking.run import TrackedRun

log = logging.getLogger("modelmill.retrain")


def challenger_run(config: PipelineConfig, base_dir: Path, run_dir: Path, champion: Bundle,
                   trigger: str) -> TrackedRun | None:
    """The challenger's MLflow run (action ``retrain``), where the config (or MLFLOW_TRACKING_URI)
    tracks; None when it does not. Never an error: a retraining must not fail for its tracking,
    so what would stop a ``train`` (MLflow not installed, a wrong MLFLOW_TRACKING_URI) is a
    warning here, and an encrypted champion's challenger is not tracked (MLflow would hold its
    config, metrics and report in clear)."""
    from modelmill.tracking.client import tracking_uri
    from modelmill.tracking.run import TrackedRun

    try:
        uri = tracking_uri(config.tracking)
        if uri is None:
            return None
        if champion.encrypted:
            log.warning("tracking: the champion is encrypted, so its challenger is not tracked (MLflow would hold its "
                        "config, metrics and report in clear). Fix: set tracking.enabled: false to silence this")
            return None
        return TrackedRun.start(config, action="retrain", run_name=f"retrain {config.name} ({trigger})",
                                base_dir=base_dir, run_dir=run_dir, uri=uri)
    except ModelmillError as exc:
        log.warning(f"tracking: {exc}; the challenger is trained untracked")
        return None


def log_challenger(tracked: TrackedRun | None, bundle_path: Path | None, figures: dict[str, Any],
                   config: PipelineConfig) -> None:
    """The challenger's bundle on its run (its tags link it to the champion's run) and the
    figures it was judged by; never an error (TrackedRun's methods never raise)."""
    if tracked is None or bundle_path is None:
        return
    from modelmill.bundle import read_bundle

    try:
        bundle = read_bundle(bundle_path)
    except ModelmillError as exc:  # the audit and the promotion judge the bundle; its run only misses it
        log.warning(f"tracking: the challenger's bundle was not logged to MLflow: {exc}")
        return
    tracked.log_bundle(bundle, whole=config.tracking.log_bundle)
    tracked.log_metrics(_numbers(figures, "decision."))


def _numbers(figures: dict[str, Any], prefix: str) -> dict[str, float]:
    """The numbers among nested ``figures``, named by their path (``decision.recent.challenger``)."""
    found: dict[str, float] = {}
    for name, value in figures.items():
        if isinstance(value, dict):
            found.update(_numbers(value, f"{prefix}{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[f"{prefix}{name}"] = float(value)
    return found
