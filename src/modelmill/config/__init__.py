"""The typed config tree and its YAML form."""

from modelmill.config.io import dump_config, load_config, parse_config, save_config
from modelmill.config.schema import PipelineConfig

__all__ = ["PipelineConfig", "dump_config", "load_config", "parse_config", "save_config"]
