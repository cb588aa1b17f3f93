"""The retraining triggers of ``monitoring.retrain.triggers``: a drift alarm, decay, new
labels, a schedule. Alarms are judged on the latest window of the log, by the same
:class:`~modelmill.monitoring.watch.Monitor` as ``modelmill monitor``, and fire on their
rising edge: a drift that lasts for ten windows fires once, and again only after every
drift alarm cleared and one came back (a drift keeps a few columns near their thresholds,
which flicker from window to window: an edge per column would fire again and again)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from modelmill.config.monitoring import TriggerConfig, window_seconds
from modelmill.monitoring.export import log_frame
from modelmill.monitoring.store import LogStore
from modelmill.monitoring.summary import Window
from modelmill.monitoring.watch import Monitor, Reference

DRIFT_KINDS = {"drift", "prediction"}  # data-quality alarms (missing values …) are a broken feed, not a reason to retrain
DECAY_KINDS = {"decay", "estimated_decay"}


@dataclass(frozen=True)
class Firing:
    trigger: str  # drift, decay, labels, schedule
    detail: str
    at: float = field(default_factory=time.time)
    during: bool = False  # fired while a retraining ran: checked again when it ends


class Triggers:
    """Evaluates the triggers; remembers which alarms were on at the previous check."""

    def __init__(self, settings: TriggerConfig) -> None:
        self.settings = settings
        self.active: set[tuple[str, str]] = set()  # (version, drift or decay): the alarms on at the last check

    def check(self, store: LogStore, reference: Reference, *, last_decision: float | None,
              now: float | None = None) -> list[Firing]:
        """What fires now. ``last_decision``: when the latest retraining was decided (the
        labels and the schedule count from then; from the champion's creation before any)."""
        fired = []
        if self.settings.drift or self.settings.decay is not False:
            fired += self._alarms(store, reference)
        return fired + self.counted(store, last_decision if last_decision is not None else _created(reference), now)

    def counted(self, store: LogStore, since: float | None, now: float | None = None) -> list[Firing]:
        """The triggers that count from ``since`` (the last decision): new labels, the schedule."""
        now = time.time() if now is None else now
        since = now if since is None else since
        fired = []
        if self.settings.new_labels is not None:
            arrived = store.labels_since(since)
            if arrived >= self.settings.new_labels:
                fired.append(Firing("labels", f"{arrived} labels arrived since the last decision "
                                    f"(monitoring.retrain.triggers.new_labels {self.settings.new_labels})"))
        if self.settings.every is not None:
            period = window_seconds(self.settings.every)
            assert period is not None
            if now - since >= period:
                fired.append(Firing("schedule", f"{self.settings.every} since the last decision"))
        return fired

    def _alarms(self, store: LogStore, reference: Reference) -> list[Firing]:
        monitor = Monitor(reference)
        seconds = window_seconds(monitor.window)
        frame = log_frame(store, latest=int(monitor.window)) if seconds is None else \
            log_frame(store, since=time.time() - seconds)
        if len(frame) < monitor.settings.min_rows:  # too few rows to judge: the alarms stay as they were
            return []
        window = monitor.judge(0, frame)
        now_on: dict[tuple[str, str], list[str]] = {}
        for alarm in window.alarms:
            if (self.settings.drift and alarm.kind in DRIFT_KINDS) or \
                    (self.settings.decay is True and alarm.kind in DECAY_KINDS):
                kind = "drift" if alarm.kind in DRIFT_KINDS else "decay"
                now_on.setdefault((reference.version, kind), []).append(
                    f"{alarm.column}: {alarm.message}" if alarm.column else alarm.message)
        threshold = self._below_threshold(monitor, window)
        if threshold:
            now_on.setdefault((reference.version, "decay"), []).append(threshold)
        fired = [Firing(key[1], "; ".join(messages)) for key, messages in now_on.items() if key not in self.active]
        self.active = set(now_on)
        return fired

    def _below_threshold(self, monitor: Monitor, window: Window) -> str | None:
        """With ``decay: <number>``: the latest window's metric (realised, else estimated)
        worse than that number."""
        limit = self.settings.decay
        if isinstance(limit, bool):
            return None
        performance = window.performance
        value = performance.realised.value if performance.realised else performance.estimated
        if value is None:
            return None
        worse = value < limit if monitor.direction == "max" else value > limit
        source = "realised" if performance.realised else "estimated"
        return f"{source} {monitor.metric} {value:.4f} is worse than {limit}" if worse else None


def _created(reference: Reference) -> float:
    stamp = reference.manifest.get("created_at")
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return time.time()
