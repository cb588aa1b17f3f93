"""The typed config tree and its YAML form."""

from modelmill.config.forecast import ForecastConfig
from modelmill.config.io import (
    TaskConfig, dump_config, load_config, load_task_config, parse_config, parse_task_config, save_config,
)
from modelmill.config.recommend import RecommendConfig
from modelmill.config.schema import PipelineConfig

__all__ = [
    "ForecastConfig", "PipelineConfig", "RecommendConfig", "TaskConfig", "dump_config", "load_config", "load_task_config", "parse_config",
    "parse_task_config", "save_config",
]
