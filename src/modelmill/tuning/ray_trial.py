"""One trial of ``tune --backend ray``, as it runs on a node of the cluster: the pipeline with
the trial's values, fitted on the frame the driver put in the object store, its validation
curve reported to Ray Tune (whose scheduler may stop it), and its final score reported last.

Nothing here imports Ray at module import; the trainable imports ``ray.tune`` when it runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from modelmill.config import parse_config
from modelmill.errors import ConfigError
from modelmill.training import Callback
from modelmill.training.callbacks import LoopState
from modelmill.tuning.pruning import FIT_END, FIT_STRIDE
from modelmill.tuning.space import Space

SCORE = "score"  # the key every report holds: the validation metric the search chooses on
FINAL = "final"  # set on a trial's last report only: the trial completed (not stopped early)


@dataclass(frozen=True)
class TrialJob:
    """What every trial shares, shipped once to the cluster with the trainable."""

    space: Space
    metric: str
    base_dir: Path
    threads: int  # the trial's CPU share: its training threads
    keep: Path | None  # where each completed trial's bundle goes (--keep), else None


class TuneReport(Callback):
    """Reports ``valid_<metric>`` to Ray Tune after each epoch of the trainer, and at the end
    of each fit of a learner (a tree model's rounds are never reported: their count is early
    stopping's to decide, and early rounds order settings by speed, not by where they end;
    see :mod:`modelmill.tuning.pruning`). ``step`` numbers the reports as the local search's
    pruner does (fit k's epoch e is step k * FIT_STRIDE + e), for the leaderboard."""

    def __init__(self, metric: str) -> None:
        self.key = f"valid_{metric}"
        self.fits = -1
        self.total = 0
        self.last_step: int | None = None

    def on_train_start(self, state: LoopState, total_epochs: int) -> None:
        self.fits += 1
        self.total = total_epochs

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        value = row.get(self.key)
        if self.total > 0 and value is not None and math.isfinite(value):
            self._report(float(value), int(row.get("epoch", state.epoch)))

    def on_train_end(self, state: LoopState) -> None:
        if self.total == 0 and state.best_value is not None and math.isfinite(state.best_value):
            self._report(float(state.best_value), FIT_END)

    def _report(self, value: float, step_in_fit: int) -> None:
        from ray import tune

        self.last_step = max(self.fits, 0) * FIT_STRIDE + step_in_fit
        # blocks until the driver has taken the result: a trial the scheduler stops ends here
        tune.report({SCORE: value, "step": self.last_step})


def run_trial(config: dict[str, Any], frame: pd.DataFrame | None = None, job: TrialJob | None = None) -> None:
    """Ray Tune's function trainable: ``config`` is what the searcher suggested, the trial's
    number and its values as (path, value) pairs."""
    from ray import tune

    from modelmill.api import Pipeline

    if frame is None or job is None:
        raise ConfigError("a ray trial was started without its data (run it through modelmill.tuning.ray_search)")
    started = time.perf_counter()
    number = int(config["number"])
    overrides = [(str(path), value) for path, value in config["overrides"]]
    checked = parse_config(job.space.config(overrides), origin=f"trial {number}")
    checked.training.progress = False
    # a trial trains in its own process, on the one CPU it holds: a ray training backend would
    # ask the cluster for workers that the trials beside it already hold, and wait for ever
    checked.training.backend = "local"
    # the trial's share of the cluster's CPUs: more threads would fight the trials beside it
    checked.training.threads = min(checked.training.threads or job.threads, job.threads)
    reporter = TuneReport(job.metric)
    pipeline = Pipeline(checked, base_dir=job.base_dir, callbacks=[reporter])
    # the object store hands out read-only arrays; a copy keeps the pipeline free to write
    pipeline.fit(frame.copy(), evaluate=False)
    value = pipeline.metrics_.get(f"valid_{job.metric}")
    if value is None:
        raise ConfigError(f"trial {number} gave no validation {job.metric}")
    if job.keep is not None:
        pipeline.save(job.keep / str(number))
    tune.report({SCORE: float(value), FINAL: True, "step": reporter.last_step,
                 "seconds": round(time.perf_counter() - started, 3)})
