"""The task seam, above the config: ``task:`` picks the pipeline that fits a config and loads
its bundles, and so its evaluation, its prediction output and (in ``modelmill.serving``) its
endpoint. A new task is one registration here and one in ``modelmill.config.io``.

    pipeline = pipeline_for(load_task_config("demand.yaml"))   # Pipeline, ForecastPipeline …
    pipeline.fit().save("bundle/")
    load_task("bundle/").predict("recent.csv")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import pandas as pd

from modelmill.bundle import Bundle, read_bundle
from modelmill.config import TaskConfig
from modelmill.encryption import Key, as_key
from modelmill.registry import Registry

__all__ = ["TASKS", "TaskKind", "TaskPipeline", "load_task", "pipeline_for", "task_from_bundle"]


class TaskPipeline(Protocol):
    """What every task's pipeline offers the CLI and the Python API."""

    config: Any
    metrics_: dict[str, Any]
    warnings_: list[str]

    def fit(self, data: Any = None, *, run_dir: Path | None = None, resume: bool = False,
            key: Key | None = None) -> Self: ...

    def save(self, path: str | Path, *, key: Key | None = None) -> Path: ...

    def predict(self, data: Any) -> pd.DataFrame: ...

    def evaluate(self, data: Any, *, out_dir: Path | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TaskKind:
    """A task's pipeline: how one is built from a config, and loaded from a bundle."""

    build: Callable[[TaskConfig, Path | None], TaskPipeline]
    load: Callable[[Bundle, str | None], TaskPipeline]
    what: str  # what the task's predictions are, for messages ("predictions", "forecasts")


def _predict_pipeline(config: TaskConfig, base_dir: Path | None) -> TaskPipeline:
    from modelmill.api import Pipeline

    return Pipeline(config, base_dir=base_dir)  # type: ignore[arg-type]  # the registry matched the task


def _predict_bundle(bundle: Bundle, runtime: str | None) -> TaskPipeline:
    from modelmill.api import from_bundle

    return from_bundle(bundle, runtime=runtime)


def _forecast_pipeline(config: TaskConfig, base_dir: Path | None) -> TaskPipeline:
    from modelmill.forecasting.pipeline import ForecastPipeline

    return ForecastPipeline(config, base_dir=base_dir)  # another task's config is a clear ConfigError there


def _forecast_bundle(bundle: Bundle, runtime: str | None) -> TaskPipeline:
    from modelmill.forecasting.pipeline import forecast_from_bundle

    return forecast_from_bundle(bundle)


def _recommend_pipeline(config: TaskConfig, base_dir: Path | None) -> TaskPipeline:
    from modelmill.recommending.pipeline import RecommendPipeline

    return RecommendPipeline(config, base_dir=base_dir)  # another task's config is a clear ConfigError there


def _recommend_bundle(bundle: Bundle, runtime: str | None) -> TaskPipeline:
    from modelmill.recommending.pipeline import recommend_from_bundle

    return recommend_from_bundle(bundle)


TASKS: Registry[TaskKind] = Registry("task")
TASKS.add("predict", TaskKind(_predict_pipeline, _predict_bundle, "predictions"))
TASKS.add("forecast", TaskKind(_forecast_pipeline, _forecast_bundle, "forecasts"))
TASKS.add("recommend", TaskKind(_recommend_pipeline, _recommend_bundle, "recommendations"))


def pipeline_for(config: TaskConfig, *, base_dir: Path | None = None) -> TaskPipeline:
    """An unfitted pipeline of the config's task."""
    return TASKS.get(config.task, path="task").build(config, base_dir)


def task_from_bundle(bundle: Bundle, *, runtime: str | None = None) -> TaskPipeline:
    """The fitted pipeline of a bundle already read and verified, of whichever task."""
    return TASKS.get(bundle.task, path="task").load(bundle, runtime)


def load_task(path: str | Path, *, runtime: str | None = None, key: Key | None = None) -> TaskPipeline:
    """A fitted pipeline of any task from a bundle (or run) directory; hashes verified."""
    return task_from_bundle(read_bundle(path, as_key(key) if key is not None else None), runtime=runtime)
