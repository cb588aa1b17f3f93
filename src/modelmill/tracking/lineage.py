"""A bundle's chain of parents, and the tags that show the same links in MLflow.

:func:`chain` reads the chain from the bundle alone (every derived bundle carries its
ancestors, so the chain is known where the ancestors are gone); :func:`mlflow_links` finds,
for each link, the run that logged it and the registered versions that hold it. ``modelmill
lineage`` prints the two side by side; nothing here imports MLflow (the caller's client does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modelmill.bundle.layout import MAIN_MODEL
from modelmill.errors import ModelmillError, TrackingError
from modelmill.tracking import tags
from modelmill.tracking.client import failure, redact

if TYPE_CHECKING:
    from modelmill.bundle import Bundle


def data_source(bundle: Bundle) -> str:
    """Where the bundle's training data came from, without credentials ('' when not known)."""
    try:
        source = bundle.task_config().data.source
    except Exception:  # an old or foreign config: the lineage still prints
        return ""
    return redact(str(source))[:500]


def bundle_tags(bundle: Bundle) -> dict[str, str]:
    """The tags a run that logged ``bundle`` (or a model version holding it) carries: its hashes,
    where its data came from, how it was made and from which parent."""
    manifest, lineage = bundle.manifest, bundle.lineage
    found = {
        tags.BUNDLE_SHA256: bundle.digest,
        tags.CONFIG_NAME: bundle.name,
        tags.TASK: bundle.task,
        tags.MODEL_TYPE: bundle.models[MAIN_MODEL].type if MAIN_MODEL in bundle.models else "",
        tags.CONFIG_SHA256: str(manifest.get("config_sha256", "")),
        tags.DATA_SHA256: str(manifest.get("data_sha256", "")),
        tags.DATA_SOURCE: data_source(bundle),
        tags.LINEAGE_ACTION: lineage.action,
        tags.PARENT_SHA256: lineage.parent or "",
    }
    return {name: value for name, value in found.items() if value}


def run_of_bundle(client: Any, digest: str) -> Any | None:
    """The newest MLflow run that logged the bundle whose manifest hashes to ``digest``, or None
    (always None for a text that is not a sha256: it never goes into a filter string)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return None
    return _newest_run(client, [e.experiment_id for e in client.search_experiments()], digest)


def _newest_run(client: Any, experiments: list[str], digest: str) -> Any | None:
    if not experiments or not _DIGEST.fullmatch(digest):
        return None
    runs = client.search_runs(experiments, filter_string=f"tags.`{tags.BUNDLE_SHA256}` = '{digest}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


MAX_VERSIONS = 100  # registered versions listed per bundle: a bound on one search, not a real model's count
_DIGEST = re.compile(r"[0-9a-f]{64}")  # what goes into a filter string: a manifest's sha256 and nothing else


def chain(bundle: Bundle) -> list[dict[str, Any]]:
    """The bundle's chain, oldest first: each ancestor its lineage records (``sha256``,
    ``action``, ``name``, ``created_at``), then the bundle itself (``current``: True) with
    where its data came from, its data and config hashes, the modelmill version that wrote it,
    and what its action recorded (``details``, and ``summary``: those as short lines)."""
    lineage, manifest = bundle.lineage, bundle.manifest
    entries: list[dict[str, Any]] = [
        {"sha256": str(a.get("sha256") or ""), "action": str(a.get("action") or "trained"),
         "name": str(a.get("name") or ""), "created_at": a.get("created_at"), "current": False}
        for a in lineage.ancestors if isinstance(a, Mapping)]
    try:
        task: str | None = bundle.task
    except ModelmillError:  # a config this modelmill cannot read: the chain still prints
        task = None
    entries.append({
        "sha256": bundle.digest, "action": lineage.action, "name": bundle.name,
        "created_at": manifest.get("created_at"), "current": True, "path": str(bundle.path), "task": task,
        "parent": lineage.parent, "data_source": data_source(bundle),
        "data_sha256": manifest.get("data_sha256"), "config_sha256": manifest.get("config_sha256"),
        "modelmill_version": manifest.get("modelmill_version"),
        "summary": describe(lineage.action, lineage.details), "details": _redacted(lineage.details)})
    return entries


def describe(action: str, details: Mapping[str, Any]) -> list[str]:
    """What a lineage's ``details`` say, as a few short lines (the settings and figures a
    reader compares; the full record stays in the bundle's manifest)."""
    lines = _DESCRIBERS.get(action, _files_changed)(details)
    return [line for line in lines if line]


def _compressed(d: Mapping[str, Any]) -> list[str]:
    settings = ", ".join(f"{k} {d[k]}" for k in ("int8_mode", "sparsity", "structured", "finetune_epochs")
                         if d.get(k) is not None)
    gate, before, after = _map(d, "gate"), _map(d, "before"), _map(d, "after")
    lines = [f"method {d.get('method', '?')}" + (f" ({settings})" if settings else "")]
    if "value" in before and "value" in after:
        lines.append(f"{gate.get('metric', 'metric')} {_num(before['value'])} → {_num(after['value'])} "
                     f"(drop {_num(gate.get('drop'))}, at most {_num(gate.get('max_drop'))}) on {gate.get('rows', '?')}")
    if "size_bytes" in before and "size_bytes" in after:
        lines.append(f"model {_bytes(before['size_bytes'])} → {_bytes(after['size_bytes'])}")
    return lines


def _exported(d: Mapping[str, Any]) -> list[str]:
    check = _map(d, "check")
    lines = [f"{d.get('format', '?')} graph" + (f", opset {d['opset']}" if "opset" in d else "")]
    if "max_abs_diff" in check:
        lines.append(f"checked on {check.get('rows', '?')} rows of {d.get('rows', '?')}: largest difference "
                     f"{_num(check['max_abs_diff'])}")
    return lines


def _retrained(d: Mapping[str, Any]) -> list[str]:
    rows, recent = _map(d, "rows"), _map(d, "recent")
    lines = [f"trigger {d.get('trigger', '?')}, from champion version {d.get('champion_version', '?')}"]
    if rows:
        lines.append(f"{rows.get('logged_learned', '?')} logged rows learned, {rows.get('held_back', '?')} held back")
    if "champion" in recent:
        lines.append(f"recent {recent.get('metric', '')}: champion {_num(recent['champion'])}, challenger "
                     f"{_num(recent.get('challenger'))} on {recent.get('rows', '?')} rows")
    if d.get("log"):
        lines.append(f"prediction log {d['log']}")
    return lines


def _refreshed(d: Mapping[str, Any]) -> list[str]:
    lines = [f"{d.get('interactions_added', '?')} interactions added ({d.get('known_already', 0)} known already), "
             f"{d.get('users_added', 0)} new users"]
    if d.get("data_sha256"):
        lines.append(f"new data sha256 {d['data_sha256']}")
    return lines


def _files_changed(d: Mapping[str, Any]) -> list[str]:
    """An action this version does not know: the files and models it changed."""
    changes = ("added", "replaced", "removed", "models_added", "models_replaced", "models_removed")
    return [f"{k.replace('_', ' ')}: {', '.join(map(str, d[k]))}" for k in changes if d.get(k)]


_DESCRIBERS = {"compressed": _compressed, "exported": _exported, "retrained": _retrained,
               "refreshed": _refreshed}


def _map(details: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = details.get(key)
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _bytes(value: Any) -> str:
    return f"{value:,} bytes" if isinstance(value, int) else str(value)


def _redacted(value: Any) -> Any:
    """``value`` with every string redacted (a retraining's log URL, a refresh's warnings)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def mlflow_links(client: Any, digests: Iterable[str]) -> dict[str, dict[str, Any]]:
    """For each bundle digest: ``run``, the newest MLflow run tagged with it (``run_id``,
    ``experiment_id``, ``experiment``, ``run_name``, ``parent_run_id``: the run that logged the
    bundle's parent, where the run's tags name one), or None; and ``versions``, the registered
    model versions whose tags hold it (``name``, ``version``, ``aliases``, ``run_id``; at most
    MAX_VERSIONS, found by the server's own tag filter). A text that is not a sha256 gets no
    links (it never goes into a filter string).

    Raises:
        TrackingError: the server did not answer or refused a search (the reason, redacted).
    """
    try:
        return _links(client, digests)
    except ModelmillError:
        raise
    except Exception as exc:  # MLflow's own errors, and a connection's
        raise TrackingError(f"MLflow could not be asked for the bundles' runs and versions: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """Why a call failed; a server that is not there in a few words, not urllib3's paragraph."""
    text = failure(exc)
    if "Max retries exceeded" in text or "Failed to establish" in text or "timed out" in text.lower():
        return "the server did not answer (nothing listening there, or it timed out)"
    return text


def _links(client: Any, digests: Iterable[str]) -> dict[str, dict[str, Any]]:
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    aliases: dict[str, dict[str, list[str]]] = {}  # model name → version → its aliases
    links: dict[str, dict[str, Any]] = {}
    for digest in dict.fromkeys(digests):
        if not _DIGEST.fullmatch(digest):
            links[digest] = {"run": None, "versions": []}
            continue
        run = _newest_run(client, list(experiments), digest)
        found = client.search_model_versions(filter_string=f"tags.`{tags.BUNDLE_SHA256}` = '{digest}'",
                                             max_results=MAX_VERSIONS)
        versions = []
        for version in found:
            if version.name not in aliases:  # a search leaves a version's aliases out: its model has them
                aliases[version.name] = {}
                for alias, number in (client.get_registered_model(version.name).aliases or {}).items():
                    aliases[version.name].setdefault(str(number), []).append(alias)
            versions.append({"name": version.name, "version": str(version.version), "run_id": version.run_id,
                             "aliases": sorted(aliases[version.name].get(str(version.version), []))})
        versions.sort(key=lambda v: (v["name"], int(v["version"]) if v["version"].isdigit() else 0))
        links[digest] = {"run": _run_link(run, experiments) if run is not None else None, "versions": versions}
    return links


def _run_link(run: Any, experiments: Mapping[str, str]) -> dict[str, Any]:
    run_tags = run.data.tags
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "experiment": experiments.get(run.info.experiment_id, ""), "run_name": run.info.run_name,
            "parent_run_id": run_tags.get(tags.PARENT_RUN_ID) or None}
