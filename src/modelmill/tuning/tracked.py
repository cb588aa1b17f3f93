"""A search in MLflow: one parent run per ``tune`` command, each trial it runs a run nested
under it.

The parent holds the config and the search space as params, and at the end what the search
found (the best value and trial, the trials by state), its outputs (best.yaml, the leaderboard,
tune.json, the report) and the best config's final fit on the test split. A trial's run holds
its sampled values under their config paths, its validation curve as steps (logged live by a
training callback beside the pruner's), its final validation score, and its state as a tag.

Only the trials this command runs are logged: a resumed study gets a new parent holding the
new trials, and two processes sharing a study each log their own. Nothing here fails a
search: :class:`~modelmill.tracking.run.TrackedRun` swallows MLflow's failures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill.tracking import tags

if TYPE_CHECKING:
    from modelmill.api import Pipeline
    from modelmill.config import PipelineConfig
    from modelmill.tracking.run import TrackedRun
    from modelmill.training import Callback
    from modelmill.tuning.space import Override, Space
    from modelmill.tuning.study import TuneOutcome

OUTPUT_FILES = ("best.yaml", "leaderboard.csv", "tune.json", "report.html")
RECORD_KEYS = {"trial", "state", "value", "seconds", "last step", "error"}  # a leaderboard row's own columns


def search_params(config: PipelineConfig, space: Space, *, study: str, backend: str) -> dict[str, str]:
    """The parent run's params: the flattened config, and the space searched (a config without
    ``tune.space`` searches its model type's built-in one, which the config alone does not show)."""
    from modelmill.tracking.values import flatten

    params = flatten(config.model_dump(mode="json"))
    params["tune.search_space"] = json.dumps([p.describe() for p in space.params], sort_keys=True, default=str)
    params["tune.study"], params["tune.backend"] = study, backend
    return params


def search_run(config: PipelineConfig, space: Space, *, study: str, backend: str, folder: Path,
               base_dir: Path, track: bool) -> Any:
    """The context of the parent run (yields None when ``track`` is off or tracking is off),
    closed FINISHED, FAILED or KILLED with the search."""
    if not track:
        return nullcontext(None)
    from modelmill.tracking.session import tracking

    return tracking(config, action="tune", base_dir=base_dir, run_dir=folder, run_name=study,
                    params=search_params(config, space, study=study, backend=backend))


class TrialRun:
    """One trial's nested run (nothing at all without a parent run)."""

    def __init__(self, parent: TrackedRun | None, config: PipelineConfig, number: int,
                 overrides: list[Override]) -> None:
        self.run: TrackedRun | None = None
        if parent is not None:
            from modelmill.tracking.run import TrackedRun

            self.run = TrackedRun.start(config, action="trial", run_name=f"trial {number}", parent=parent,
                                        params={path: value for path, value in overrides})
        self.value: float | None = None  # the trial's score, set when it completes

    def callbacks(self) -> list[Callback]:
        """The callback that logs each epoch's row as a step; first, before the pruner's (which
        raises to prune, and the row that decided it would be lost)."""
        return [self.run.callback()] if self.run is not None else []

    def end(self, state: str, metric: str, error: str | None = None) -> None:
        run = self.run
        if run is None:
            return
        if self.value is not None:
            run.log_metrics({f"final_valid_{metric}": self.value})
        found = {tags.TRIAL_STATE: state}
        if error:
            from modelmill.tracking.client import redact

            found[tags.ERROR] = redact(error)
        run.set_tags(found)
        run.finish("FAILED" if state == "FAIL" else "FINISHED")


@contextmanager
def trial_run(parent: TrackedRun | None, config: PipelineConfig, number: int, overrides: list[Override], *,
              metric: str, pruned: type[Exception]) -> Iterator[TrialRun]:
    """A trial's run for the block that fits it: COMPLETE when the block ends with ``value`` set,
    PRUNED on ``pruned`` (run FINISHED), FAIL on any error (run FAILED) or Ctrl-C (KILLED)."""
    trial = TrialRun(parent, config, number, overrides)
    try:
        yield trial
    except KeyboardInterrupt:
        if trial.run is not None:
            trial.run.set_tags({tags.TRIAL_STATE: "FAIL"})
            trial.run.finish("KILLED")
        raise
    except BaseException as exc:
        trial.end("PRUNED" if isinstance(exc, pruned) else "FAIL", metric,
                  None if isinstance(exc, pruned) else str(exc))
        raise
    trial.end("COMPLETE" if trial.value is not None else "FAIL", metric)


def log_trials_after(parent: TrackedRun | None, config: PipelineConfig, outcome: TuneOutcome) -> None:
    """Each trial of a search whose trials ran elsewhere (Ray Tune's workers) as a nested run,
    from its leaderboard row: its values, state and score (not its curve: the workers report
    only the watched metric, to Ray Tune)."""
    if parent is None:
        return
    for record in outcome.trials:
        overrides = [(str(k), v) for k, v in record.items() if k not in RECORD_KEYS]
        trial = TrialRun(parent, config, int(record["trial"]), overrides)
        state = str(record["state"]).upper()
        trial.value = float(record["value"]) if state == "COMPLETE" and record.get("value") is not None else None
        trial.end(state, outcome.metric, record.get("error"))


def log_search(parent: TrackedRun | None, outcome: TuneOutcome, *, folder: Path, best_path: Path,
               final: Pipeline | None, final_bundle: Path | None, whole: bool) -> None:
    """What the search found, into the parent: the best value and trial, the study's trials by
    state (``trials_*``: the whole study's, resumed ones included), its outputs as artefacts,
    and the final fit's metrics, tags and (with ``whole``) bundle."""
    if parent is None:
        return
    counts: Mapping[str, int] = outcome.counts
    found: dict[str, Any] = {f"best_valid_{outcome.metric}": outcome.best_value, "best_trial": outcome.best_number,
                             "trials_complete": counts.get("complete", 0), "trials_pruned": counts.get("pruned", 0),
                             "trials_failed": counts.get("fail", 0), "search_seconds": outcome.seconds}
    if outcome.untuned_value is not None:
        found[f"untuned_valid_{outcome.metric}"] = outcome.untuned_value
    parent.log_metrics(found)
    parent.set_tags({tags.BEST_TRIAL: str(outcome.best_number)})
    for name in OUTPUT_FILES:
        parent.log_file(best_path if name == "best.yaml" else folder / name)
    if final is not None and final_bundle is not None:
        from modelmill.bundle import read_bundle

        parent.log_bundle(read_bundle(final_bundle), files=False)  # its report would hide the search's
        parent.log_folder(final_bundle / "plots", "best/plots")
        if whole:
            parent.log_folder(final_bundle, tags.BUNDLE_ARTIFACTS)
