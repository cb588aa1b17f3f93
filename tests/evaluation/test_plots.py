"""Plots are written as real, readable PNGs, for every task and the awkward cases."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from modelmill.evaluation.plots import make_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": 1, "train_loss": 0.9, "valid_loss": 0.95, "valid_roc_auc": 0.6},
    {"epoch": 2, "train_loss": 0.6, "valid_loss": 0.7, "valid_roc_auc": 0.75},
    {"epoch": 3, "train_loss": 0.5, "valid_loss": 0.66, "valid_roc_auc": 0.8},
]


def assert_png(path: Path) -> None:
    """A PNG by signature, readable back by matplotlib, of a readable size, not huge."""
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    height, width = image.shape[:2]
    assert height >= 300 and width >= 300, (path.name, image.shape)
    assert float(image[..., :3].std()) > 0.01, f"{path.name} looks blank"
    assert path.stat().st_size < 400_000, (path.name, path.stat().st_size)


def binary_data(rows: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, rows), 0, 1)
    return y, (p1 > 0.5).astype(int), p1


def test_binary_writes_roc_pr_confusion_calibration_and_curves(tmp_path: Path) -> None:
    y, pred, p1 = binary_data()
    plots = make_plots("binary", y, pred, p1, ["bad", "good"], HISTORY, tmp_path / "plots")
    assert set(plots) == {"roc", "pr", "confusion", "calibration", "learning_curves"}
    for name, path in plots.items():
        assert path == tmp_path / "plots" / f"{name}.png"
        assert_png(path)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        f"{name}.png" for name in plots
    ), "no temporary files are left behind"


def test_binary_accepts_two_column_proba(tmp_path: Path) -> None:
    y, pred, p1 = binary_data()
    plots = make_plots("binary", y, pred, np.column_stack([1 - p1, p1]), None, [], tmp_path)
    assert {"roc", "pr", "calibration"} <= set(plots)


def test_binary_single_class_skips_roc_and_pr(tmp_path: Path) -> None:
    y = np.zeros(20, dtype=int)
    p1 = np.linspace(0.0, 0.6, 20)
    plots = make_plots("binary", y, (p1 > 0.5).astype(int), p1, None, [], tmp_path)
    assert "roc" not in plots and "pr" not in plots
    assert_png(plots["confusion"])
    assert_png(plots["calibration"])


def test_binary_without_proba_draws_only_the_confusion_matrix(tmp_path: Path) -> None:
    y, pred, _ = binary_data()
    assert set(make_plots("binary", y, pred, None, None, [], tmp_path)) == {"confusion"}


def test_category_writes_confusion_and_calibration(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    plots = make_plots("category", y, proba.argmax(axis=1), proba, ["low", "mid", "high"],
                       HISTORY, tmp_path)
    assert set(plots) == {"confusion", "calibration", "learning_curves"}
    for path in plots.values():
        assert_png(path)


def test_category_with_many_long_class_names(tmp_path: Path) -> None:
    k = 40
    rng = np.random.default_rng(2)
    y = rng.integers(0, k, 400)
    names = [f"a rather long class name number {i}" for i in range(k)]
    plots = make_plots("category", y, rng.integers(0, k, 400), None, names, [], tmp_path)
    assert set(plots) == {"confusion"}
    assert_png(plots["confusion"])


def test_number_writes_residuals_and_predicted_vs_actual(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=20_000)  # more than are drawn: the scatter is subsampled
    history = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "valid_rmse": 1 / e**0.5}
               for e in range(1, 41)]
    plots = make_plots("number", y, y + rng.normal(scale=0.3, size=y.size), None, None,
                       history, tmp_path)
    assert set(plots) == {"residuals", "predicted_vs_actual", "learning_curves"}
    for path in plots.values():
        assert_png(path)


def test_learning_curves_skip_empty_history_and_odd_values(tmp_path: Path) -> None:
    y, pred, p1 = binary_data()
    assert "learning_curves" not in make_plots("binary", y, pred, p1, None, [], tmp_path / "a")
    only_text = [{"epoch": 1, "note": "warm-up"}]
    assert "learning_curves" not in make_plots("binary", y, pred, p1, None, only_text, tmp_path / "b")
    odd = [{"train_loss": 0.9, "valid_loss": None}, {"train_loss": float("nan")},
           {"train_loss": 0.5, "valid_loss": 0.6, "stopped": True}]
    plots = make_plots("binary", y, pred, p1, None, odd, tmp_path / "c")
    assert_png(plots["learning_curves"])


def test_plots_can_be_drawn_from_several_threads(tmp_path: Path) -> None:
    y, pred, p1 = binary_data()

    def draw(i: int) -> dict[str, Path]:
        return make_plots("binary", y, pred, p1, None, [], tmp_path / str(i))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(draw, range(4)))
    for plots in results:
        assert len(plots) == 4
        for path in plots.values():
            assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.timeout(60)
def test_importing_and_plotting_leaves_pyplot_and_rcparams_alone(tmp_path: Path) -> None:
    # A fresh interpreter, since other tests may have imported pyplot. ``dict.items``
    # reads rcParams without resolving the "auto" backend, which itself imports pyplot.
    code = (
        "import sys, numpy as np, matplotlib\n"
        "before = dict(dict.items(matplotlib.rcParams))\n"
        "from modelmill.evaluation.plots import make_plots\n"
        "make_plots('binary', np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]),\n"
        "           np.array([0.1, 0.9, 0.4, 0.3]), None, [{'train_loss': 1.0}],\n"
        f"           {str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert dict(dict.items(matplotlib.rcParams)) == before, 'rcParams changed'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
