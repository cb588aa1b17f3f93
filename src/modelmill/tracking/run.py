"""One tracked run: a ``train``, ``compare``, ``tune`` or ``evaluate`` as an MLflow run that never
fails the work it records.

The resolved config goes in as params when the run starts; per-epoch (per-round) metrics go in
as steps while the model trains, buffered and sent in batches (one synchronous ``log_metric``
costs ~12 ms, an epoch of a small model less); the test metrics, the tags of the bundle (its
hashes, data source, parent) and its files as artefacts go in at the end.

Any failure of MLflow (a server that cannot be reached at the start, one that stops answering
mid-run) turns the run into one that records what it could not log: the work goes on, and one
warning at the end says what is missing from MLflow. The run folder keeps everything either way.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill._version import __version__
from modelmill.errors import ConfigError
from modelmill.tracking import tags
from modelmill.tracking.client import failure, import_mlflow, mlflow_client, redact, tracking_uri
from modelmill.tracking.values import experiment_named, files_under, flatten, git_commit, param_value

if TYPE_CHECKING:
    from modelmill.bundle import Bundle
    from modelmill.config import TaskConfig
    from modelmill.training import Callback

log = logging.getLogger("modelmill")

FLUSH_SECONDS = 2.0  # metrics wait at most this long in the buffer while training
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's limits per log_batch request
UPLOADS = 4  # artefact uploads at once
REPORT_FILES = ("report.html", "cleaning_report.json", "model_card.json", "metrics.json", "history.json")


class TrackedRun:
    """An MLflow run, or the record of what could not be logged to it.

    Build one with :meth:`start` (None when tracking is off); every method is safe to call
    whether or not the server answers."""

    def __init__(self, uri: str, client: Any, run_id: str | None, experiment_id: str | None,
                 down: str | None = None) -> None:
        self.uri, self.client = uri, client
        self._run_id, self._experiment_id = run_id, experiment_id
        self._down = down  # why MLflow stopped answering; None while it answers
        self._starting: threading.Thread | None = None  # the run being opened in the background
        self._lock = threading.Lock()  # the bookkeeping, shared with the upload threads
        self.lost: dict[str, int] = {}  # what was not logged → how many
        self.steps_logged = 0  # epoch rows sent (or buffered) while training
        self._next_step = 0
        self._buffer: list[Any] = []
        self._flushed = time.monotonic()
        self.flush_seconds = FLUSH_SECONDS
        self.seconds = 0.0  # the work waited this long for tracking: what tracking adds to a run
        self.background_seconds = 0.0  # opening the run (MLflow's import, its first requests), beside the work

    # ------------------------------------------------------------------ start

    @classmethod
    def start(cls, config: TaskConfig, *, action: str, run_name: str | None = None,
              parent: TrackedRun | None = None, base_dir: Path | None = None,
              params: Mapping[str, Any] | None = None, run_dir: Path | None = None) -> TrackedRun | None:
        """Open an MLflow run for ``config`` (None when tracking is off): its experiment is
        ``tracking.experiment`` (default: the config's name), its params the flattened resolved
        config (or ``params``), its tags what the run is. A child of ``parent`` (a tune's trial,
        a compare's variant) is nested under it in MLflow.

        Raises:
            ConfigError: ``tracking.uri`` is set in the config and MLflow is not installed (a run
                the config asks to track must not start untracked). With only MLFLOW_TRACKING_URI
                set, that is a warning.
        """
        if parent is not None:
            uri: str | None = parent.uri
        else:
            uri = tracking_uri(config.tracking)
        if uri is None:
            return None
        if importlib.util.find_spec("mlflow") is None:  # known at once, without paying for MLflow's import
            try:
                import_mlflow()
            except ConfigError as exc:
                if config.tracking.uri:
                    raise
                log.warning(f"tracking: MLFLOW_TRACKING_URI is set, and this run is not tracked: {exc}")
                return None
        tracked = cls(uri, parent.client if parent is not None else None, None, None)
        if parent is not None and parent.run_id is None:  # the parent never reached MLflow: neither will this
            tracked._down = parent.down
            return tracked
        # MLflow's import (1-2 s) and the run's first requests go on beside the work (reading the data,
        # training), so that tracking costs the run little more than its uploads at the end
        tracked._starting = threading.Thread(
            target=tracked._open, name="modelmill-tracking", daemon=True,
            args=(config, action, run_name, parent, base_dir, params, run_dir))
        tracked._starting.start()
        return tracked

    def _open(self, config: TaskConfig, action: str, run_name: str | None, parent: TrackedRun | None,
              base_dir: Path | None, params: Mapping[str, Any] | None, run_dir: Path | None) -> None:
        """Create the run and log its params (in the background thread of :meth:`start`)."""
        started = time.perf_counter()
        try:
            self._create(config, action, run_name, parent, base_dir, params, run_dir)
        finally:
            self.background_seconds = time.perf_counter() - started

    def _create(self, config: TaskConfig, action: str, run_name: str | None, parent: TrackedRun | None,
                base_dir: Path | None, params: Mapping[str, Any] | None, run_dir: Path | None) -> None:
        try:
            if self.client is None:
                self.client = mlflow_client(self.uri)
            experiment_id = parent.experiment_id if parent is not None else experiment_named(
                self.client, config.tracking.experiment or config.name)
            run_tags = {tags.ACTION: action, tags.TASK: config.task, tags.CONFIG_NAME: config.name,
                        tags.MODELMILL_VERSION: __version__, **git_commit(base_dir)}
            if run_dir is not None:
                run_tags[tags.RUN_DIR] = str(run_dir.resolve())
            if parent is not None and parent.run_id is not None:
                run_tags[tags.PARENT_RUN] = parent.run_id
            run = self.client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        except Exception as exc:
            self._down = failure(exc)
            log.warning(f"tracking: MLflow at {redact(self.uri)} cannot be reached ({self._down}); this {action} "
                        "goes on untracked: its params, metrics and artefacts will not be in MLflow (the run "
                        "folder keeps them all)")
            return
        self._run_id, self._experiment_id = run.info.run_id, str(experiment_id)
        self._log_params(flatten(config.model_dump(mode="json")) if params is None else params)

    def _open_id(self) -> str | None:
        """The run's id, waiting for it to open unless this is the thread opening it."""
        if threading.current_thread() is not self._starting:
            self._ready()
        return self._run_id

    def _ready(self) -> None:
        """Wait for the run to be open (the time waited counts as tracking's)."""
        starting = self._starting
        if starting is not None:
            started = time.perf_counter()
            starting.join()
            self._starting = None
            self.seconds += time.perf_counter() - started

    @property
    def run_id(self) -> str | None:
        """The MLflow run's id; None when it could not be created."""
        self._ready()
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        self._ready()
        return self._experiment_id

    @property
    def down(self) -> str | None:
        """Why MLflow stopped answering (or could not be reached); None while it answers."""
        self._ready()
        return self._down

    @property
    def url(self) -> str | None:
        """The run's page in the MLflow UI (a tracking server over HTTP), without credentials."""
        if self.run_id is None or not self.uri.startswith(("http://", "https://")):
            return None
        return redact(f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}")

    # ------------------------------------------------------------------ logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._ready()
        self._log_params(params)

    def _log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k)[:250], param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS):
            chunk = items[i:i + MAX_PARAMS]
            self._call("params", len(chunk), partial(self._send_batch, params=chunk))

    def set_tags(self, values: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in values.items()]
        for i in range(0, len(items), MAX_TAGS):
            chunk = items[i:i + MAX_TAGS]
            self._call("tags", len(chunk), partial(self._send_batch, tags=chunk))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, *, flush: bool = True) -> None:
        """Buffer ``metrics`` (numbers only; NaN and infinities are left out) at ``step``; sent at
        once with ``flush``, else when the buffer is a few seconds old."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            self._buffer.append(Metric(str(key)[:250], float(value), now, 0 if step is None else int(step)))
        if flush or len(self._buffer) >= MAX_METRICS or time.monotonic() - self._flushed >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        pending, self._buffer = self._buffer, []
        self._flushed = time.monotonic()
        for i in range(0, len(pending), MAX_METRICS):
            chunk = pending[i:i + MAX_METRICS]
            self._call("metric values", len(chunk), partial(self._send_batch, metrics=chunk))

    def log_epoch(self, row: Mapping[str, float]) -> None:
        """One epoch's (one boosting round's) row as the next step. Several fits in one run (folds,
        an ensemble's candidates) follow each other on the step axis; ``epoch`` says where each starts."""
        self._next_step += 1
        self.steps_logged += 1
        self.log_metrics(row, step=self._next_step, flush=False)

    def callback(self) -> Callback:
        """A training callback that logs every epoch's row as it ends (and flushes at the end of a fit)."""
        from modelmill.training import Callback
        from modelmill.training.callbacks import LoopState

        tracked = self

        class EpochMetrics(Callback):
            def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
                tracked.log_epoch(row)

            def on_train_end(self, state: LoopState) -> None:
                tracked.flush()

        return EpochMetrics()

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_file():
            self._upload([(path, artifact_path)])

    def log_folder(self, path: Path, artifact_path: str | None = None) -> None:
        """Every file under ``path``, at the same place under ``artifact_path`` among the artefacts."""
        self._upload(files_under(path, artifact_path))

    def log_bundle(self, bundle: Bundle, *, files: bool = True, whole: bool = False) -> None:
        """What a finished bundle tells: its test metrics (metrics.json, as they are there), its
        learning curves when they were not logged live (a forecast's or recommender's fits), the
        tags that link it (hashes, data source, parent and the parent's run); with ``files`` its
        report and plots as artefacts, with ``whole`` every file of the bundle under ``bundle/``
        (what ``modelmill register`` makes a model version of)."""
        from modelmill.tracking.lineage import bundle_tags, run_of_bundle

        if self.steps_logged == 0:
            for row in bundle.history() or []:
                self.log_epoch(row)
        # at the last epoch's step, later: MLflow's latest value of valid_* is then the chosen epoch's,
        # as in metrics.json, not the last epoch's
        self.log_metrics(bundle.metrics(), step=self._next_step)
        found = bundle_tags(bundle)
        parent = bundle.lineage.parent
        if parent and self.down is None and self.run_id is not None:
            started = time.perf_counter()
            try:
                parent_run = run_of_bundle(self.client, parent)
            except Exception:  # a link is a nicety: the tags below still name the parent's hash
                parent_run = None
            self.seconds += time.perf_counter() - started
            if parent_run is not None:
                found[tags.PARENT_RUN_ID] = parent_run.info.run_id
        self.set_tags(found)
        uploads: list[tuple[Path, str | None]] = []
        if whole:  # the report on top, where the UI shows it first; the rest inside bundle/
            uploads = [(bundle.path / "report.html", None), *files_under(bundle.path, tags.BUNDLE_ARTIFACTS)]
        elif files:
            uploads = [(bundle.path / name, None) for name in REPORT_FILES] + files_under(bundle.path / "plots",
                                                                                          "plots")
        self._upload([(path, where) for path, where in uploads if path.is_file()])

    # ------------------------------------------------------------------ end

    def finish(self, status: str = "FINISHED") -> None:
        """Send what is buffered, close the run with ``status`` (FINISHED, FAILED, KILLED), and
        say what did not reach MLflow, if anything."""
        self.flush()
        if self.run_id is not None:
            self._call("the run's end", 1, partial(self._end, status))
        log.info(f"seconds: tracking {self.seconds:.2f} (opening the run, beside the work: "
                 f"{self.background_seconds:.2f})")
        if self.lost and self.run_id is not None:  # a run that never started warned at its start
            missing = ", ".join(f"{count} {what}" if count > 1 else what for what, count in self.lost.items())
            log.warning(f"tracking: MLflow at {redact(self.uri)} stopped answering ({self.down}); not logged to "
                        f"run {self.run_id}: {missing}. The run folder keeps them all")

    def _call(self, what: str, count: int, send: Callable[[], Any], *, timed: bool = True) -> bool:
        """Send with ``send`` unless MLflow is down; a failure marks it down (one warning now, the
        full account at :meth:`finish`). ``timed``: the time counts as tracking's (not for the
        upload threads, whose wall time :meth:`_upload` counts once)."""
        if self._open_id() is None or self._down is not None:
            with self._lock:
                self.lost[what] = self.lost.get(what, 0) + count
            return False
        started = time.perf_counter()
        try:
            send()
        except Exception as exc:
            with self._lock:
                first = self._down is None
                self._down = self._down or failure(exc)
                self.lost[what] = self.lost.get(what, 0) + count
            if first:
                log.warning(f"tracking: MLflow at {redact(self.uri)} stopped answering ({self._down}); the work "
                            "goes on untracked from here")
            return False
        finally:
            if timed and threading.current_thread() is not self._starting:
                self.seconds += time.perf_counter() - started
        return True

    def _send_batch(self, **batch: Any) -> None:
        """One ``log_batch`` request (the client and the run's id read when it is sent, after the run opened)."""
        self.client.log_batch(self._run_id, **batch)

    def _end(self, status: str) -> None:
        self.client.set_terminated(self._run_id, status)

    def _send_file(self, path: Path, artifact_path: str | None) -> None:
        self.client.log_artifact(self._run_id, str(path), artifact_path)

    def _upload(self, files: list[tuple[Path, str | None]]) -> None:
        """Upload ``files`` (each with its folder among the artefacts) four at a time: each is a request
        of its own, and a tracking server's answers, not our CPU, are what they wait for."""
        if not files or self.run_id is None:
            return
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=UPLOADS, thread_name_prefix="modelmill-upload") as pool:
            list(pool.map(lambda item: self._call(
                f"artefact {item[1] + '/' if item[1] else ''}{item[0].name}", 1,
                partial(self._send_file, item[0], item[1]), timed=False), files))
        self.seconds += time.perf_counter() - started


def check_tracking(config: TaskConfig, *, encrypted: bool = False) -> None:
    """Fail now, before any work or folder, on tracking settings that cannot be right.

    Raises:
        ConfigError: MLFLOW_TRACKING_URI of a scheme MLflow cannot track to; an encrypted run with
            tracking on (MLflow would hold its config, metrics and report in clear).
    """
    if tracking_uri(config.tracking) is not None and encrypted:
        raise ConfigError("an encrypted run cannot be tracked: MLflow would hold its config, metrics and report "
                          "in clear. Fix: set tracking.enabled: false in the config (or unset MLFLOW_TRACKING_URI) "
                          "for encrypted runs", path="tracking")


@contextmanager
def tracking(config: TaskConfig, *, action: str, base_dir: Path | None = None, run_dir: Path | None = None,
             run_name: str | None = None, encrypted: bool = False,
             params: Mapping[str, Any] | None = None) -> Iterator[TrackedRun | None]:
    """The tracked run of a command (None when tracking is off), closed as FINISHED, FAILED (an
    error) or KILLED (Ctrl-C) with the command.

    Raises:
        ConfigError: an encrypted run with tracking on: MLflow would hold its config, metrics and
            report in clear.
    """
    check_tracking(config, encrypted=encrypted)
    run = TrackedRun.start(config, action=action, run_name=run_name, base_dir=base_dir, run_dir=run_dir,
                           params=params)
    try:
        yield run
    except KeyboardInterrupt:
        if run is not None:
            run.finish("KILLED")
        raise
    except BaseException:
        if run is not None:
            run.finish("FAILED")
        raise
    if run is not None:
        run.finish()
