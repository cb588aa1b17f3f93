"""``modelmill tune``: a hyper-parameter search on Optuna over any config key.

Each trial is the whole pipeline (cleaning, split, features, model) with the trial's values
set in the config, scored by its held-out validation metric; the test split is never read
by a trial. The study lives in SQLite (or any database SQLAlchemy reaches), so a killed
search resumes where it stopped and several processes can share one study. A trial cut off
by a killed process is marked failed and run again, once, with the same values.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from modelmill.config import PipelineConfig, load_config, parse_config
from modelmill.errors import ConfigError, ModelmillError
from modelmill.evaluation.metrics import check_metric, default_metric, metric_direction
from modelmill.features import build_features, build_target
from modelmill.tuning.interrupts import interrupts_outside_database
from modelmill.tuning.pruning import TrialPruning
from modelmill.tuning.space import Override, Space, build_space
from modelmill.tuning.tracked import trial_run

if TYPE_CHECKING:
    from modelmill.tracking.run import TrackedRun

log = logging.getLogger("modelmill")
INSTALL_HINT = "pip install 'modelmill[tune]'"
CONSECUTIVE_FAILURES = 3  # trials failing one after another before this process gives up


@dataclass
class TuneSettings:
    """What one ``tune`` command does besides the config's ``tune`` section."""

    study: str
    folder: Path  # the study's folder: study.db, trials/, best/, report.html
    storage: str | None = None  # a SQLAlchemy URL; default sqlite:///<folder>/study.db
    trials: int | None = None  # default: tune.trials
    timeout: float | None = None  # default: tune.timeout
    pruning: bool | None = None  # default: tune.pruning
    keep: bool = False  # a bundle per trial (validation scores only)

    @property
    def url(self) -> str:
        return self.storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"


@dataclass
class TuneOutcome:
    """What a search found: the best trial, its config, and every trial's record."""

    study: str
    metric: str
    direction: str
    best_number: int
    best_value: float
    best_overrides: list[Override]
    best_config: dict[str, Any]
    trials: list[dict[str, Any]]
    counts: dict[str, int]
    seconds: float
    importances: dict[str, float] = field(default_factory=dict)
    untuned_value: float | None = None  # the first trial's: the config's own values, when it completed


def optuna_module() -> Any:
    """The optuna module, or a clear error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"modelmill tune needs Optuna, an optional extra. Fix: {INSTALL_HINT}") from None
    # our own line per trial says what happened; Optuna's warnings would add a traceback to each failed one
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def prepare(config: PipelineConfig) -> tuple[Space, str, str]:
    """The search space, the metric and the direction; every check that needs no study."""
    if config.data.shards:
        raise ConfigError("a search reads its table once, on this machine, and fits every trial on it; data.shards "
                          "is for a table that does not fit there. Fix: tune on a sample of the table (data.source "
                          "a sample, data.shards: false), then train best.yaml with data.shards: true",
                          path="data.shards")
    space = build_space(config, build_features(config))
    task = build_target(config).task
    chosen = config.training.early_stopping.metric
    metric = default_metric(task) if chosen == "auto" else check_metric(task, chosen,
                                                                         "training.early_stopping.metric")
    direction = "minimize" if metric == "loss" or metric_direction(metric) == "min" else "maximize"
    _check_held_out(config)
    return space, metric, direction


def run_study(config_source: PipelineConfig | str | Path, settings: TuneSettings, *, base_dir: Path,
              progress: Callable[[str], None] = log.info, tracked: TrackedRun | None = None) -> TuneOutcome:
    """Search, trial after trial, until the study holds ``trials`` finished ones or the time
    is up; return the best trial and the leaderboard. With ``tracked`` (the search's MLflow
    run), each trial this call runs is a run nested under it."""
    config = load_config(config_source)
    space, metric, direction = prepare(config)
    optuna = optuna_module()
    tune = config.tune
    trials = settings.trials or tune.trials
    from modelmill.api import Pipeline

    # read once (data that cannot be read fails before a study exists); every trial splits it alike
    frame = Pipeline(config, base_dir=base_dir).read()
    study, storage, created = _open_study(optuna, settings, config, space, metric, direction)
    _recover_cut_off(optuna, study, storage, progress)
    finished = _finished(optuna, study)
    started = time.perf_counter()
    if finished < trials:
        progress(f"study {settings.study}: {finished} of {trials} trials finished; {settings.url}")
        objective = _Objective(optuna, space, metric, frame, base_dir, settings,
                               tune.pruning if settings.pruning is None else settings.pruning, tracked)
        seed = tune.seed if tune.seed is not None else config.training.seed
        # the process that starts a study draws from its seed (a search is repeatable); one that
        # joins or resumes it draws from another, or it would propose the very same values again
        seed = seed if created else seed + 1 + os.getpid()
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials)
        stop = _StopRules(optuna, trials, progress, metric)
        with interrupts_outside_database():  # a Ctrl-C inside a database call would hang the study's writes
            study.optimize(objective, n_trials=None, timeout=settings.timeout or tune.timeout,
                           callbacks=[stop], catch=(ModelmillError,), gc_after_trial=False)
    return _outcome(optuna, study, space, metric, direction, time.perf_counter() - started)


# ---------------------------------------------------------------------- the study


def _open_study(optuna: Any, settings: TuneSettings, config: PipelineConfig, space: Space, metric: str,
                direction: str) -> tuple[Any, Any, bool]:
    """The study, its storage, and whether this call created it; a study created for another
    config or space is refused before anything is written. A new study's first trial is the
    config's own values (what tuning adds shows in the leaderboard)."""
    url = settings.url
    sqlite_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    with _creation_lock(sqlite_file):
        storage = _storage(optuna, url, config.tune.heartbeat)
        if settings.study in optuna.study.get_all_study_names(storage):
            study = optuna.load_study(study_name=settings.study, storage=storage, pruner=_pruner(optuna, config))
            _check_owner(study, settings, config, space, metric)
            return study, storage, False
        study = optuna.create_study(study_name=settings.study, storage=storage, direction=direction,
                                    pruner=_pruner(optuna, config))
        for key, value in {"config_name": config.name, "space": space.fingerprint(), "metric": metric}.items():
            study.set_user_attr(key, value)
        study.enqueue_trial(space.current(), user_attrs={"start": "the config's own values"})
        return study, storage, True


@contextmanager
def _creation_lock(sqlite_file: Path | None) -> Iterator[None]:
    """Processes starting on one new SQLite study create its tables and the study one after
    the other (at the same moment both would create them, and one would fail)."""
    if sqlite_file is None:
        yield
        return
    import fcntl

    with open(sqlite_file.with_name(sqlite_file.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _storage(optuna: Any, url: str, heartbeat: int) -> Any:
    """Optuna's storage on the database at ``url``; a URL that is not one, or a database that
    cannot be reached, is a clear error (the password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from modelmill.data.sources import installed_driver

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"--storage {url!r} is not a database URL; write it as sqlite:///study.db or "
                          "postgresql://user@host/db") from None
    # two processes on one SQLite file wait for each other's writes instead of failing
    kwargs = {"connect_args": {"timeout": 120}} if parsed.get_backend_name() == "sqlite" else {}
    parsed = parsed.set(drivername=installed_driver(parsed.drivername))
    try:
        with warnings.catch_warnings():  # Optuna marks heartbeats experimental; a user need not hear of it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                parsed.render_as_string(hide_password=False), engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    except (SQLAlchemyError, ImportError) as error:
        cause = getattr(error, "orig", None) or error
        raise ConfigError(f"the study's database {parsed.render_as_string(hide_password=True)} cannot be opened: "
                          f"{' '.join(str(cause).split())[:300]}") from None


def _pruner(optuna: Any, config: PipelineConfig) -> Any:
    if not config.tune.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=config.tune.startup_trials, n_warmup_steps=0)


def _check_owner(study: Any, settings: TuneSettings, config: PipelineConfig, space: Space, metric: str) -> None:
    attrs = study.user_attrs
    fix = f"Fix: pass another --study name, or tune the config it belongs to ({settings.url})"
    if attrs.get("config_name") != config.name:
        raise ConfigError(f"study {settings.study!r} belongs to config {attrs.get('config_name')!r}, not "
                          f"{config.name!r}. {fix}")
    if attrs.get("space") != space.fingerprint() or attrs.get("metric") != metric:
        raise ConfigError(f"study {settings.study!r} was started with another search space, metric or base config "
                          f"than {config.name!r} has now; its trials would not compare. {fix}")


def _recover_cut_off(optuna: Any, study: Any, storage: Any, progress: Callable[[str], None]) -> None:
    """Trials left running by a process of this machine that is gone (killed): failed, and
    enqueued once more with the same values. Two processes recovering at once: one wins."""
    running = optuna.trial.TrialState.RUNNING
    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        if trial.user_attrs.get("host") != host or _alive(trial.user_attrs.get("pid")):
            continue
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another process has just recovered it
            continue
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        progress(f"trial {trial.number} was cut off (its process {trial.user_attrs.get('pid')} is gone): "
                 "it runs again with the same values")


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finished(optuna: Any, study: Any) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


class _StopRules:
    """Stops the search when the study holds enough finished trials, or when this process's
    trials keep failing; prints a line per trial."""

    def __init__(self, optuna: Any, trials: int, progress: Callable[[str], None], metric: str) -> None:
        self.optuna, self.trials, self.progress, self.metric = optuna, trials, progress, metric
        self.failures = 0

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        seconds = trial.user_attrs.get("seconds", 0.0)
        if trial.state == self.optuna.trial.TrialState.COMPLETE:
            what = f"valid {self.metric} {trial.value:.4f}"
        elif trial.state == self.optuna.trial.TrialState.PRUNED:
            what = str(trial.user_attrs.get("pruned", "pruned"))
        else:
            what = str(trial.user_attrs.get("error", "failed"))
        self.progress(f"trial {trial.number} {state} in {seconds:.1f} s: {what}")
        self.failures = self.failures + 1 if trial.state == self.optuna.trial.TrialState.FAIL else 0
        if self.failures >= CONSECUTIVE_FAILURES or _finished(self.optuna, study) >= self.trials:
            study.stop()


class _Objective:
    """One trial: the pipeline fitted with the trial's values, scored on held-out rows only."""

    def __init__(self, optuna: Any, space: Space, metric: str, frame: pd.DataFrame, base_dir: Path,
                 settings: TuneSettings, pruning: bool, tracked: TrackedRun | None = None) -> None:
        self.optuna, self.space, self.metric, self.frame = optuna, space, metric, frame
        self.base_dir, self.settings, self.pruning, self.tracked = base_dir, settings, pruning, tracked

    def __call__(self, trial: Any) -> float:
        from modelmill.api import Pipeline

        started = time.perf_counter()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        overrides = self.space.sample(trial)
        trial.set_user_attr("overrides", json.dumps(overrides))
        config = parse_config(self.space.config(overrides), origin=f"trial {trial.number}")
        config.training.progress = False
        pruning = TrialPruning(trial, self.metric, self.optuna.TrialPruned) if self.pruning else None
        with trial_run(self.tracked, config, trial.number, overrides, metric=self.metric,
                       pruned=self.optuna.TrialPruned) as tracked:
            try:
                pipeline = Pipeline(config, base_dir=self.base_dir,
                                    callbacks=[*tracked.callbacks(), *([pruning] if pruning else [])])
                pipeline.fit(self.frame, evaluate=False)
            except self.optuna.TrialPruned as exc:
                trial.set_user_attr("pruned", str(exc))
                raise
            except ModelmillError as exc:
                trial.set_user_attr("error", str(exc))
                raise
            except KeyboardInterrupt:  # Ctrl-C: Optuna fails the trial; it runs again when the study resumes
                trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                raise
            finally:
                trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
            value = pipeline.metrics_.get(f"valid_{self.metric}")
            if value is None:
                raise ConfigError(f"trial {trial.number} gave no validation {self.metric}")
            if self.settings.keep:
                pipeline.save(self.settings.folder / "trials" / str(trial.number))
            tracked.value = float(value)
        return float(value)


# ---------------------------------------------------------------------- results


def _outcome(optuna: Any, study: Any, space: Space, metric: str, direction: str, seconds: float) -> TuneOutcome:
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in states}
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
        raise ConfigError(f"no trial of study {study.study_name!r} completed"
                          + (f"; the last error: {errors[-1]}" if errors else ""))
    best = study.best_trial
    overrides = [tuple(pair) for pair in json.loads(best.user_attrs["overrides"])]
    return TuneOutcome(study.study_name, metric, direction, best.number, float(best.value), overrides,
                       space.config(overrides), [_record(t) for t in trials], counts, seconds,
                       _importances(optuna, study), _untuned(complete))


def _untuned(complete: list[Any]) -> float | None:
    firsts = [t for t in complete if "start" in t.user_attrs]
    return float(firsts[0].value) if firsts else None


def _record(trial: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value,
                              "seconds": trial.user_attrs.get("seconds")}
    if trial.intermediate_values:
        record["last step"] = max(trial.intermediate_values)
    for path, value in json.loads(trial.user_attrs.get("overrides", "[]")):
        record[path] = value
    if "error" in trial.user_attrs:
        record["error"] = trial.user_attrs["error"]
    return record


def _importances(optuna: Any, study: Any) -> dict[str, float]:
    """fANOVA importance of each parameter (Hutter et al., 2014), over the completed trials;
    empty while too few trials differ to tell."""
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def _check_held_out(config: PipelineConfig) -> None:
    split = config.data.split
    folds = config.model.type in ("auto", "ensemble")
    named = split.method == "column" or (split.method == "files" and split.valid_source)
    if split.valid == 0 and not named and not folds:
        raise ConfigError("tune chooses on the validation score, and this config holds no validation rows. Fix: "
                          "set data.split.valid above 0 (or use model type auto or ensemble, scored out of fold)",
                          path="data.split.valid")
