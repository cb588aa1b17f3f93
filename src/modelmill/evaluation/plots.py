"""Evaluation plots as PNG files.

Figures are built with :class:`matplotlib.figure.Figure` and drawn on their own Agg
canvas, never through ``pyplot``: pyplot keeps a global registry of figures and a global
backend, which is neither thread-safe nor polite to a user's own plotting session.
Nothing here changes ``rcParams``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    auc,
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_curve,
)

from modelmill.evaluation.metrics import Task
from modelmill.files import atomic_open

DPI = 100
SIZE = (6.0, 4.5)  # inches: 600 x 450 pixels at DPI
MAX_SCATTER = 5000  # points drawn in a scatter plot; more only slows drawing
MAX_ANNOTATED_CLASSES = 20  # count written in each confusion-matrix cell up to this size
CALIBRATION_BINS = 10


def make_plots(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    labels: list[str] | None,
    history: Sequence[Mapping[str, Any]],
    out_dir: Path,
) -> dict[str, Path]:
    """Draw the plots of a task into ``out_dir``.

    Args:
        task: ``"binary"``, ``"category"`` or ``"number"``.
        y_true: True values (rows,): class ids or numbers.
        y_pred: Predicted values (rows,), same coding as ``y_true``.
        proba: P(class 1) (rows,) for binary ((rows, 2) also accepted), (rows, k) for
            category, or ``None`` (plots that need probabilities are skipped).
        labels: Class names in class-id order, or ``None`` for the ids.
        history: Per-epoch dicts such as ``{"epoch": 1, "train_loss": 0.6,
            "valid_loss": 0.7, "valid_roc_auc": 0.8}``; empty skips the learning curves.
        out_dir: Folder for the PNGs; created if missing.

    Returns:
        Plot name → PNG path, for the plots that apply: ``roc``, ``pr``, ``confusion``,
        ``calibration`` (classification), ``residuals``, ``predicted_vs_actual``
        (number), ``learning_curves`` (any task, with a history).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _figures(task, y_true, y_pred, proba, labels, history)
    return {name: _save(figure, out_dir / f"{name}.png") for name, figure in figures.items()}


def render_plots(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    labels: list[str] | None,
    history: Sequence[Mapping[str, Any]],
) -> dict[str, bytes]:
    """The plots of :func:`make_plots` drawn in memory: file name (``roc.png``) → PNG bytes.
    Nothing touches a file (an encrypted run writes them sealed, or not at all)."""
    figures = _figures(task, y_true, y_pred, proba, labels, history)
    return {f"{name}.png": png_bytes(figure) for name, figure in figures.items()}


def _figures(
    task: Task,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    labels: list[str] | None,
    history: Sequence[Mapping[str, Any]],
) -> dict[str, Figure]:
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    figures: dict[str, Figure] = {}
    if task == "binary":
        figures.update(_binary_figures(y_true.astype(int), y_pred.astype(int), proba, labels))
    elif task == "category":
        figures.update(_category_figures(y_true.astype(int), y_pred.astype(int), proba, labels))
    else:
        figures.update(_number_figures(y_true.astype(float), y_pred.astype(float)))
    curves = _learning_curves(history)
    if curves is not None:
        figures["learning_curves"] = curves
    return figures


# ---------------------------------------------------------------- per task


def _binary_figures(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, labels: list[str] | None
) -> dict[str, Figure]:
    names = labels if labels is not None else ["0", "1"]
    figures = {"confusion": _confusion(y_true, y_pred, names)}
    p1 = _positive_proba(proba)
    if p1 is None:
        return figures
    # ROC and PR curves need both classes among the true values.
    if np.unique(y_true).size == 2:
        figures["roc"] = _roc(y_true, p1)
        figures["pr"] = _pr(y_true, p1)
    figures["calibration"] = _calibration(
        y_true, p1, "Mean predicted P(positive)", "Fraction of positives"
    )
    return figures


def _category_figures(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, labels: list[str] | None
) -> dict[str, Figure]:
    k = len(labels) if labels is not None else int(max(y_true.max(), y_pred.max())) + 1
    if labels is None and proba is not None and np.ndim(proba) == 2:
        k = max(k, int(np.shape(proba)[1]))
    names = labels if labels is not None else [str(i) for i in range(k)]
    figures = {"confusion": _confusion(y_true, y_pred, names)}
    if proba is not None:
        proba = np.asarray(proba, dtype=float)
        if proba.ndim == 2 and np.all(np.isfinite(proba)):
            # Calibration of the top-class confidence: is a 0.8-confident guess right 80%?
            top = proba.argmax(axis=1)
            correct = (top == y_true).astype(int)
            confidence = np.clip(proba.max(axis=1), 0.0, 1.0)
            figures["calibration"] = _calibration(
                correct, confidence, "Mean top-class confidence", "Fraction correct",
                "Calibration of the top class",
            )
    return figures


def _number_figures(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Figure]:
    finite = np.isfinite(y_true) & np.isfinite(y_pred)
    y_true, y_pred = _subsample(y_true[finite], y_pred[finite])
    residuals = y_true - y_pred

    fig, ax = new_figure()
    ax.scatter(y_pred, residuals, s=8, alpha=0.5, linewidths=0)
    ax.axhline(0.0, color="black", linewidth=1, linestyle="--")
    _label(ax, "Residuals vs predicted", "Predicted", "Residual (actual − predicted)")
    figures = {"residuals": fig}

    fig, ax = new_figure()
    ax.scatter(y_true, y_pred, s=8, alpha=0.5, linewidths=0)
    if y_true.size:
        low = float(min(y_true.min(), y_pred.min()))
        high = float(max(y_true.max(), y_pred.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--",
                label="perfect")
        ax.legend(loc="upper left")
    _label(ax, "Predicted vs actual", "Actual", "Predicted")
    figures["predicted_vs_actual"] = fig
    return figures


# ---------------------------------------------------------------- single plots


def _roc(y_true: np.ndarray, p1: np.ndarray) -> Figure:
    fpr, tpr, _ = roc_curve(y_true, p1)
    fig, ax = new_figure()
    ax.plot(fpr, tpr, label=f"ROC (AUC = {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="chance")
    _label(ax, "ROC curve", "False positive rate", "True positive rate")
    _unit_square(ax)
    ax.legend(loc="lower right")
    return fig


def _pr(y_true: np.ndarray, p1: np.ndarray) -> Figure:
    precision, recall, _ = precision_recall_curve(y_true, p1)
    # Labelled with average precision, the number the metrics report as pr_auc.
    ap = average_precision_score(y_true, p1)
    base_rate = float(np.mean(y_true))
    fig, ax = new_figure()
    ax.plot(recall, precision, drawstyle="steps-post", label=f"PR (AP = {ap:.3f})")
    ax.axhline(base_rate, color="grey", linewidth=1, linestyle="--",
               label=f"base rate ({base_rate:.3f})")
    _label(ax, "Precision-recall curve", "Recall", "Precision")
    _unit_square(ax)
    ax.legend(loc="lower left")
    return fig


def _calibration(
    y: np.ndarray, score: np.ndarray, xlabel: str, ylabel: str, title: str = "Calibration"
) -> Figure:
    observed, predicted = calibration_curve(
        y, score, n_bins=CALIBRATION_BINS, strategy="uniform", pos_label=1
    )
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", label="model")
    _label(ax, title, xlabel, ylabel)
    _unit_square(ax)
    ax.legend(loc="upper left")
    return fig


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> Figure:
    k = len(names)
    cm = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    side = float(min(12.0, max(4.5, 0.45 * k + 2.5)))
    fig, ax = new_figure((side + 1.0, side))
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    shown = [_shorten(name) for name in names]
    ax.set_xticks(range(k), shown, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), shown)
    if k <= MAX_ANNOTATED_CLASSES:
        threshold = cm.max() / 2.0 if cm.size else 0.0
        for i in range(k):
            for j in range(k):
                colour = "white" if cm[i, j] > threshold else "black"
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour)
    _label(ax, "Confusion matrix", "Predicted", "Actual")
    return fig


def _learning_curves(history: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Losses on the left, other validation/training metrics on the right."""
    series = _history_series(history)
    if not series:
        return None
    losses = {name: xy for name, xy in series.items() if name.endswith("loss")}
    others = {name: xy for name, xy in series.items() if name not in losses}
    groups = [(title, group) for title, group in (("Loss", losses), ("Metrics", others)) if group]
    fig = Figure(figsize=(SIZE[0] * len(groups), SIZE[1]), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for index, (title, group) in enumerate(groups, start=1):
        ax = fig.add_subplot(1, len(groups), index)
        for name, (xs, ys) in group.items():
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=name)
        _label(ax, title, "Epoch", title.lower())
        ax.legend(loc="best", fontsize="small")
    return fig


# ---------------------------------------------------------------- helpers


_NOT_CURVES = frozenset({"epoch", "seconds", "lr"})  # bookkeeping in the history rows, not metrics


def _history_series(
    history: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[list[float], list[float]]]:
    """Metric name → (epochs, values), keeping only finite numbers."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for index, row in enumerate(history, start=1):
        epoch = row.get("epoch", index)
        x = float(epoch) if _is_number(epoch) else float(index)
        for name, value in row.items():
            if name in _NOT_CURVES or not _is_number(value) or not np.isfinite(float(value)):
                continue
            xs, ys = series.setdefault(str(name), ([], []))
            xs.append(x)
            ys.append(float(value))
    return series


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _positive_proba(proba: np.ndarray | None) -> np.ndarray | None:
    """P(class 1) as (rows,), or None when absent or not finite."""
    if proba is None:
        return None
    p = np.asarray(proba, dtype=float)
    if p.ndim == 2:
        p = p[:, -1]
    if not np.all(np.isfinite(p)):
        return None
    return np.clip(p, 0.0, 1.0)


def _subsample(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.size <= MAX_SCATTER:
        return a, b
    rows = np.random.default_rng(0).choice(a.size, size=MAX_SCATTER, replace=False)
    return a[rows], b[rows]


def _shorten(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def new_figure(size: tuple[float, float] = SIZE) -> tuple[Figure, Axes]:
    """A figure on its own Agg canvas (never pyplot's registry), with one axes."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _unit_square(ax: Axes) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(True, alpha=0.3)


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes (for a report that holds its images in memory)."""
    stream = io.BytesIO()
    fig.savefig(stream, format="png", dpi=DPI)
    return stream.getvalue()


def _save(fig: Figure, path: Path) -> Path:
    with atomic_open(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=DPI)
    return path
