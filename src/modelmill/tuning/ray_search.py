"""``modelmill tune --backend ray``: the same search, its trials run side by side on a Ray
cluster through Ray Tune.

The same space, metric and outputs as the local search (:mod:`modelmill.tuning.study`):
Optuna's TPE proposes the values (Ray Tune's ``OptunaSearch``, fed our space as a
define-by-run function), the first trial is the config's own values, a trial is the whole
pipeline scored on its validation rows, and the result is the same :class:`TuneOutcome`,
so best.yaml, the leaderboard and the report are written alike. What differs:

- Early stopping is Ray Tune's ASHA scheduler (Li et al., 2020, "A System for Massively
  Parallel Hyperparameter Tuning") on the validation curve, not Optuna's median pruner:
  a trial is compared with the others at rungs of its reports (epochs for torch models,
  fits for learners), past a grace period of a quarter of ``training.epochs``.
- The study is Ray Tune's experiment under ``RUNS/tune/STUDY/ray/``, not a database: a
  search killed half-way is not resumed (a new command starts a new experiment), and two
  processes cannot share one study.
- Every trial takes one CPU of the cluster (its training runs on one thread), as many run
  at once as the cluster has CPUs. ``--keep`` writes each trial's bundle on the node that
  ran it (the same folder on a cluster with a shared file system).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelmill.config import PipelineConfig, load_config
from modelmill.errors import ConfigError
from modelmill.tuning.pruning import PRUNE_FROM_EPOCH
from modelmill.tuning.ray_trial import FINAL, SCORE, TrialJob, run_trial
from modelmill.tuning.space import Param, Space
from modelmill.tuning.study import TuneOutcome, TuneSettings, optuna_module, prepare

log = logging.getLogger("modelmill")
CPUS_PER_TRIAL = 1  # trials are small fits: many side by side beat few with many threads each
REDUCTION_FACTOR = 3  # ASHA's: a third of the trials at a rung go on to the next
NEW_OUTPUT = "RAY_AIR_NEW_OUTPUT"
NO_SIGINT = "TUNE_DISABLE_SIGINT_HANDLER"
STATES = ("running", "waiting", "complete", "pruned", "fail")  # Optuna's, as the local leaderboard counts them


def run_ray_study(config_source: PipelineConfig | str | Path, settings: TuneSettings, *, base_dir: Path,
                  progress: Callable[[str], None] = log.info) -> TuneOutcome:
    """Search on the Ray cluster that :func:`modelmill.cluster.connect` reaches until ``trials``
    trials have finished (failed ones are replaced) or the time is up."""
    from modelmill.cluster import connect

    config = load_config(config_source)
    space, metric, direction = prepare(config)
    optuna = optuna_module()
    ray = connect(what="modelmill tune --backend ray")
    from ray import tune

    from modelmill.api import Pipeline
    from modelmill.tuning.ray_hooks import Budget, TrialLines

    trials = settings.trials or config.tune.trials
    timeout = settings.timeout or config.tune.timeout
    pruning = config.tune.pruning if settings.pruning is None else settings.pruning
    frame = Pipeline(config, base_dir=base_dir).read()  # read once; with_parameters puts it in the object store
    concurrent = max(1, int(ray.cluster_resources().get("CPU", 1) // CPUS_PER_TRIAL))
    started = time.monotonic()
    searcher = Budget(_optuna_search(optuna, config, space, direction), trials,
                      started + timeout if timeout else None, concurrent, progress)
    job = TrialJob(space, metric, base_dir.resolve(), CPUS_PER_TRIAL,
                   (settings.folder / "trials").resolve() if settings.keep else None)
    trainable = tune.with_resources(tune.with_parameters(run_trial, frame=frame, job=job), {"cpu": CPUS_PER_TRIAL})
    experiment = f"{settings.study}-{time.strftime('%Y%m%d-%H%M%S')}"
    progress(f"study {settings.study}: {trials} trials on the Ray cluster, {concurrent} at a time; "
             f"experiment {settings.folder / 'ray' / experiment}")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric=SCORE, mode="min" if direction == "minimize" else "max",
                                    search_alg=searcher, scheduler=_scheduler(tune, config, pruning),
                                    num_samples=-1, max_concurrent_trials=concurrent,
                                    # a trial's worker process, torch and modelmill imported, serves the
                                    # next trial: starting one costs more than a small trial's fit
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=experiment, storage_path=str((settings.folder / "ray").resolve()),
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                                  callbacks=[TrialLines(progress, metric)], verbose=0))
    with _quiet_ray():
        results = tuner.fit()
    return _outcome(optuna, results, settings.study, space, metric, direction, time.monotonic() - started)


def _optuna_search(optuna: Any, config: PipelineConfig, space: Space, direction: str) -> Any:
    """Ray Tune's Optuna searcher on our space, TPE seeded as the local search's, the
    config's own values first."""
    from ray.tune.search.optuna import OptunaSearch

    from modelmill.tuning.ray_hooks import DefineByRun

    seed = config.tune.seed if config.tune.seed is not None else config.training.seed
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.tune.startup_trials)
    current = space.current()
    return OptunaSearch(DefineByRun(space), metric=SCORE, mode="min" if direction == "minimize" else "max",
                        sampler=sampler, points_to_evaluate=[current] if current else None)


def _scheduler(tune: Any, config: PipelineConfig, pruning: bool) -> Any:
    """ASHA on the validation curve; first-in first-out (no early stopping) without pruning.
    Its grace period is the local pruner's: nothing is stopped within the first quarter of
    the epochs (nor before ``PRUNE_FROM_EPOCH``), where curves are ordered by speed."""
    if not pruning:
        return tune.schedulers.FIFOScheduler()
    grace = max(PRUNE_FROM_EPOCH, config.training.epochs // 4)
    # max_t far past any trial's reports: ASHA would otherwise stop a trial at max_t, before
    # its final score (a folded model reports once per fit, each fit's epochs in a row)
    return tune.schedulers.ASHAScheduler(time_attr="training_iteration", grace_period=grace,
                                         max_t=10**9, reduction_factor=REDUCTION_FACTOR)


@contextmanager
def _quiet_ray() -> Iterator[None]:
    """Our line per trial is the search's output. Ray Tune's own would add to it: its new
    reporter prints a table on stdout whatever the verbosity (the old one, which Ray reads
    ``RAY_AIR_NEW_OUTPUT=0`` to choose, is silent at verbosity 0), and it logs each failed
    trial's remote traceback (a user's bad value is no crash of ours; the traceback stays in
    the trial's folder). Both settings are put back afterwards."""
    logger = logging.getLogger("ray.tune")
    level = logger.level
    saved = {name: os.environ.get(name) for name in (NEW_OUTPUT, NO_SIGINT)}
    handlers = _signal_handlers()
    logger.setLevel(logging.CRITICAL)
    os.environ[NEW_OUTPUT] = "0"
    # Ctrl-C stays a KeyboardInterrupt (the command says what was kept and exits 130): Ray
    # Tune's own handler would end the search quietly and hand back the cut trials as results,
    # and it stays installed after the search (a later Ctrl-C, in the final fit, ignored)
    os.environ[NO_SIGINT] = "1"
    try:
        yield
    finally:
        logger.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if threading.current_thread() is threading.main_thread():
            for number, handler in handlers.items():
                signal.signal(number, handler)


def _signal_handlers() -> dict[int, Any]:
    numbers = [signal.SIGINT] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])
    return {number: signal.getsignal(number) for number in numbers}


# ---------------------------------------------------------------------- results


def _outcome(optuna: Any, results: Any, study: str, space: Space, metric: str, direction: str,
             seconds: float) -> TuneOutcome:
    from modelmill.tuning.ray_hooks import error_text

    records = sorted((_record(result, error_text) for result in results), key=lambda r: int(r["trial"]))
    counts = {state: sum(r["state"] == state for r in records) for state in STATES}
    complete = [r for r in records if r["state"] == "complete"]
    if not complete:
        errors = [r["error"] for r in records if "error" in r]
        raise ConfigError(f"no trial of study {study!r} completed on the Ray cluster"
                          + (f"; the last error: {errors[-1]}" if errors else ""))
    better = min if direction == "minimize" else max
    best = better(complete, key=lambda r: float(r["value"]))
    overrides = [(str(path), value) for path, value in best.pop("_overrides")]
    for record in records:
        record.pop("_overrides", None)
    params = {r["trial"]: r.pop("_params") for r in records}
    untuned = next((float(r["value"]) for r in complete if r["trial"] == 0 and space.current()), None)
    return TuneOutcome(study, metric, direction, int(best["trial"]), float(best["value"]), overrides,
                       space.config(overrides), records, counts, seconds,
                       _importances(optuna, space, complete, params, direction), untuned)


def _record(result: Any, error_text: Callable[[Any], str]) -> dict[str, Any]:
    """A leaderboard row, as the local search writes it."""
    config = result.config or {}
    metrics = result.metrics or {}
    state = "fail" if result.error is not None else "complete" if metrics.get(FINAL) else "pruned"
    record: dict[str, Any] = {"trial": int(config.get("number", -1)), "state": state,
                              "value": float(metrics[SCORE]) if state == "complete" else None,
                              "seconds": metrics.get("seconds", metrics.get("time_total_s"))}
    if metrics.get("step") is not None:
        record["last step"] = int(metrics["step"])
    pairs = config.get("overrides", [])
    for path, value in pairs:
        record[path] = value
    if result.error is not None:
        record["error"] = error_text(result.error)
    record["_overrides"], record["_params"] = pairs, config.get("params", {})
    return record


def _importances(optuna: Any, space: Space, complete: list[dict[str, Any]], params: dict[int, dict[str, Any]],
                 direction: str) -> dict[str, float]:
    """fANOVA importance (Hutter et al., 2014) over the completed trials, on an in-memory
    Optuna study built from them; empty while too few differ to tell."""
    from modelmill.tuning.study import _importances as fanova

    distributions = {param.name: _distribution(optuna, param) for param, _ in space.walk()}
    study = optuna.create_study(direction=direction)
    for record in complete:
        values = params.get(record["trial"], {})
        try:
            study.add_trial(optuna.trial.create_trial(
                params=values, distributions={name: distributions[name] for name in values if name in distributions},
                value=float(record["value"])))
        except ValueError:  # a value outside its distribution (cannot happen for sampled ones): left out
            continue
    return fanova(optuna, study)


def _distribution(optuna: Any, param: Param) -> Any:
    """The Optuna distribution :meth:`Param.suggest` draws from."""
    from modelmill.tuning.space import _encode

    if param.kind == "choice":
        return optuna.distributions.CategoricalDistribution([_encode(c) for c in param.choices])
    if param.kind == "int":
        return optuna.distributions.IntDistribution(int(param.low), int(param.high), log=param.log,
                                                    step=int(param.step or 1))
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log, step=param.step)
