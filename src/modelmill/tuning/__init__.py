"""Hyper-parameter search over any config key (``modelmill tune``), on Optuna."""

from modelmill.tuning.outputs import best_config_yaml, leaderboard, train_best, write_outputs
from modelmill.tuning.search import TuneResult, tune
from modelmill.tuning.space import DEFAULT_SPACES, Param, Space, apply_overrides, build_space
from modelmill.tuning.study import TuneOutcome, TuneSettings, optuna_module, prepare, run_study

__all__ = ["DEFAULT_SPACES", "Param", "Space", "TuneOutcome", "TuneResult", "TuneSettings", "apply_overrides",
           "best_config_yaml", "build_space", "leaderboard", "optuna_module", "prepare", "run_study", "train_best", "tune",
           "write_outputs"]
