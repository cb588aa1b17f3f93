"""Config of ``modelmill tune``: the search space and the budgets of a hyper-parameter search."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelmill.config.section import Section

SPACE_DESCRIPTION = (
    "Search space by config path: `training.optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}`, "
    "`model.leaves: {low: 8, high: 128}` (both ends whole numbers: an integer), `model.hidden: {choices: [[128], "
    "[256, 128]]}`, `step:` for a grid. A path whose value maps choices to spaces is conditional: `model.type: "
    "{gbdt: {model.leaves: ...}, mlp: {model.dropout: ...}}` tries each model type with its own parameters. "
    "Empty: the built-in space of the configured model type(s).")


class TuneConfig(Section):
    """How ``modelmill tune`` searches: Optuna's TPE sampler, trials pruned on their validation curves,
    the study kept in SQLite (a killed search resumes; two processes can share one study)."""

    trials: int = Field(50, ge=1, le=100_000, description="Finished trials (complete or pruned) the study "
                        "should hold; a resumed study runs only the missing ones.")
    timeout: float | None = Field(None, gt=0, description="Seconds this tune command may start trials for "
                                  "(a trial under way is finished; the final fit of the best config comes after).")
    pruning: bool = Field(True, description="Stop a trial whose validation metric, epoch by epoch (round by round "
                          "for trees, fit by fit for folds), is worse than the median of the earlier trials.")
    startup_trials: int = Field(5, ge=0, description="Trials that are never pruned, and that the sampler draws at "
                                "random, before either learns from the study.")
    seed: int | None = Field(None, description="Seed of the sampler (default: training.seed).")
    heartbeat: int = Field(60, ge=1, le=3600, description="Seconds between a running trial's signs of life in "
                           "the study. A trial silent for three of them (its process died, on any machine sharing "
                           "the study) is failed and run once more; a trial cut off on this machine is found at "
                           "once, by its process id.")
    space: dict[str, Any] = Field(default_factory=dict, description=SPACE_DESCRIPTION)
