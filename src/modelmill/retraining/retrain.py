"""``modelmill retrain``: a challenger trained with the champion's config on the original
data and the newly labelled records, judged against the champion on the newest labelled
records (held back from its training) and on the original test split, promoted into the
next version folder and reloaded by the running service only when the rule says so. Every
decision is an audit record in the log store.

It runs outside the serving process: training there would take the CPU from requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from modelmill.bundle import Bundle, Lineage
from modelmill.config import PipelineConfig, load_config
from modelmill.config.monitoring import RetrainConfig
from modelmill.data.split import SplitRecord
from modelmill.errors import ConfigError, ModelmillError, ServingError
from modelmill.evaluation.metrics import check_metric
from modelmill.monitoring import identity_of
from modelmill.monitoring.export import open_log
from modelmill.monitoring.identity import ModelIdentity, policy_identity
from modelmill.monitoring.store import LogStore, database_message, display_url
from modelmill.predictor import Predictor
from modelmill.retraining.challenge import Comparison, compare, judge
from modelmill.retraining.data import Labelled, TrainingRows, check_learnable, labelled_records, training_rows
from modelmill.retraining.promote import Service, VersionFolder
from modelmill.retraining.registry_versions import RegistryVersions, open_versions
from modelmill.retraining.tracked import challenger_run, log_challenger


log = logging.getLogger("modelmill.retrain")
Say = Callable[[str], None]


@dataclass
class Decision:
    """One audit record: what was decided (``promoted``, ``refused``, ``shadowing``,
    ``failed``), why, with which figures, and the lineage of the challenger."""

    outcome: str
    reason: str
    trigger: str
    champion: str | None
    challenger: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None  # where the challenger was written (its run folder)
    id: int | None = None

    def record(self, store: LogStore) -> Decision:
        try:
            self.id = store.write_decision({
                "decided_at": time.time(), "outcome": self.outcome, "trigger": self.trigger,
                "champion": self.champion, "challenger": self.challenger, "reason": self.reason,
                "figures": self.figures, "lineage": self.lineage})
        except SQLAlchemyError as exc:
            raise ServingError(f"{self.outcome}{' version ' + self.challenger if self.challenger else ''} ({self.reason}), "
                               f"but its audit record could not be written to {display_url(store.url)}: "
                               f"{database_message(exc)}") from None
        return self


def config_identity(config: PipelineConfig) -> ModelIdentity:
    """What the config's model looks like to the prediction store (before any fitting), its
    privacy policy with the fingerprint of the hash key in the environment included.

    Raises:
        ConfigError: the policy hashes and its key's variable is unset or too short.
    """
    from modelmill.privacy.policy import PrivacyPolicy

    policy = PrivacyPolicy.from_config(config)
    return ModelIdentity(config.name, {f.name: f.type for f in config.features},
                         {"name": config.target.name, "type": config.target.type},
                         policy_identity(policy.state()) if policy.active else None)


def check_config(config: PipelineConfig, champion: Bundle, version: str) -> None:
    """The config must still describe the champion's inputs, target and privacy policy: a
    challenger with other columns could not take its requests, and one with another policy
    (or hash key) would read the log's treated records as other values."""
    differences = identity_of(champion.name, champion.input_schema()).differences(config_identity(config))
    if differences:
        text = "; ".join(d.replace("served model", "config").replace("served", "in the config")
                         for d in differences)
        raise ConfigError(f"the config no longer matches the champion (version {version}): {text}. Fix: retrain "
                          "with the champion's config (its bundle holds it as config.yaml), or train and serve a new "
                          "model with modelmill train")


@dataclass
class Champion:
    version: str
    bundle: Bundle
    predictor: Predictor


def find_champion(folder: VersionFolder, service: Service | None) -> Champion:
    """The served version (with a service), else the newest version that loads."""
    candidates = [service.version] if service else list(reversed(folder.root.versions()))
    problems = []
    for version in candidates:
        try:
            bundle = folder.bundle(version)
            return Champion(version, bundle, Predictor.from_bundle(bundle))
        except ModelmillError as exc:
            problems.append(f"{version}: {exc}")
    raise ServingError(f"no version of {folder.path} loads: {'; '.join(problems)}")


def retrain(config_path: Path, *, log_url: str, versions: Path | None = None, serve: str | None = None,
            runs: Path = Path("runs"), trigger: str = "manual", shadow_first: bool = False,
            since: float | None = None, say: Say = log.info) -> Decision:
    """Train, judge and (maybe) promote one challenger, or judge the challenger in shadow;
    the recorded decision (what goes wrong after training is a ``failed`` one; a shadow
    still short of labelled records is ``waiting``, not recorded). The champion is in the
    folder ``versions``, or (``monitoring.retrain.registry``) a registered model's alias.

    Raises:
        ModelmillError: the input was wrong (config, log, folder, service): nothing was
            trained or promoted, and no decision recorded.
    """
    config = load_config(config_path)
    if shadow_first and serve is None:
        raise ServingError("--shadow-first needs --serve: the challenger runs in shadow beside the champion "
                           "in the running service")
    folder = open_versions(config, versions, shadow_first=shadow_first)
    with folder.lock(say):
        store = open_log(log_url)
        try:
            pending = pending_shadow(store)
            if pending is not None and isinstance(folder, RegistryVersions):
                raise ServingError(f"the prediction log has version {pending['challenger']} in shadow (decision "
                                   f"{pending['id']}), from a retraining into a folder of versions; the registry "
                                   f"({folder.ref}) has no shadow. Fix: settle it first with modelmill retrain "
                                   "--versions FOLDER --serve URL")
            if pending is not None:
                assert isinstance(folder, VersionFolder)
                from modelmill.retraining.shadow import judge_shadow

                return judge_shadow(store, folder, pending, config, serve, say=say)
            return _retrain(config, config_path, store, folder, serve, runs=runs, trigger=trigger,
                            shadow_first=shadow_first, since=since, say=say)
        except SQLAlchemyError as exc:  # the database went away while it was read
            raise ServingError(f"the prediction log at {display_url(store.url)} cannot be read: "
                               f"{database_message(exc)}. Fix: check that the database runs, then retrain "
                               "again") from None
        finally:
            store.close()


def pending_shadow(store: LogStore) -> dict[str, Any] | None:
    """The latest decision that put a challenger in shadow, unless a later one settled it."""
    settled: set[str] = set()
    for decision in reversed(store.decisions()):
        challenger = decision.get("challenger")
        if decision["outcome"] == "shadowing" and challenger not in settled:
            return decision
        if challenger:
            settled.add(str(challenger))
    return None


def _retrain(config: PipelineConfig, config_path: Path, store: LogStore, folder: VersionFolder | RegistryVersions,
             serve: str | None,
             *, runs: Path, trigger: str, shadow_first: bool, since: float | None, say: Say) -> Decision:
    from modelmill.api import Pipeline
    from modelmill.runs import mark_latest, new_run_dir

    started = time.perf_counter()
    token_env = config.serving.admin_token_env
    if isinstance(folder, RegistryVersions):
        service = folder.connect(serve, token_env) if serve else None
        champion = folder.champion(service)
    else:
        service = Service.connect(serve, token_env, folder) if serve else None
        champion = find_champion(folder, service)
    check_config(config, champion.bundle, champion.version)
    differences = store.identity().differences(identity_of(champion.bundle.name, champion.bundle.input_schema()))
    if differences:
        raise ServingError(f"the prediction log at {display_url(store.url)} holds another model's records "
                           f"({'; '.join(differences)}). Fix: give the log the champion's service writes (--log)")
    settings = config.monitoring.retrain
    metric = check_metric(champion.predictor.target.task, config.monitoring.decay.metric, "monitoring.decay.metric")
    labelled = labelled_records(store, champion.predictor, settings, since=since,
                                learned=champion.bundle.lineage.details.get("learned"))
    check_learnable(champion.predictor, labelled.learn)
    split = champion.bundle.split()
    if split is None:
        raise ServingError(f"version {champion.version} has no record of its test split (trained before bundles kept "
                           "one, or in shards: data.shards records none): the challenger could not be judged on the "
                           "same rows. Fix: train the champion again")
    record = SplitRecord.from_json(split)
    pipeline = Pipeline(config, base_dir=config_path.parent)
    original = pipeline.read()
    split_settings = config.data.split
    test_source = pipeline.read_source(str(split_settings.test_source)) if split_settings.method == "files" else None
    rows = training_rows(original, test_source, record, config, labelled.learn)
    say(f"challenger of version {champion.version}: {rows.original} original rows and {rows.added} logged records "
        f"to learn from; {len(labelled.held_back)} newest labelled records and {len(rows.test)} original test rows "
        "to judge on")
    run_dir = new_run_dir(runs, config.name)
    tracked = challenger_run(config, config_path.parent, run_dir, champion.bundle, trigger)
    if tracked is not None:  # the challenger's epochs go to MLflow as they end
        pipeline.callbacks.append(tracked.callback())
    try:
        _train_challenger(pipeline, rows, run_dir, champion)
        try:  # from here on a failure is a decision too: the audit (and watch's triggers) see it
            decision = _judge(pipeline, champion, labelled, rows, run_dir, store, metric, settings, trigger, started)
            log_challenger(tracked, decision.bundle, decision.figures, config)  # before a registry version: it reuses the run's files
            if decision.outcome == "promote":
                if isinstance(folder, RegistryVersions):
                    decision = folder.promote(decision, service, say, key=champion.bundle.key)
                else:
                    decision = _promote(decision, folder, service, store, shadow_first, say)
        except ModelmillError as exc:
            decision = Decision("failed", f"the challenger was trained but {exc}", trigger, champion.version)
        except (OSError, SQLAlchemyError) as exc:  # a full disk, a database gone: no traceback, and a decision
            why = database_message(exc) if isinstance(exc, SQLAlchemyError) else f"{exc.strerror or exc}"
            decision = Decision("failed", f"the challenger was trained but could not be written or promoted: {why}",
                                trigger, champion.version)
        if isinstance(folder, RegistryVersions):  # the audit names the registry the version numbers are of
            decision.figures["registry"] = folder.describe(champion.version, decision.challenger)
    except BaseException as exc:
        if tracked is not None:  # a run cut short says so in MLflow, instead of running for ever
            tracked.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if tracked is not None:
        from modelmill.tracking import tags

        tracked.set_tags({tags.DECISION: decision.outcome})
        tracked.finish()
        if tracked.url and tracked.down is None:
            say(f"mlflow run: {tracked.url}")
    mark_latest(run_dir)
    return decision.record(store)


def _train_challenger(pipeline: Any, rows: TrainingRows, run_dir: Path, champion: Champion) -> None:
    """Fit the challenger into ``run_dir`` (removed again when the fit fails). An encrypted
    champion's key seals the challenger's run (checkpoints, plots, log) as it sealed the
    champion: what was encrypted stays encrypted, whoever retrains it."""
    try:
        pipeline.fit(rows.train, test=rows.test, valid=rows.valid, run_dir=run_dir, key=champion.bundle.key)
    except ModelmillError:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _judge(pipeline: Any, champion: Champion, labelled: Labelled, rows: TrainingRows, run_dir: Path,
           store: LogStore, metric: str, settings: RetrainConfig, trigger: str, started: float) -> Decision:
    """The comparison and the rule's verdict (outcome ``promote`` or ``refused``), the
    challenger's bundle written with its lineage."""
    challenger = pipeline.parts
    recent = _compare(champion.predictor, challenger, labelled.held_back, metric, settings)
    original_test = _compare(champion.predictor, challenger, rows.test, metric, None)
    verdict = judge(recent, original_test, margin=settings.margin, tolerance=settings.tolerance,
                    confidence=settings.confidence)
    figures = {"recent": recent.as_json(), "original_test": original_test.as_json(),
               "rows": {"original_train": rows.original, "logged_learned": rows.added,
                        "held_back": len(labelled.held_back), "original_test": len(rows.test),
                        "labelled": labelled.total, "logged_copies_of_test_rows": rows.test_copies},
               "margin": settings.margin, "tolerance": settings.tolerance, "confidence": settings.confidence,
               "first_held_back": _iso(labelled.held_back["logged_at"].iloc[0]),
               "seconds": round(time.perf_counter() - started, 1)}
    lineage = Lineage("retrained", champion.bundle.digest,
                      (*champion.bundle.lineage.ancestors, _ancestor(champion.bundle)),
                      {"trigger": trigger, "log": display_url(store.url), "champion_version": champion.version,
                       "rows": figures["rows"], "recent": figures["recent"],
                       "original_test": figures["original_test"], "learned": labelled.learned()})
    bundle_path = pipeline.save(run_dir / "bundle", lineage=lineage, key=champion.bundle.key)  # sealed as it was
    return Decision("promote" if verdict.promote else "refused", verdict.reason, trigger, champion.version, None,
                    figures, lineage.as_json(), bundle_path)


def _promote(decision: Decision, folder: VersionFolder, service: Service | None, store: LogStore,
             shadow_first: bool, say: Say) -> Decision:
    assert decision.bundle is not None
    # a name no challenger had: shadow records and decisions are keyed by it
    version = folder.next_version(taken=[str(d["challenger"]) for d in store.decisions() if d["challenger"]])
    decision.challenger = version
    if shadow_first:
        assert service is not None
        folder.add(decision.bundle, version, shadow=True)
        try:
            service.shadow(version)
        except ServingError as exc:
            from modelmill.serving.client import ServiceError

            refused = isinstance(exc, ServiceError) and exc.status < 500 and exc.code != "busy"
            if refused or not _shadowing(service, version):  # no answer is no refusal: it may still be loading
                folder.remove(version, shadow=True)
                decision.outcome, decision.reason = "failed", f"{decision.reason}; but the service would not shadow it: {exc}"
                return decision
        decision.outcome = "shadowing"
        decision.reason = f"{decision.reason}; now in shadow beside the champion until its live records are judged"
        return decision
    folder.add(decision.bundle, version)
    say(f"wrote version {version} to {folder.path / version}")
    decision.outcome = "promoted"
    if service is not None:
        loaded = reload(service, version)
        if isinstance(loaded, str):  # the service did not take it: it must not stay the newest version
            folder.remove(version)
            decision.outcome, decision.reason = "failed", f"{decision.reason}; but the service did not load it: {loaded}"
        else:
            decision.figures["reload_seconds"] = loaded.get("seconds")
    return decision


def reload(service: Service, version: str, *, attempts: int = 5, pause_s: float = 2.0,
           pinned: bool = True) -> dict[str, Any] | str:
    """Ask the service to serve ``version`` (``pinned=False``: its newest, which for a service
    following a registry alias is what the alias names now, ``version`` expected): its
    answer, or why it did not. Only the service
    saying it cannot load the version is a refusal; a timeout or a busy answer is asked
    again (the service may still be loading it, or a worker not yet caught up), and what it
    serves then decides."""
    from modelmill.serving.client import ServiceError

    why = ""
    for _ in range(attempts):
        try:
            return service.reload(version if pinned else None)
        except ServiceError as exc:
            why = str(exc)
            if exc.code != "busy" and exc.status < 500:
                return why  # the service answered: it cannot take this version
        except ServingError as exc:  # no answer (a timeout, the connection cut)
            why = str(exc)
        time.sleep(pause_s)
        try:
            if str(service.model().get("version")) == version:
                return {"seconds": None}
        except ServingError:
            pass
    return why


def _shadowing(service: Service, version: str, *, attempts: int = 5, pause_s: float = 2.0) -> bool:
    for _ in range(attempts):
        time.sleep(pause_s)
        try:
            if ((service.model().get("shadow") or {}).get("version")) == version:
                return True
        except ServingError:
            pass
    return False


def _compare(champion: Predictor, challenger: Predictor, frame: pd.DataFrame, metric: str,
             settings: RetrainConfig | None) -> Comparison:
    """Both models on the rows of ``frame`` whose label both know."""
    target_name = champion.target.name
    known = champion.target.labelled(frame[target_name]) & challenger.target.labelled(frame[target_name])
    rows = frame.loc[known].reset_index(drop=True)
    if champion.target.class_names != challenger.target.class_names:
        raise ServingError(f"the challenger knows the classes {challenger.target.class_names}, the champion "
                           f"{champion.target.class_names}: their scores cannot be compared row by row")
    truth = np.asarray(champion.target.codes(rows[target_name]))
    try:
        if settings is None:
            return compare(champion.target.task, metric, truth, champion.predict(rows), challenger.predict(rows))
        return compare(champion.target.task, metric, truth, champion.predict(rows), challenger.predict(rows),
                       confidence=settings.confidence, resamples=settings.bootstrap)
    except ValueError as exc:
        raise ServingError(f"challenger and champion cannot be compared: {exc}") from None


def _ancestor(bundle: Bundle) -> dict[str, Any]:
    return {"sha256": bundle.digest, "action": bundle.lineage.action, "name": bundle.name,
            "created_at": bundle.manifest.get("created_at")}


def _iso(moment: Any) -> str:
    return pd.Timestamp(moment).isoformat()
