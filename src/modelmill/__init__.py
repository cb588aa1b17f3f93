"""modelmill: from an organisation's raw data to a deployed, monitored model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelmill.errors import (
    BundleError,
    ConfigError,
    DataError,
    EncryptionError,
    EncryptionKeyError,
    ModelError,
    ModelmillError,
    ServingError,
)
from modelmill._version import __version__

if TYPE_CHECKING:
    from modelmill.api import Pipeline, load
    from modelmill.forecasting.pipeline import ForecastPipeline
    from modelmill.recommending.pipeline import RecommendPipeline
    from modelmill.tasks import load_task
    from modelmill.serving import Client
    from modelmill.config import PipelineConfig
    from modelmill.tuning import tune

__all__ = [
    "BundleError",
    "Client",
    "ConfigError",
    "DataError",
    "EncryptionError",
    "EncryptionKeyError",
    "ForecastPipeline",
    "ModelError",
    "ModelmillError",
    "Pipeline",
    "PipelineConfig",
    "RecommendPipeline",
    "ServingError",
    "__version__",
    "load",
    "load_task",
    "tune",
]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import modelmill.errors` (or the CLI's --help)
    # does not pay for torch, pandas and scikit-learn.
    if name in ("Pipeline", "load"):
        from modelmill import api

        return getattr(api, name)
    if name == "ForecastPipeline":
        from modelmill.forecasting.pipeline import ForecastPipeline

        return ForecastPipeline
    if name == "RecommendPipeline":
        from modelmill.recommending.pipeline import RecommendPipeline

        return RecommendPipeline
    if name == "load_task":
        from modelmill.tasks import load_task

        return load_task
    if name == "Client":
        from modelmill.serving import Client

        return Client
    if name == "tune":
        from modelmill.tuning import tune

        return tune
    if name == "PipelineConfig":
        from modelmill.config import PipelineConfig

        return PipelineConfig
    raise AttributeError(f"module 'modelmill' has no attribute {name!r}")
