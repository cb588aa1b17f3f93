"""Evaluation: metrics (scikit-learn), plots (matplotlib) and the offline HTML report."""

from modelmill.evaluation.metrics import (
    METRIC_NAMES,
    Task,
    check_metric,
    compute_metrics,
    default_metric,
    metric_direction,
)
from modelmill.evaluation.plots import make_plots
from modelmill.evaluation.report import write_report

__all__ = [
    "METRIC_NAMES",
    "Task",
    "check_metric",
    "compute_metrics",
    "default_metric",
    "make_plots",
    "metric_direction",
    "write_report",
]
