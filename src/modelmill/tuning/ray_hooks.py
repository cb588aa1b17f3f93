"""What ``tune --backend ray`` plugs into Ray Tune on the driver: the search space as Optuna's
define-by-run function, a searcher that keeps the local search's budget rules, and a line
per finished trial.

This module subclasses Ray's classes, so it imports Ray: only :mod:`ray_search` imports it,
from inside a function, once Ray is known to be there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback as TuneCallback
from ray.tune.search import Searcher

from modelmill.errors import ModelmillError
from modelmill.tuning.ray_trial import FINAL, SCORE
from modelmill.tuning.space import Space
from modelmill.tuning.study import CONSECUTIVE_FAILURES

log = logging.getLogger("modelmill")


class DefineByRun:
    """Our space, sampled on the Optuna trial that ``OptunaSearch`` asks for (a class, not a
    closure: Ray pickles the searcher into the experiment's folder). What it returns is the
    trial's whole config: its number, its (path, value) pairs, and Optuna's params."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        overrides = self.space.sample(trial)
        return {"number": trial.number, "overrides": [[path, value] for path, value in overrides],
                "params": dict(trial.params)}


class Budget(Searcher):  # type: ignore[misc]
    """Wraps ``OptunaSearch`` with the local search's rules. ``trials`` counts finished trials
    (complete or stopped early): a failed one is replaced, as in the local study. New trials
    stop after ``deadline`` (one under way finishes) or after ``CONSECUTIVE_FAILURES``
    failures in a row. A trial the scheduler stopped is told to Optuna as pruned, not as
    complete with its early score."""

    def __init__(self, inner: Any, trials: int, deadline: float | None, concurrent: int,
                 progress: Callable[[str], None]) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.trials, self.deadline, self.progress = inner, trials, deadline, progress
        # trials under way when the first of a run of failures ends were started before it
        # was known: the local rule, counted past them (a search where every trial fails stops
        # after the same number of failures seen, not after the first wave of a parallel one)
        self.give_up = max(CONSECUTIVE_FAILURES, concurrent + 1)
        self.running: set[str] = set()
        self.finished = 0
        self.failures = 0  # one after another
        self.stopped = False

    def __getstate__(self) -> dict[str, Any]:
        return _without_progress(self.__dict__)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        return bool(self.inner.set_search_properties(metric, mode, config, **spec))

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED is a str
        out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        if self.failures >= self.give_up or out_of_time:
            if not self.stopped:
                self.stopped = True
                self.progress(f"no new trials: {self.failures} failed in a row" if not out_of_time else
                              "no new trials: the time is up (the trials under way finish)")
            return Searcher.FINISHED
        if self.finished + len(self.running) >= self.trials:
            # enough are under way; one of them may still fail and need replacing
            return None if self.running else Searcher.FINISHED
        suggested = self.inner.suggest(trial_id)
        if not isinstance(suggested, dict):
            return suggested  # type: ignore[no-any-return]
        self.running.add(trial_id)
        return {key: suggested[key] for key in ("number", "overrides", "params")}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self.running.discard(trial_id)
        completed = bool(result and result.get(FINAL))
        self.inner.on_trial_complete(trial_id, result if completed else None, error=error)
        self.failures = self.failures + 1 if error else 0
        self.finished += 0 if error else 1

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.inner.restore(checkpoint_path)


class TrialLines(TuneCallback):  # type: ignore[misc]
    """A line per finished trial, as the local search prints them."""

    def __init__(self, progress: Callable[[str], None], metric: str) -> None:
        self.progress, self.metric = progress, metric

    def __getstate__(self) -> dict[str, Any]:
        return _without_progress(self.__dict__)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        number = trial.config.get("number", "?")
        seconds = float(result.get("time_total_s", 0.0))
        if result.get(FINAL):
            self.progress(f"trial {number} complete in {seconds:.1f} s: valid {self.metric} {result[SCORE]:.4f}")
        else:
            self.progress(f"trial {number} pruned in {seconds:.1f} s: stopped by the scheduler after "
                          f"{result.get('training_iteration', 0)} report(s), valid {self.metric} "
                          f"{result.get(SCORE, float('nan')):.4f}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        number = trial.config.get("number", "?")
        self.progress(f"trial {number} fail: {error_text(_last_error(trial))}")


def _without_progress(state: dict[str, Any]) -> dict[str, Any]:
    """What Ray pickles into the experiment's folder (tuner.pkl holds the callbacks): the
    progress printer (the CLI's console, with its locks) is this process's, not the search's."""
    return {**state, "progress": log.info}


def _last_error(trial: Any) -> Any:
    """The exception Ray Tune has just written to the trial's local folder (its copy in the
    experiment's storage comes later, so ``Trial.get_pickled_error`` finds nothing yet)."""
    import ray.cloudpickle

    for path, read in ((trial.pickled_error_file, ray.cloudpickle.loads), (trial.error_file, bytes.decode)):
        if not path:
            continue
        try:
            return read(Path(path).read_bytes())
        except (OSError, ValueError, EOFError, AttributeError, ImportError):
            continue
    return None


def error_text(error: Any) -> str:
    """What a failed trial says: our own errors as they are; anything else with its type and
    last line (Ray wraps a trial's exception in its own, with the remote traceback)."""
    if error is None:
        return "failed (no error was recorded)"
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, ModelmillError):
        return str(cause)
    if isinstance(cause, BaseException):
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
