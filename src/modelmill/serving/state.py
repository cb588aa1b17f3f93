"""What one server process holds: the model root, the served version, the history of
versions for rollback, the batcher, the metrics and the readiness flag."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill.config.serving import ServingConfig
from modelmill.files import atomic_write_bytes
from modelmill.serving.batcher import Batcher
from modelmill.serving.metrics import ServerMetrics
from modelmill.serving.models import Served, ServedModel, load_served
from modelmill.serving.versions import ModelRoot
from modelmill.errors import KEY_ERRORS
from modelmill.serving.problem import Problem, without_paths

if TYPE_CHECKING:
    from modelmill.monitoring import PredictionLog
    from modelmill.serving.shadow import ShadowRunner

log = logging.getLogger("modelmill.serving")


def freeze_heap() -> None:
    """Move everything alive now (the imported libraries, the loaded model: millions of
    objects) out of the garbage collector's reach. Requests allocate and free their own
    objects; without this every full collection walks all of torch and pandas again: on two
    cores that was a quarter of the server's CPU time per request at 64 concurrent clients.
    Called again after a version change, unfreezing first, so that the old version's
    objects can be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ServerState:
    """With ``--workers N`` every worker holds one of these. ``selection`` is then a file
    shared by the workers: the one that answers an admin call writes the version it now
    serves (and the rollback history) there, and the others follow within a second."""

    def __init__(self, root: ModelRoot, settings: ServingConfig, first: Served,
                 selection: Path | None = None, metrics: ServerMetrics | None = None,
                 prediction_log: PredictionLog | None = None, broken: dict[str, str] | None = None) -> None:
        self.root = root
        self.selection = selection
        self._selection_seq = 0  # the number of the newest selection this worker has taken on (or written)
        self.settings = settings
        self.current = first
        self.history: list[str] = []  # versions served before the current one, oldest first
        self.draining = False
        self.metrics = metrics or ServerMetrics()
        self.prediction_log = prediction_log
        self.shadow: ShadowRunner | None = None  # a challenger predicting beside the served model
        self.batcher = Batcher(max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms,
                               queue_size=settings.queue_size, on_batch=self.metrics.observe_batch)
        self.metrics.watch(self.metrics.queue_depth, lambda: float(self.batcher.depth))
        self.metrics.watch(self.metrics.ready, lambda: 1.0 if self.ready else 0.0)
        if prediction_log is not None:
            self.metrics.watch(self.metrics.log_pending, lambda: float(prediction_log.pending))
            self.metrics.watch(self.metrics.log_store_up, lambda: 0.0 if prediction_log.store_down else 1.0)
        self.metrics.serving(first.name, first.version)
        self.broken: dict[str, str] = {}  # versions that failed to load or warm up → why (no paths)
        self._set_broken(broken or {})
        self._swap_lock = asyncio.Lock()

    @property
    def predicting(self) -> ServedModel:
        """The served model of a ``task: predict`` server: what the predict, explain and feedback
        routes, the prediction log and the shadow work with (a forecast or recommend server has
        none of them: a 404 that names its route)."""
        current = self.current
        if not isinstance(current, ServedModel):
            route = {"forecast": "/v1/forecast", "recommend": "/v1/recommend"}.get(current.task, "/v1/model")
            raise Problem(404, "not_found", f"this server serves a `task: {current.task}` model: POST {route}; "
                          "GET /v1/model describes it")
        return current

    @property
    def ready(self) -> bool:
        return not self.draining and self.batcher.alive

    def begin_drain(self) -> None:
        """Readiness answers 503 from now on; requests already accepted still complete."""
        if not self.draining:
            log.info("draining: readiness is now 503; finishing in-flight requests")
        self.draining = True

    async def reload(self, version: str | None) -> dict[str, Any]:
        """Load and warm ``version`` (default: the newest), then switch to it atomically."""
        await self.catch_up()
        return await self._switch(lambda: version or self.root.newest(), rollback=False)

    async def rollback(self) -> dict[str, Any]:
        """Back to the version served before this one (or, after a restart, the next older)."""
        def previous() -> str:
            if self.history:
                return self.history[-1]
            older = self.root.older_versions(self.current.version)
            if not older:
                raise Problem(409, "nothing_to_roll_back", f"no version older than {self.current.version!r}")
            return older[-1]

        await self.catch_up()
        return await self._switch(previous, rollback=True)

    def shadow_with(self, runner: ShadowRunner | None) -> ShadowRunner | None:
        """``runner`` (started here) shadows the served model from now on, or none; the
        runner it replaces is returned, for the caller to stop."""
        previous, self.shadow = self.shadow, runner
        if runner is not None:
            runner.start()
        self.metrics.shadowing(None if runner is None else runner.version)
        return previous

    async def change_shadow(self, name: str | None, *, publish: bool = True) -> dict[str, Any]:
        """Shadow the served model with the challenger ``.shadow/NAME/`` (loaded, checked and
        warmed first; a failure leaves things as they were), or stop shadowing (None)."""
        from modelmill.serving.shadow import open_shadow

        if publish:  # an admin call, not this worker following the others
            await self.catch_up()
        if self._swap_lock.locked():
            raise Problem(409, "busy", "another reload, rollback or shadow change is running; retry when it is done")
        async with self._swap_lock:
            started = time.perf_counter()
            runner = None if name is None else await asyncio.to_thread(open_shadow, name, self)
            previous = self.shadow_with(runner)
            if previous is not None:
                await asyncio.to_thread(previous.stop)
            if runner is not None:
                freeze_heap()  # the challenger's objects join the served model's, out of the collector's reach
            if publish:
                self._publish()
            log.info("shadow: %s (was %s)", name or "none", previous.version if previous else "none")
            return {"shadow": None if runner is None else runner.describe(),
                    "previous": None if previous is None else previous.version,
                    "seconds": round(time.perf_counter() - started, 3)}

    async def follow_selection(self, selection: Path, interval: float = 0.5) -> None:
        """Worker loop: serve what another worker's admin call selected in ``selection``."""
        while True:
            await asyncio.sleep(interval)
            if not self._swap_lock.locked():
                await self.catch_up()

    async def catch_up(self) -> None:
        """Take on what another worker's admin call published, if this worker has not yet.
        Every admin call starts here: a worker that answers one before its loop caught up
        would otherwise publish its stale copy (a rollback of the reload just made, say)."""
        if self.selection is None:
            return
        try:
            chosen = json.loads(self.selection.read_bytes())
            number = int(chosen.get("seq", 0))
        except (OSError, ValueError, TypeError):
            return
        if number <= self._selection_seq:  # numbered, not dated: two writes in one clock tick still differ
            return
        self._selection_seq = number
        if chosen["version"] != self.current.version:
            try:
                await self._switch(lambda: chosen["version"], rollback=False, publish=False)
            except Problem as exc:
                log.error("could not follow the other workers to version %s: %s", chosen["version"], exc)
                return  # the history is theirs, of a version this worker does not serve
        self.history = list(chosen["history"])
        if "broken" in chosen:
            self._set_broken(chosen["broken"])
        await self._follow_shadow(chosen.get("shadow"))

    async def _follow_shadow(self, name: str | None) -> None:
        if name != (self.shadow.version if self.shadow else None):
            try:
                await self.change_shadow(name, publish=False)
            except Problem as exc:
                log.error("could not follow the other workers to shadow %s: %s", name, exc)

    def _check_logged_model(self, model: Served) -> None:
        """A version whose inputs differ from the logged model's would mix two models' records."""
        from modelmill.monitoring import identity_of

        assert self.prediction_log is not None
        current = identity_of(self.current.name, self.predicting.predictor.input_schema())
        if not isinstance(model, ServedModel):  # forecast, recommend: no log kept; load_served checked the task
            return
        differences = current.differences(identity_of(model.name, model.predictor.input_schema()))
        if differences:
            self.metrics.swaps.labels("failed").inc()
            raise Problem(409, "log_mismatch", f"version {model.version!r} is not the model the prediction log "
                          f"holds ({'; '.join(differences)}); it stays unserved. Fix: serve it with another --log")

    def _set_broken(self, broken: dict[str, str]) -> None:
        """The broken versions are now ``broken``: the gauge follows (zero for a fixed one)."""
        for version in self.broken.keys() - broken.keys():
            self.metrics.broken(version, False)
        for version in broken.keys() - self.broken.keys():
            self.metrics.broken(version, True)
        self.broken = dict(broken)

    def _publish(self) -> None:
        if self.selection is not None:
            self._selection_seq += 1
            atomic_write_bytes(self.selection, json.dumps(
                {"seq": self._selection_seq, "version": self.current.version, "history": self.history,
                 "broken": self.broken, "shadow": self.shadow.version if self.shadow else None}).encode())

    async def _switch(self, choose: Any, *, rollback: bool, publish: bool = True) -> dict[str, Any]:
        if self._swap_lock.locked():
            raise Problem(409, "busy", "another reload or rollback is running; retry when it is done")
        async with self._swap_lock:
            started = time.perf_counter()
            # choosing may ask the model registry (an alias resolved, a version fetched): network
            # I/O, which must not hold up the event loop and the requests it is answering
            version = await asyncio.to_thread(choose)
            try:
                model = await asyncio.to_thread(load_served, self.root, version, self.settings,
                                                task=self.current.task)
            except KEY_ERRORS as exc:  # the process's key, not the version, is wrong: not marked broken
                self.metrics.swaps.labels("failed").inc()
                raise Problem(409, "key_mismatch", without_paths(str(exc))) from None
            except Problem as exc:
                self.metrics.swaps.labels("failed").inc()
                if exc.code == "load_failed":  # the others follow the list: every worker answers alike
                    self._set_broken({**self.broken, version: exc.message})
                    if publish:
                        self._publish()
                raise
            if self.prediction_log is not None:
                self._check_logged_model(model)
            previous = self.current
            self.current = model  # one reference assignment: every later request sees the new version
            self._set_broken({v: why for v, why in self.broken.items() if v != version})
            if rollback:  # the history is a stack: a rollback pops, it never pushes
                if self.history and self.history[-1] == version:
                    self.history.pop()
            elif previous.version != version:
                self.history.append(previous.version)
            self.metrics.serving(model.name, model.version)
            self.metrics.swaps.labels("rollback" if rollback else "reload").inc()
            freeze_heap()  # the old version goes with this collection, unless a request still holds it
            if publish:
                self._publish()
            log.info("now serving %s version %s (was %s)", model.name, model.version, previous.version)
            return {"model": model.name, "version": model.version, "previous": previous.version,
                    "seconds": round(time.perf_counter() - started, 3)}
