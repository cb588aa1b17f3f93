"""Tracking for the commands that derive a bundle from another (compress, export, recommend
refresh): where the new bundle is logged, and the MLflow run that logs it with its parent's links."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console()

TrackingUriOption = Annotated[str | None, typer.Option(
    "--tracking-uri", help="The MLflow tracking server to log the new bundle to as a run (default: "
    "MLFLOW_TRACKING_URI; never the bundle's own tracking.uri).")]


def derived_tracking(given: str | None) -> str | None:
    """Where a command that derives a bundle logs it (``given``: --tracking-uri, else
    MLFLOW_TRACKING_URI; never the parent bundle's own tracking.uri, which would let whoever
    made the bundle choose the host that gets the user's MLflow credentials); None: untracked.
    Asked before the work, so that a wrong URI fails before any is done.

    Raises:
        ConfigError: the URI has a scheme MLflow cannot track to; --tracking-uri given and
            MLflow not installed (the user asked for tracking: the command must not run without).
    """
    import importlib.util

    from modelmill.tracking.client import bundle_tracking_uri, import_mlflow

    uri = bundle_tracking_uri(given=given)
    if uri is not None and given is not None and importlib.util.find_spec("mlflow") is None:
        import_mlflow()  # the ConfigError with the install hint
    return uri


def log_derived(path: Path, *, action: str, run_name: str, params: Mapping[str, Any],
                given: str | None = None) -> None:
    """Log the derived bundle at ``path`` as an MLflow run of ``action`` (compress, export,
    refresh): its metrics, its tags (its hashes, its parent's, and the parent's run, which is
    how MLflow shows the lineage's links), ``params`` with what its lineage records, and its
    files. The bundle is written already: nothing here fails the command, and an encrypted
    bundle is not tracked (MLflow would hold its metrics and report in clear)."""
    warn = logging.getLogger("modelmill").warning
    try:
        from modelmill.bundle import read_bundle
        from modelmill.bundle.layout import MANIFEST
        from modelmill.encryption import is_sealed
        from modelmill.tracking.client import bundle_tracking_uri, redact
        from modelmill.tracking.session import tracking

        folder = path / "bundle" if not (path / MANIFEST).is_file() else path
        if is_sealed((folder / MANIFEST).read_bytes()):
            warn(f"tracking: the bundle is encrypted, so this {action} is not tracked (MLflow would hold its metrics "
                 "and report in clear). Fix: unset MLFLOW_TRACKING_URI (or leave out --tracking-uri) to silence this "
                 "warning")
            return
        derived = read_bundle(folder)
        config = derived.task_config()
        uri = bundle_tracking_uri(config.tracking, given=given)  # the bundle's tracking.enabled: false is honoured
        if uri is None:
            return
        # the bundle's own tracking.uri is not where this goes (nor what would make a missing MLflow an error)
        tracked_config = config.model_copy(update={"tracking": config.tracking.model_copy(update={"uri": None})})
        logged = {"parent_sha256": derived.lineage.parent, "bundle": str(derived.path),
                  **{k: v for k, v in params.items() if v is not None}, **_settings(derived.lineage.details)}
        with tracking(tracked_config, action=action, run_name=redact(run_name), params=_redacted(logged),
                      uri=uri) as tracked:
            if tracked is None or tracked.run_id is None:  # waits for the run: MLflow imported by one thread
                return
            tracked.log_bundle(derived, whole=config.tracking.log_bundle)
            tracked.log_metrics(_figures(derived.lineage.details))
    except Exception as exc:  # the bundle is written: its tracking is a nicety
        from modelmill.tracking.client import failure

        warn(f"tracking: the {action} was not logged to MLflow ({failure(exc)}); the bundle is written")
        return
    if tracked.url and tracked.down is None:
        out.print(f"mlflow run: {tracked.url}", soft_wrap=True)


# what a lineage's details hold that is a setting of the action (params) …
_SETTINGS = ("method", "int8_mode", "sparsity", "structured", "finetune_epochs", "format", "opset")


def _settings(details: Mapping[str, Any]) -> dict[str, Any]:
    found = {k: details[k] for k in _SETTINGS if details.get(k) is not None}
    gate = details.get("gate")
    if isinstance(gate, Mapping):
        found.update({f"gate.{k}": gate[k] for k in ("metric", "max_drop", "rows") if gate.get(k) is not None})
    return found


def _figures(details: Mapping[str, Any]) -> dict[str, Any]:
    """… and what is a figure of it (metrics): the gate's drop, the model before and after, the
    export's check, a refresh's counts."""
    found: dict[str, Any] = {}
    for side in ("before", "after"):
        figures = details.get(side)
        if isinstance(figures, Mapping):
            found.update({f"{side}.{k}": v for k, v in figures.items()})
    for group in ("gate", "check"):
        figures = details.get(group)
        if isinstance(figures, Mapping):
            found.update({f"{group}.{k}": v for k, v in figures.items() if k not in ("max_drop", "rows")})
    found.update({k: v for k, v in details.items() if k in ("interactions", "known_already", "users_added",
                                                              "interactions_added", "items_dropped")})
    return found  # numbers only are logged (log_metrics leaves the rest out)


def _redacted(params: Mapping[str, Any]) -> dict[str, Any]:
    from modelmill.tracking.client import redact

    return {k: redact(v) if isinstance(v, str) else v for k, v in params.items()}
