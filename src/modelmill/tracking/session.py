"""A command's tracked run: its settings checked before any work, and the run closed with the
command (FINISHED, FAILED or KILLED)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill.errors import ConfigError
from modelmill.tracking.client import import_mlflow, tracking_uri
from modelmill.tracking.run import TrackedRun

if TYPE_CHECKING:
    from modelmill.config import TaskConfig


def check_tracking(config: TaskConfig, *, encrypted: bool = False) -> None:
    """Fail now, before any work or folder, on tracking settings that cannot be right.

    Raises:
        ConfigError: MLFLOW_TRACKING_URI of a scheme MLflow cannot track to; tracking.uri set and
            MLflow not installed; an encrypted run with tracking on (MLflow would hold its config,
            metrics and report in clear).
    """
    if config.tracking.uri and config.tracking.enabled and importlib.util.find_spec("mlflow") is None:
        import_mlflow()  # the install hint, before any folder is made
    if tracking_uri(config.tracking) is not None and encrypted:
        raise ConfigError("an encrypted run cannot be tracked: MLflow would hold its config, metrics and report "
                          "in clear. Fix: set tracking.enabled: false in the config (or unset MLFLOW_TRACKING_URI) "
                          "for encrypted runs", path="tracking")


@contextmanager
def tracking(config: TaskConfig, *, action: str, base_dir: Path | None = None, run_dir: Path | None = None,
             run_name: str | None = None, encrypted: bool = False, params: Mapping[str, Any] | None = None,
             uri: str | None = None) -> Iterator[TrackedRun | None]:
    """The tracked run of a command (None when tracking is off), closed as FINISHED, FAILED (an
    error) or KILLED (Ctrl-C) with the command.

    Raises:
        ConfigError: an encrypted run with tracking on: MLflow would hold its config, metrics and
            report in clear.
    """
    check_tracking(config, encrypted=encrypted)
    run = TrackedRun.start(config, action=action, run_name=run_name, base_dir=base_dir, run_dir=run_dir,
                           params=params, uri=uri)
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
