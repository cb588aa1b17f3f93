"""``modelmill watch``: the triggers checked in a loop, a retraining run when one fires.

Retrainings run one at a time on a worker thread; the loop keeps checking meanwhile, and a
trigger that fires while a retraining runs waits for it to end. Then what waited is checked
again: new labels and the schedule count from the decision just made (labels that came
while the retraining waited for the folder's lock were in it), and an alarm against a
champion just replaced is moot (the new champion's alarms are its own); what still holds is
answered by one retraining. A challenger in shadow is judged at every check until it
is promoted or refused. A retraining another process runs on the same folder (``retrain``
from cron) is waited for as well: both take the folder's lock. With
``monitoring.retrain.registry`` the champion is the version a registered model's alias names
(the lock: a file in that model's local cache folder, one retraining per machine).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

from modelmill.config import load_config
from modelmill.config.monitoring import window_seconds
from sqlalchemy.exc import SQLAlchemyError

from modelmill.errors import ConfigError, ModelmillError
from modelmill.monitoring.export import open_log
from modelmill.monitoring.store import database_message
from modelmill.monitoring.watch import Reference
from modelmill.retraining.promote import Service, VersionFolder
from modelmill.retraining.registry_versions import RegistryVersions, open_versions
from modelmill.retraining.retrain import Decision, pending_shadow, retrain
from modelmill.retraining.triggers import Firing, Triggers

log = logging.getLogger("modelmill.retrain")


class Watcher:
    def __init__(self, config_path: Path, *, log_url: str, versions: Path | None = None, serve: str | None = None,
                 runs: Path = Path("runs"), shadow_first: bool = False, check_every: str | None = None,
                 say: Callable[[str], None] = log.info) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.log_url, self.serve, self.runs, self.shadow_first, self.say = log_url, serve, runs, shadow_first, say
        self.folder = open_versions(self.config, versions, shadow_first=shadow_first)  # or a registered model
        settings = self.config.monitoring.retrain.triggers
        every = check_every or settings.check_every
        seconds = window_seconds(every) if not every.strip().isdigit() else None
        if seconds is None:
            raise ConfigError(f"{every!r} is not a duration (30s, 5m, 1h)", path="--check-every")
        self.interval = seconds
        self.triggers = Triggers(settings)
        self.waiting: list[Firing] = []
        self.decisions: list[Decision] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_problem: str | None = None
        self._last_wait: str | None = None  # a shadow's "still waiting" is said once, until it changes
        if serve:  # a wrong URL or a missing token fails now, not at the first trigger
            self._service()
        open_log(log_url).close()

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def run(self, checks: int | None = None) -> None:
        """Check every interval; ``checks``: stop after that many (and after the retraining
        they started)."""
        self.say(f"watching {self.log_url} every {self.interval:g} s for "
                 f"{self.folder if isinstance(self.folder, RegistryVersions) else self.folder.path}")
        done = 0
        while checks is None or done < checks:
            self.check()
            done += 1
            if checks is not None and done >= checks:
                break
            if self._stop.wait(self.interval):
                break
        self.finish()

    def stop(self) -> None:
        self._stop.set()

    def finish(self) -> None:
        """Wait for the retraining that runs, then run what waits for it (and still holds)."""
        while self.busy or self.waiting:
            self.wait_current()
            self._start_waiting()

    def wait_current(self) -> None:
        """Wait for the retraining that runs (Ctrl-C must not cut a promotion in half)."""
        if self._worker is not None:
            self._worker.join()

    def check(self) -> list[Firing]:
        """One round: judge a challenger in shadow, evaluate the triggers, start a retraining."""
        store = open_log(self.log_url)
        try:
            pending = pending_shadow(store)
            decisions = store.decisions(latest=1)
            last = float(decisions[-1]["decided_at"]) if decisions else None
            fired = self.triggers.check(store, self._reference(), last_decision=last)
        except ModelmillError as exc:
            self._problem(str(exc))
            return []
        except SQLAlchemyError as exc:  # the database went away: said once, checked again next time
            self._problem(f"the prediction log cannot be read: {database_message(exc)}")
            return []
        finally:
            store.close()
        for firing in fired:
            self.say(f"trigger {firing.trigger}: {firing.detail}" + (" (waits for the retraining that runs)"
                                                                   if self.busy else ""))
        self.waiting += [replace(f, during=True) for f in fired] if self.busy else fired
        if pending is not None and not self.waiting and not self.busy:
            self.waiting.append(Firing("shadow", f"version {pending['challenger']} in shadow"))
        self._start_waiting()
        return fired

    def _start_waiting(self) -> None:
        if self.busy:
            return
        self._worker = None
        if any(f.during for f in self.waiting):  # a retraining ended since these fired
            self.waiting = [f for f in self.waiting if not f.during] + self._still_holding(
                [f for f in self.waiting if f.during])
        if not self.waiting:
            return
        trigger = "+".join(dict.fromkeys(f.trigger for f in self.waiting))
        self.waiting = []
        self._worker = threading.Thread(target=self._retrain, args=(trigger,), name="modelmill-retrain", daemon=True)
        self._worker.start()

    def _still_holding(self, waiting: list[Firing]) -> list[Firing]:
        store = open_log(self.log_url)
        try:
            decisions = store.decisions(latest=1)
            last = decisions[-1] if decisions else None
            held = []
            for firing in waiting:
                replaced = last is not None and last["outcome"] == "promoted" and float(last["decided_at"]) > firing.at
                if firing.trigger in ("drift", "decay") and replaced:
                    holds = False  # judged against a champion replaced since
                elif firing.trigger in ("labels", "schedule") and last is not None:
                    since = float(last["decided_at"])
                    holds = firing.trigger in {f.trigger for f in self.triggers.counted(store, since)}
                else:
                    holds = True
                if holds:
                    held.append(firing)
                else:
                    self.say(f"trigger {firing.trigger} waited, and no longer holds after the retraining that ran")
            return held
        except (ModelmillError, SQLAlchemyError):
            return waiting  # the next retraining will say what is wrong
        finally:
            store.close()

    def _retrain(self, trigger: str) -> None:
        try:
            versions = self.folder.path if isinstance(self.folder, VersionFolder) else None  # else the config's
            decision = retrain(self.config_path, log_url=self.log_url, versions=versions, serve=self.serve,
                               runs=self.runs, trigger=trigger, shadow_first=self.shadow_first, say=self.say)
        except ModelmillError as exc:
            self._problem(f"retraining ({trigger}) stopped: {exc}")
            return
        except Exception:  # the loop outlives a fault of one retraining; the trace goes to the log
            log.exception("retraining (%s) failed", trigger)
            return
        self.decisions.append(decision)
        self._last_problem = None
        if decision.outcome != "waiting" or decision.reason != self._last_wait:
            self.say(f"{decision.outcome}{' version ' + decision.challenger if decision.challenger else ''}: "
                     f"{decision.reason}")
        self._last_wait = decision.reason if decision.outcome == "waiting" else None

    def _reference(self) -> Reference:
        """The champion: the served version, else the newest version that loads (a registered
        model: the version its alias names, fetched into the cache, itself a folder of versions)."""
        service = self._service() if self.serve else None
        if isinstance(self.folder, RegistryVersions):
            version = service.version if service else self.folder.aliased()
            self.folder.fetch(version)
            return Reference.load(self.folder.path, version)
        return Reference.load(self.folder.path, service.version if service else None)  # None: the newest that loads

    def _service(self) -> Service:
        assert self.serve is not None
        token_env = self.config.serving.admin_token_env
        if isinstance(self.folder, RegistryVersions):
            return self.folder.connect(self.serve, token_env)
        return Service.connect(self.serve, token_env, self.folder)

    def _problem(self, message: str) -> None:
        """A problem is said once, until it changes (the database down for an hour is one line)."""
        if message != self._last_problem:
            self.say(f"warning: {message}")
        self._last_problem = message
