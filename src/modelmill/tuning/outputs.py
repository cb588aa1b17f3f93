"""What a search leaves behind: the best config as a plain YAML that ``modelmill train``
reproduces, the best config trained once and scored on the test split, a leaderboard, and a
report with the optimisation history and the parameters' importance."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from modelmill.files import atomic_open, atomic_write_bytes
from modelmill.tuning.study import TuneOutcome

if TYPE_CHECKING:
    from modelmill.api import Pipeline
    from modelmill.training import Callback

FIGURE_SIZE = (7.0, 4.5)  # inches: room for the parameters' long names
PATH_KEYS = (("data", "source"), ("data", "split", "test_source"), ("data", "split", "valid_source"))


def best_config_yaml(outcome: TuneOutcome, *, base_dir: Path, out_dir: Path) -> str:
    """The best trial's config, as the user wrote theirs plus the searched values; relative
    data paths rewritten to hold from ``out_dir``."""
    config = json.loads(json.dumps(outcome.best_config))
    for keys in PATH_KEYS:
        node: Any = config
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = _moved(node[keys[-1]], base_dir, out_dir)
    searched = "\n".join(f"#   {path}: {json.dumps(value)}" for path, value in outcome.best_overrides)
    header = (f"# The best config of study {outcome.study!r}: trial {outcome.best_number}, validation "
              f"{outcome.metric} {outcome.best_value:.6g}.\n# Searched values:\n{searched}\n")
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def write_outputs(outcome: TuneOutcome, folder: Path, *, best_yaml: str, best_path: Path,
                  final: Pipeline | None) -> Path:
    """best.yaml, leaderboard.csv, tune.json and report.html; returns the report's path."""
    with atomic_open(best_path) as handle:
        handle.write(best_yaml)
    folder.mkdir(parents=True, exist_ok=True)
    board = leaderboard(outcome)
    with atomic_open(folder / "leaderboard.csv") as handle:
        board.to_csv(handle, index=False)
    summary = {"study": outcome.study, "metric": outcome.metric, "direction": outcome.direction,
               "best_trial": outcome.best_number, "best_value": outcome.best_value,
               "best_overrides": outcome.best_overrides, "untuned_value": outcome.untuned_value,
               "counts": outcome.counts,
               "pruned_share": pruned_share(outcome), "importances": outcome.importances,
               "test_metrics": _floats(final.metrics_) if final is not None else None}
    with atomic_open(folder / "tune.json") as handle:
        json.dump(summary, handle, indent=2)
    report = _report_html(outcome, board, final, best_yaml)
    atomic_write_bytes(folder / "report.html", report.encode("utf-8"))
    return folder / "report.html"


def leaderboard(outcome: TuneOutcome) -> pd.DataFrame:
    """Every trial, the best first (finished before pruned before failed)."""
    frame = pd.DataFrame(outcome.trials)
    order = {"complete": 0, "pruned": 1, "fail": 2, "running": 3, "waiting": 4}
    frame["_state"] = frame["state"].map(order).fillna(5)
    ascending = outcome.direction == "minimize"
    frame = frame.sort_values(["_state", "value"], ascending=[True, ascending], na_position="last")
    return frame.drop(columns="_state").reset_index(drop=True)


def pruned_share(outcome: TuneOutcome) -> float:
    """Pruned trials over finished (complete or pruned) ones."""
    finished = outcome.counts.get("complete", 0) + outcome.counts.get("pruned", 0)
    return outcome.counts.get("pruned", 0) / finished if finished else 0.0


# ----------------------------------------------------------------- the report


def _report_html(outcome: TuneOutcome, board: pd.DataFrame, final: Pipeline | None, best_yaml: str) -> str:
    from modelmill.evaluation.report import render_report

    metrics: dict[str, Any] = {f"best valid {outcome.metric}": outcome.best_value}
    if outcome.untuned_value is not None:
        metrics[f"untuned valid {outcome.metric}"] = outcome.untuned_value
    if final is not None:
        metrics.update({f"test {k}": v for k, v in _floats(final.metrics_).items() if not k.startswith("valid_")})
    study = {"study": outcome.study, "trials": outcome.counts, "pruned share": round(pruned_share(outcome), 3),
             "best trial": outcome.best_number, "seconds of this command's trials": round(outcome.seconds, 1)}
    sections: dict[str, Any] = {"Study": study,
                                "Best trial's values": {path: value for path, value in outcome.best_overrides}}
    if outcome.importances:
        sections["Parameter importance (fANOVA)"] = {k: round(v, 4) for k, v in outcome.importances.items()}
    sections["Leaderboard"] = [{k: v for k, v in row.items() if not _blank(v)} for row in board.to_dict("records")]
    plots = {"optimisation history": history_png(outcome)}
    if outcome.importances:
        plots["parameter importance"] = importance_png(outcome.importances)
    return render_report(title=f"{outcome.study}: hyper-parameter search", metrics=metrics, plots=plots,
                         sections=sections, config_yaml=best_yaml)


def history_png(outcome: TuneOutcome) -> bytes:
    """Each completed trial's validation score by trial number, and the best so far."""
    from modelmill.evaluation.plots import new_figure, png_bytes

    fig, ax = new_figure(FIGURE_SIZE)
    done = [t for t in outcome.trials if t["state"] == "complete"]
    numbers = [t["trial"] for t in done]
    values = [t["value"] for t in done]
    ax.scatter(numbers, values, s=16, label="completed trial")
    better = min if outcome.direction == "minimize" else max
    best, running = [], None
    for value in values:
        running = value if running is None else better(running, value)
        best.append(running)
    ax.step(numbers, best, where="post", color="C3", label="best so far")
    pruned = [t["trial"] for t in outcome.trials if t["state"] == "pruned"]
    if pruned and values:
        ax.scatter(pruned, [min(values)] * len(pruned), marker="x", color="grey", s=14, label="pruned (at the bottom)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {outcome.metric}")
    ax.set_title("optimisation history")
    ax.legend(loc="best", fontsize=8)
    return png_bytes(fig)


def importance_png(importances: dict[str, float]) -> bytes:
    from modelmill.evaluation.plots import new_figure, png_bytes

    fig, ax = new_figure(FIGURE_SIZE)
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("share of the variance of the validation score (fANOVA)")
    ax.set_title("parameter importance")
    return png_bytes(fig)


# ----------------------------------------------------------------- helpers


def _moved(source: str, base_dir: Path, out_dir: Path) -> str:
    if "://" in source or source.startswith("dataset:") or Path(source).expanduser().is_absolute():
        return source
    return os.path.relpath((base_dir / source).resolve(), out_dir.resolve())


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def train_best(outcome: TuneOutcome, *, base_dir: Path, folder: Path) -> Pipeline:
    """The best config fitted once more, now scored on the test split (the one time a search
    reads it), its bundle under ``folder/best/<run>/bundle``."""
    return fit_best(outcome, base_dir=base_dir, folder=folder)[0]


def fit_best(outcome: TuneOutcome, *, base_dir: Path, folder: Path,
             callbacks: Sequence[Callback] = ()) -> tuple[Pipeline, Path]:
    """:func:`train_best`, with training ``callbacks`` (the search's MLflow run logging the
    fit's epochs), and the path of the bundle it wrote."""
    from modelmill.api import Pipeline
    from modelmill.config import parse_config
    from modelmill.runs import new_run_dir

    pipeline = Pipeline(parse_config(outcome.best_config, origin="the best config"), base_dir=base_dir,
                        callbacks=callbacks)
    run_dir = new_run_dir(folder, "best")
    pipeline.fit(run_dir=run_dir)
    return pipeline, pipeline.save(run_dir / "bundle")
