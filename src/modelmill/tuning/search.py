"""``modelmill.tune``: the whole search as one call, what the CLI's ``tune`` runs: the study,
the best config written as YAML, the best config trained once and scored on the test split,
the leaderboard and the report.

    result = modelmill.tune("credit.yaml", trials=50, timeout=600)
    result.best_path         # runs/tune/credit/best.yaml: `modelmill train` reproduces the best trial
    result.final.metrics_    # the best config on the test split
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill.config import PipelineConfig, load_config
from modelmill.config.schema import NAME_PATTERN
from modelmill.errors import ConfigError
from modelmill.tuning.outputs import best_config_yaml, fit_best, write_outputs
from modelmill.tuning.study import TuneOutcome, TuneSettings, prepare, run_study
from modelmill.tuning.tracked import log_search, log_trials_after, search_run

if TYPE_CHECKING:
    from modelmill.api import Pipeline
    from modelmill.tracking.run import TrackedRun

log = logging.getLogger("modelmill")
_STUDY_NAME = re.compile(NAME_PATTERN)
BACKENDS = ("local", "ray")  # where the trials run: this process, or a Ray cluster through Ray Tune


@dataclass
class TuneResult:
    """A finished search: the study's outcome, where the best config and the report are, and
    the best config trained on all of its training rows and scored on the test split."""

    outcome: TuneOutcome
    best_path: Path
    report_path: Path
    final: Pipeline | None
    repeatable: bool  # the final fit's validation score equals the best trial's
    tracked: TrackedRun | None = None  # the search's MLflow run, when it was tracked


def tune(config: PipelineConfig | dict[str, Any] | str | Path, *, base_dir: Path | None = None,
         trials: int | None = None, timeout: float | None = None, study: str | None = None,
         runs: str | Path = "runs", storage: str | None = None, output: str | Path | None = None,
         keep: bool = False, final: bool = True, pruning: bool | None = None, backend: str = "local",
         progress: Callable[[str], None] = log.info, track: bool = False) -> TuneResult:
    """Search the config's ``tune.space`` (or its model type's built-in space); see
    :class:`~modelmill.config.tune.TuneConfig`. Arguments left None take the config's values.
    ``backend="ray"`` runs the trials side by side on a Ray cluster through Ray Tune
    (:mod:`modelmill.tuning.ray_search`): the same space and outputs, no resumable study.
    With ``track`` (what the CLI's ``tune`` does) and tracking on in the config (or
    MLFLOW_TRACKING_URI), the search is an MLflow run and each trial a run nested in it
    (:mod:`modelmill.tuning.tracked`)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown tune backend {backend!r}; valid: {', '.join(BACKENDS)}")
    checked = load_config(config)
    base = base_dir or (Path(config).parent if isinstance(config, (str, Path)) else Path.cwd())
    name = study or checked.name
    if not _STUDY_NAME.fullmatch(name):
        raise ConfigError(f"study name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    space = prepare(checked)[0]  # the search space is checked before a study or a folder exists
    folder = Path(runs) / "tune" / name
    settings = TuneSettings(name, folder, storage, trials, timeout, pruning, keep)
    if backend == "ray" and storage is not None:
        raise ConfigError("--storage names the database of a local study; a ray search keeps its trials in "
                          f"Ray Tune's experiment folder ({folder / 'ray'}). Fix: leave out --storage, or use "
                          "--backend local")
    with search_run(checked, space, study=name, backend=backend, folder=folder, base_dir=base,
                    track=track) as tracked:
        if backend == "ray":
            from modelmill.tuning.ray_search import run_ray_study

            outcome = run_ray_study(checked, settings, base_dir=base, progress=progress)
            log_trials_after(tracked, checked, outcome)
        else:
            outcome = run_study(checked, settings, base_dir=base, progress=progress, tracked=tracked)
        best_path = Path(output) if output is not None else folder / "best.yaml"
        text = best_config_yaml(outcome, base_dir=base, out_dir=best_path.parent)
        fitted, bundle, repeatable = None, None, True
        if final:
            progress(f"training the best config (trial {outcome.best_number}) and scoring it on the test split")
            fitted, bundle = fit_best(outcome, base_dir=base, folder=folder,
                                      callbacks=[tracked.callback()] if tracked is not None else [])
            again = fitted.metrics_.get(f"valid_{outcome.metric}")
            best = outcome.best_value
            repeatable = again is not None and abs(float(again) - best) <= 1e-6 * max(1.0, abs(best))
        report = write_outputs(outcome, folder, best_yaml=text, best_path=best_path, final=fitted)
        log_search(tracked, outcome, folder=folder, best_path=best_path, final=fitted, final_bundle=bundle,
                   whole=checked.tracking.log_bundle)
    return TuneResult(outcome, best_path, report, fitted, repeatable, tracked)
