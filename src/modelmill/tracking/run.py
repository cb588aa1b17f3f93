"""One tracked run: a ``train``, ``compare``, ``tune``, ``evaluate``, a derived bundle's command or
the closed loop's challenger as an MLflow run that never fails the work it records.

The run is opened in a background thread (MLflow's import and its first requests go on beside
the work); the resolved config goes in as params then; per-epoch (per-round) metrics go in as
steps while the model trains, buffered and sent every few seconds (one synchronous
``log_metric`` costs ~12 ms, an epoch of a small model less); the test metrics, the tags of the
bundle (its hashes, data source, parent) and its files as artefacts go in at the end.

Any failure of MLflow (a server that cannot be reached at the start, one that stops answering
mid-run, a request it refuses) is recorded instead of raised: the work goes on, and one warning
at the end says what is missing from MLflow. The run folder keeps everything either way.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelmill._version import __version__
from modelmill.errors import ConfigError, TrackingError
from modelmill.tracking import tags
from modelmill.tracking.client import (failure, import_mlflow, mlflow_client, quick_failure_defaults, redact,
                                       tracking_uri)
from modelmill.tracking.values import experiment_named, files_under, flatten, git_commit, key, param_value

if TYPE_CHECKING:
    from modelmill.bundle import Bundle
    from modelmill.config import TaskConfig
    from modelmill.training import Callback

log = logging.getLogger("modelmill")

FLUSH_SECONDS = 2.0  # metrics wait at most this long in the buffer while training
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's limits per log_batch request
UPLOADS = 4  # artefact uploads at once
REPORT_FILES = ("report.html", "cleaning_report.json", "model_card.json", "metrics.json", "history.json")
# what a server answers to a request it will not take (a name it refuses, a run it no longer has): that
# request is lost, and the server is still up
REFUSALS = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
            "INVALID_STATE", "PERMISSION_DENIED"}
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _never_raises(what: str) -> Callable[[_Method], _Method]:
    """A public method of TrackedRun that records a failure of its own (a bug of ours, a file gone)
    as something not logged, instead of failing the work it tracks."""
    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        def safe(self: TrackedRun, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                self._lose(what, 1)
                log.warning(f"tracking: {what} could not be logged ({failure(exc)}); the work goes on")
                return None
        return safe  # type: ignore[return-value]
    return wrap


class TrackedRun:
    """An MLflow run, or the record of what could not be logged to it.

    Build one with :meth:`start` (None when tracking is off); no method raises, whether or not the
    server answers."""

    def __init__(self, uri: str, client: Any = None, *, parent: TrackedRun | None = None,
                 base_dir: Path | None = None) -> None:
        self.uri, self.client, self.parent, self.base_dir = uri, client, parent, base_dir
        self._run_id: str | None = None
        self._experiment_id: str | None = None
        self._down: str | None = None  # why MLflow stopped answering; None while it answers
        self._starting: threading.Thread | None = None  # the run being opened in the background
        self._lock = threading.Lock()  # the bookkeeping, shared with the upload threads
        self.lost: dict[str, int] = {}  # what was not logged → how many
        self.steps_logged = 0  # epoch rows logged (sent or buffered)
        self._offset = 0  # the current fit's epoch 1 is step offset + 1
        self._last_step = 0
        self._last_time = 0  # ms of the newest metric value
        self._buffer: list[Any] = []
        self._flushed = time.monotonic()
        self.flush_seconds = FLUSH_SECONDS
        self.seconds = 0.0  # the work waited this long for tracking: what tracking adds to a run
        self.background_seconds = 0.0  # opening the run (MLflow's import, its first requests), beside the work

    # ------------------------------------------------------------------ start

    @classmethod
    def start(cls, config: TaskConfig, *, action: str, run_name: str | None = None,
              parent: TrackedRun | None = None, base_dir: Path | None = None,
              params: Mapping[str, Any] | None = None, run_dir: Path | None = None,
              uri: str | None = None) -> TrackedRun | None:
        """Open an MLflow run for ``config`` at ``uri`` (default: where the config's tracking section,
        else MLFLOW_TRACKING_URI, says; None when tracking is off): its experiment is
        ``tracking.experiment`` (default: the config's name), its params the flattened resolved
        config (or ``params``), its tags what the run is. A child of ``parent`` (a tune's trial, a
        compare's variant) is nested under it, and what it could not log is counted in the parent's.

        Raises:
            ConfigError: ``tracking.uri`` is set in the config and MLflow is not installed (a run
                the config asks to track must not start untracked). With only MLFLOW_TRACKING_URI
                set, that is a warning.
        """
        if parent is not None:
            uri = parent.uri
        elif uri is None:
            uri = tracking_uri(config.tracking)
        if uri is None:
            return None
        if importlib.util.find_spec("mlflow") is None:  # known at once, without paying for MLflow's import
            try:
                import_mlflow()
            except ConfigError as exc:
                if config.tracking.uri and parent is None:
                    raise
                log.warning(f"tracking: this run is not tracked: {exc}")
                return None
        quick_failure_defaults()  # here, before our threads: never set while another thread reads
        tracked = cls(uri, parent=parent, base_dir=base_dir or (parent.base_dir if parent is not None else None))
        if parent is not None:
            tracked.client = parent.client if parent.run_id is not None else None  # run_id waits for the parent
            if parent.down is not None:  # the parent's server is gone: this run is not tried again
                tracked._down = parent.down
                return tracked
        tracked._starting = threading.Thread(
            target=tracked._open, name="modelmill-tracking", daemon=True,
            args=(config, action, run_name, params, run_dir))
        tracked._starting.start()
        return tracked

    def _open(self, config: TaskConfig, action: str, run_name: str | None, params: Mapping[str, Any] | None,
              run_dir: Path | None) -> None:
        """Create the run and log its params (the background thread of :meth:`start`)."""
        started = time.perf_counter()
        try:
            self._create(config, action, run_name, params, run_dir)
        except Exception as exc:
            self._down = failure(exc)
            why = str(exc) if isinstance(exc, TrackingError) else (
                f"MLflow at {redact(self.uri)} cannot be reached ({self._down})")
            if self.parent is None:
                log.warning(f"tracking: {why}; this {action} goes on untracked: its params, metrics and "
                            "artefacts will not be in MLflow (the run folder keeps them all)")
            else:  # counted in the parent's account; and the next children are not tried against a dead server
                self._lose("the run", 1)
                if getattr(exc, "error_code", None) not in REFUSALS:
                    self.parent._mark_down(self._down)
        finally:
            self.background_seconds = time.perf_counter() - started

    def _create(self, config: TaskConfig, action: str, run_name: str | None, params: Mapping[str, Any] | None,
                run_dir: Path | None) -> None:
        if self.client is None:
            self.client = mlflow_client(self.uri)
        parent = self.parent
        experiment_id = parent.experiment_id if parent is not None else experiment_named(
            self.client, config.tracking.experiment or config.name)
        run_tags = {tags.ACTION: action, tags.TASK: config.task, tags.CONFIG_NAME: config.name,
                    tags.MODELMILL_VERSION: __version__, **git_commit(self.base_dir)}
        if run_dir is not None:
            run_tags[tags.RUN_DIR] = str(run_dir.resolve())
        if parent is not None and parent.run_id is not None:
            run_tags[tags.PARENT_RUN] = parent.run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        self._run_id, self._experiment_id = run.info.run_id, str(experiment_id)
        self._log_params(flatten(config.model_dump(mode="json")) if params is None else params)

    def _opening(self) -> bool:
        """Whether the run is still being opened (by another thread than this one)."""
        starting = self._starting
        return starting is not None and starting.is_alive() and threading.current_thread() is not starting

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

    @_never_raises("params")
    def log_params(self, params: Mapping[str, Any]) -> None:
        self._ready()
        self._log_params(params)

    def _log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key(k), param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS):
            chunk = items[i:i + MAX_PARAMS]
            self._call("params", len(chunk), partial(self._send_batch, params=chunk))

    @_never_raises("tags")
    def set_tags(self, values: Mapping[str, str]) -> None:
        self._ready()  # MLflow imported by the opening thread first (see log_metrics)
        from mlflow.entities import RunTag

        items = [RunTag(k, redact(str(v))[:5000]) for k, v in values.items()]
        for i in range(0, len(items), MAX_TAGS):
            chunk = items[i:i + MAX_TAGS]
            self._call("tags", len(chunk), partial(self._send_batch, tags=chunk))

    @_never_raises("metric values")
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, *, flush: bool = True) -> None:
        """Buffer ``metrics`` (numbers only; NaN and infinities are left out; names as MLflow takes
        them, see :func:`~modelmill.tracking.values.key`) at ``step``; sent at once with ``flush``,
        else when the buffer is a few seconds old and the run is open."""
        now = max(int(time.time() * 1000), self._last_time + 1)  # later than any value before: MLflow's
        self._last_time = now                                     # latest value is this one at a tied step
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            # plain tuples: MLflow's classes are imported only once the run is open, never while the
            # opening thread imports MLflow (two threads importing one package can see it half made)
            self._buffer.append((key(name), float(value), now, 0 if step is None else int(step)))
        if flush or len(self._buffer) >= MAX_METRICS or time.monotonic() - self._flushed >= self.flush_seconds:
            self._flush(wait=flush)

    @_never_raises("metric values")
    def flush(self) -> None:
        """Send every buffered value now (waiting for the run to open, if it is being opened)."""
        self._flush(wait=True)

    def _flush(self, *, wait: bool) -> None:
        if not wait and self._opening():
            return  # an epoch never waits for the run to open: its values stay buffered until then
        self._ready()
        pending, self._buffer = self._buffer, []
        self._flushed = time.monotonic()
        if not pending:
            return
        from mlflow.entities import Metric

        pending = [Metric(*values) for values in pending]
        for i in range(0, len(pending), MAX_METRICS):
            chunk = pending[i:i + MAX_METRICS]
            self._call("metric values", len(chunk), partial(self._send_batch, metrics=chunk))

    def begin_fit(self, history: list[dict[str, float]] | None = None) -> None:
        """A new fit starts after the steps logged so far (folds, an ensemble's candidates follow each
        other on the step axis); a resumed fit's ``history`` (its epochs before the restart) is logged
        first, so its steps are its epochs."""
        self._offset = self._last_step
        for row in history or []:
            self.log_epoch(row)

    def log_epoch(self, row: Mapping[str, float]) -> None:
        """One epoch's (one boosting round's) row, at step offset + its ``epoch``."""
        epoch = row.get("epoch")
        step = self._offset + int(epoch) if isinstance(epoch, (int, float)) and math.isfinite(epoch) and epoch > 0 \
            else self._last_step + 1
        self._last_step = max(self._last_step, step)
        self.steps_logged += 1
        self.log_metrics(row, step=step, flush=False)

    def callback(self) -> Callback:
        """A training callback that logs every epoch's row as it ends (and sends them at the end of a fit)."""
        from modelmill.training import Callback
        from modelmill.training.callbacks import LoopState

        tracked = self

        class EpochMetrics(Callback):
            observes_only = True  # steers nothing: on Ray, replayed from the workers' epochs without a warning

            def on_train_start(self, state: LoopState, total_epochs: int) -> None:
                tracked.begin_fit(state.history if tracked.steps_logged == 0 else None)

            def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
                tracked.log_epoch(row)

            def on_train_end(self, state: LoopState) -> None:
                tracked._flush(wait=False)

        return EpochMetrics()

    @_never_raises("artefacts")
    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_file():
            self._upload([(path, artifact_path)])

    @_never_raises("artefacts")
    def log_folder(self, path: Path, artifact_path: str | None = None) -> None:
        """Every file under ``path``, at the same place under ``artifact_path`` among the artefacts."""
        self._upload(files_under(path, artifact_path))

    @_never_raises("the bundle's metrics, tags and files")
    def log_bundle(self, bundle: Bundle, *, files: bool = True, whole: bool = False) -> None:
        """What a finished bundle tells: its test metrics (metrics.json, as they are there: at the last
        step, after the epochs, so that MLflow's latest values are these), its learning curves when
        they were not logged live (a forecast's or a recommender's fits), the tags that link it
        (hashes, data source, parent and the parent's run); with ``files`` its report and plots as
        artefacts, with ``whole`` every file of the bundle under ``bundle/`` (what ``modelmill
        register`` makes a model version of) and the report on top."""
        from modelmill.tracking.lineage import bundle_tags, run_of_bundle

        if self.steps_logged == 0:
            self.begin_fit(bundle.history())
        self.log_metrics(bundle.metrics(), step=self._last_step)
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
        if whole:
            uploads = [(bundle.path / "report.html", None), *files_under(bundle.path, tags.BUNDLE_ARTIFACTS)]
        elif files:
            uploads = [(bundle.path / name, None) for name in REPORT_FILES] + files_under(bundle.path / "plots",
                                                                                          "plots")
        self._upload([(path, where) for path, where in uploads if path.is_file()])

    # ------------------------------------------------------------------ end

    @_never_raises("the run's end")
    def finish(self, status: str = "FINISHED") -> None:
        """Send what is buffered, close the run with ``status`` (FINISHED, FAILED, KILLED), and say
        what did not reach MLflow, if anything (a child run adds that to its parent's account)."""
        self._flush(wait=True)
        if self.run_id is not None:  # tried even after a failure: a blip must not leave the run RUNNING
            try:
                self.client.set_terminated(self._run_id, status)
            except Exception as exc:
                self._lose("the run's end", 1)
                self._down = self._down or failure(exc)
        log.info(f"seconds: tracking {self.seconds:.2f} (opening the run, beside the work: "
                 f"{self.background_seconds:.2f})")
        if self.parent is not None:
            for what, count in self.lost.items():
                self.parent._lose(f"{what} of nested runs", count)
        elif self.lost and self.run_id is not None:  # a run that never opened warned at its start
            missing = ", ".join(f"{count} {what}" if count > 1 else what for what, count in self.lost.items())
            why = f"stopped answering ({self._down})" if self._down else "refused some requests"
            log.warning(f"tracking: MLflow at {redact(self.uri)} {why}; not logged to run {self.run_id}: {missing}. "
                        "The run folder keeps them all")

    def _mark_down(self, reason: str) -> None:
        """MLflow stopped answering: nothing more is sent by this run, its parent or their later
        children (one warning, from the top run; the full account at :meth:`finish`)."""
        with self._lock:
            first, self._down = self._down is None, self._down or reason
        if self.parent is not None:
            self.parent._mark_down(reason)
        elif first:
            log.warning(f"tracking: MLflow at {redact(self.uri)} stopped answering ({reason}); the work goes on "
                        "untracked from here")

    def _lose(self, what: str, count: int) -> None:
        with self._lock:
            self.lost[what] = self.lost.get(what, 0) + count

    def _call(self, what: str, count: int, send: Callable[[], Any], *, timed: bool = True) -> bool:
        """Send with ``send`` unless MLflow is down. A refused request is lost alone; any other failure
        marks MLflow down (one warning now, the full account at :meth:`finish`). ``timed``: the time
        counts as tracking's (not in the upload threads, whose wall time :meth:`_upload` counts once)."""
        if self._open_id() is None or self._down is not None:
            self._lose(what, count)
            return False
        started = time.perf_counter()
        try:
            send()
        except Exception as exc:
            self._lose(what, count)
            reason = failure(exc)
            if getattr(exc, "error_code", None) in REFUSALS:
                log.warning(f"tracking: MLflow refused the {what} ({reason}); the rest is still logged")
                return False
            self._mark_down(reason)
            return False
        finally:
            if timed and threading.current_thread() is not self._starting:
                self.seconds += time.perf_counter() - started
        return True

    def _send_batch(self, **batch: Any) -> None:
        """One ``log_batch`` request (the client and the run's id read when it is sent, after the run opened)."""
        self.client.log_batch(self._run_id, **batch)

    def _send_file(self, path: Path, artifact_path: str | None) -> None:
        self.client.log_artifact(self._run_id, str(path), artifact_path)

    def _upload(self, files: list[tuple[Path, str | None]]) -> None:
        """Upload ``files`` (each with its folder among the artefacts) four at a time: each is a request
        of its own, and the server's answers, not our CPU, are what they wait for."""
        if not files or self.run_id is None:
            return
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=UPLOADS, thread_name_prefix="modelmill-upload") as pool:
            list(pool.map(lambda item: self._call(
                f"artefact {item[1] + '/' if item[1] else ''}{item[0].name}", 1,
                partial(self._send_file, item[0], item[1]), timed=False), files))
        self.seconds += time.perf_counter() - started
