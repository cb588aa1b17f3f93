"""``retrain --shadow-first``: a challenger that passed the offline comparison runs in
shadow beside the champion (the service logs its predictions, answers with the
champion's); once enough of the records it predicted have labels, its live gain over the
champion on exactly those records is compared with the offline one. It is promoted only
when the two agree: the live interval overlaps the offline one and does not show the
challenger worse by more than the tolerance."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelmill.config import PipelineConfig
from modelmill.errors import ServingError
from modelmill.evaluation.metrics import check_metric
from modelmill.monitoring.store import LogStore
from modelmill.predictor.output import logged_predictions
from modelmill.retraining.challenge import compare, worse_beyond
from modelmill.retraining.promote import Service, VersionFolder
from modelmill.serving.versions import SHADOW_FOLDER

if TYPE_CHECKING:
    from modelmill.retraining.retrain import Decision, Say


def judge_shadow(store: LogStore, folder: VersionFolder, pending: dict[str, Any], config: PipelineConfig,
                 serve: str | None, *, say: Say) -> Decision:
    """Judge the challenger in shadow, or say how far it is from being judged."""
    from modelmill.retraining.retrain import Decision, find_champion, reload

    version = str(pending["challenger"])
    if serve is None:
        raise ServingError(f"version {version} runs in shadow (decision {pending['id']}): judging it on live records "
                           "needs the service. Fix: add --serve URL")
    service = Service.connect(serve, config.serving.admin_token_env, folder)
    champion = find_champion(folder, service)
    settings = config.monitoring.retrain
    if not (folder.path / SHADOW_FOLDER / version).is_dir():  # settled, or it would block every retraining
        _stop_shadow(service, version)
        if champion.version == version:  # promoted, and the audit record did not make it then
            return Decision("promoted", f"version {version}, promoted from shadow, is served; its decision was not "
                            "recorded at the time", "shadow", str(pending["champion"]), version).record(store)
        return Decision("failed", f"version {version} was in shadow but its folder {SHADOW_FOLDER}/{version} is gone",
                        "shadow", champion.version, version).record(store)
    shadowing = (service.served.get("shadow") or {}).get("version")  # as the service answered on connecting
    if shadowing != version:  # the service restarted, say: shadowing is not kept across restarts
        service.shadow(version)
        say(f"the service was not running version {version} in shadow; it does again")
    target = champion.predictor.target
    rows = [row for row in store.read_shadow(version) if str(row["version"]) == str(pending["champion"])]
    labelled = [row for row in rows if row["label"] is not None]
    labels = pd.Series([json.loads(row["label"]) for row in labelled], dtype=object)
    known = np.flatnonzero(target.labelled(labels)) if len(labels) else np.zeros(0, dtype=np.int64)
    truth = np.asarray(target.codes(labels)) if len(labels) else np.zeros(0)
    if known.size < settings.shadow_records:
        return Decision("waiting", f"version {version} in shadow: {len(rows)} records predicted, {known.size} of them "
                        f"labelled; judging it needs {settings.shadow_records} labelled "
                        "(monitoring.retrain.shadow_records)", "shadow", champion.version, version,
                        {"shadow_records": len(rows), "labelled": int(known.size)})
    classes = list(target.class_names or [])
    champion_out = logged_predictions(_outputs(labelled, "outputs"), target.name, target.task, classes)
    challenger_out = logged_predictions(_outputs(labelled, "shadow_outputs"), target.name, target.task, classes)
    metric = check_metric(target.task, config.monitoring.decay.metric, "monitoring.decay.metric")
    live = compare(target.task, metric, truth[known], champion_out.rows(known),
                   challenger_out.rows(known), confidence=settings.confidence, resamples=settings.bootstrap)
    offline = dict(pending["figures"].get("recent") or {})
    agreement = float(np.mean(np.asarray(champion_out.labels) == np.asarray(challenger_out.labels)))
    figures = {"offline": offline, "live": live.as_json(), "shadow_records": len(rows),
               "same_prediction": round(agreement, 4), "tolerance": settings.tolerance,
               "latency_ms_p50": {"champion": _median(rows, "latency_ms"),
                                  "challenger": _median(rows, "shadow_latency_ms")}}
    overlap = live.low is not None and offline.get("low") is not None and \
        live.low <= float(offline["high"]) and live.high is not None and live.high >= float(offline["low"])
    worse = worse_beyond(metric, live, settings.tolerance)  # the live gain itself below -tolerance
    shown = f"live {metric} gain {live.gain:+.4f} ({_interval(live.low, live.high)}) on {live.rows} labelled " \
            f"shadow records; offline {float(offline.get('gain', 0.0)):+.4f} " \
            f"({_interval(offline.get('low'), offline.get('high'))})"
    decision = Decision("refused", "", "shadow", champion.version, version, figures, pending.get("lineage") or {})
    if not overlap or worse:
        decision.reason = f"the live records disagree with the offline evaluation: {shown}"
        decision.reason += _stop_shadow(service, version)
        folder.remove(version, shadow=True)  # its bundle stays in its run folder
        return decision.record(store)
    folder.promote_shadow(version)
    loaded = reload(service, version)
    if isinstance(loaded, str):
        folder.remove(version)
        decision.outcome, decision.reason = "failed", f"agreed in shadow ({shown}) but the service did not load it: {loaded}"
        decision.reason += _stop_shadow(service, version)
        return decision.record(store)
    figures["reload_seconds"] = loaded.get("seconds")
    decision.outcome, decision.reason = "promoted", f"the live records agree with the offline evaluation: {shown}"
    decision.reason += _stop_shadow(service, version)
    return decision.record(store)


def _stop_shadow(service: Service, version: str) -> str:
    """Stop the service shadowing; what went wrong, to add to the decision's reason."""
    try:
        service.shadow(None)
    except ServingError as exc:
        return f" (stopping the shadow of version {version} failed: {exc}; DELETE /v1/admin/shadow stops it)"
    return ""


def _outputs(rows: list[dict[str, Any]], key: str) -> pd.DataFrame:
    return pd.DataFrame.from_records([json.loads(row[key]) for row in rows])


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [float(row[key]) for row in rows if row.get(key) is not None]
    return round(float(np.median(values)), 3) if values else None


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "no interval"
    return f"interval {float(low):+.4f} to {float(high):+.4f}"
