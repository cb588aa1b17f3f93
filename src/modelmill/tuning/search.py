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
from modelmill.tuning.outputs import best_config_yaml, train_best, write_outputs
from modelmill.tuning.study import TuneOutcome, TuneSettings, prepare, run_study

if TYPE_CHECKING:
    from modelmill.api import Pipeline

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


def tune(config: PipelineConfig | dict[str, Any] | str | Path, *, base_dir: Path | None = None,
         trials: int | None = None, timeout: float | None = None, study: str | None = None,
         runs: str | Path = "runs", storage: str | None = None, output: str | Path | None = None,
         keep: bool = False, final: bool = True, pruning: bool | None = None, backend: str = "local",
         progress: Callable[[str], None] = log.info) -> TuneResult:
    """Search the config's ``tune.space`` (or its model type's built-in space); see
    :class:`~modelmill.config.tune.TuneConfig`. Arguments left None take the config's values.
    ``backend="ray"`` runs the trials side by side on a Ray cluster through Ray Tune
    (:mod:`modelmill.tuning.ray_search`): the same space and outputs, no resumable study."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown tune backend {backend!r}; valid: {', '.join(BACKENDS)}")
    checked = load_config(config)
    base = base_dir or (Path(config).parent if isinstance(config, (str, Path)) else Path.cwd())
    name = study or checked.name
    if not _STUDY_NAME.fullmatch(name):
        raise ConfigError(f"study name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    prepare(checked)  # the search space is checked before a study or a folder exists
    folder = Path(runs) / "tune" / name
    settings = TuneSettings(name, folder, storage, trials, timeout, pruning, keep)
    if backend == "ray":
        if storage is not None:
            raise ConfigError("--storage names the database of a local study; a ray search keeps its trials in "
                              f"Ray Tune's experiment folder ({folder / 'ray'}). Fix: leave out --storage, or use "
                              "--backend local")
        from modelmill.tuning.ray_search import run_ray_study

        outcome = run_ray_study(checked, settings, base_dir=base, progress=progress)
    else:
        outcome = run_study(checked, settings, base_dir=base, progress=progress)
    best_path = Path(output) if output is not None else folder / "best.yaml"
    text = best_config_yaml(outcome, base_dir=base, out_dir=best_path.parent)
    fitted, repeatable = None, True
    if final:
        progress(f"training the best config (trial {outcome.best_number}) and scoring it on the test split")
        fitted = train_best(outcome, base_dir=base, folder=folder)
        again = fitted.metrics_.get(f"valid_{outcome.metric}")
        repeatable = again is not None and abs(float(again) - outcome.best_value) <= 1e-6 * max(1.0, abs(outcome.best_value))
    report = write_outputs(outcome, folder, best_yaml=text, best_path=best_path, final=fitted)
    return TuneResult(outcome, best_path, report, fitted, repeatable)
