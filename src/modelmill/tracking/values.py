"""What a tracked run sends, put in MLflow's terms: a config as flat params, a folder as artefact
paths, the experiment by name, the git commit of the config's repository."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelmill.errors import TrackingError
from modelmill.tracking import tags
from modelmill.tracking.client import redact

MAX_PARAM_VALUE = 6000  # MLflow 3's longest param value


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"training.optimizer.lr": "0.001", …}``; a list of named sections (the
    features) by name (``features.age.type``), any other list as JSON."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) and "name" in v for v in value):
            for item in value:
                flat.update(flatten({k: v for k, v in item.items() if k != "name"}, f"{path}.{item['name']}."))
        else:
            flat[path] = param_value(value)
    return flat


def files_under(folder: Path, artifact_path: str | None) -> list[tuple[Path, str | None]]:
    """Each file under ``folder`` with its folder among the artefacts (``artifact_path`` for the top)."""
    if not folder.is_dir():
        return []
    found: list[tuple[Path, str | None]] = []
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            inner = file.parent.relative_to(folder).as_posix()
            where = "/".join(part for part in (artifact_path, "" if inner == "." else inner) if part)
            found.append((file, where or None))
    return found


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return redact(text)[:MAX_PARAM_VALUE]


def key(name: str) -> str:
    """A metric or param name as MLflow takes it (letters, digits and ``_ - . : /`` and spaces):
    ``recall@10`` becomes ``recall_at_10``; any other character becomes ``_``."""
    return _REFUSED_IN_KEYS.sub("_", str(name).replace("@", "_at_"))[:250]


_REFUSED_IN_KEYS = re.compile(r"[^\w\-. :/]")


def experiment_named(client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing (two processes may race to create it).

    Raises:
        TrackingError: the experiment was deleted in MLflow (its name stays taken until it is
            restored or purged).
    """
    found = client.get_experiment_by_name(name)
    if found is not None and getattr(found, "lifecycle_stage", "active") == "deleted":
        raise TrackingError(f"the MLflow experiment {name!r} is deleted. Fix: restore it (mlflow experiments "
                            "restore), or set tracking.experiment to another name")
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:
        found = client.get_experiment_by_name(name)  # another process created it first
        if found is None:
            raise
        return str(found.experiment_id)


def git_commit(base_dir: Path | None) -> dict[str, str]:
    """The commit of the git repository holding the config, when there is one (MLflow shows it)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=base_dir or Path.cwd(), capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    commit = done.stdout.strip()
    return {tags.GIT_COMMIT: commit} if done.returncode == 0 and len(commit) == 40 else {}
