"""Gradient-boosted decision trees on LightGBM (an optional extra), fitted on the features'
raw view: numbers as they are, category codes split natively, NaN where a value is missing.

The booster lives in a module whose forward turns the raw columns into raw scores (log-odds,
class scores, or the standardised target), so prediction, evaluation, bundles and serving
are the same as for any model. Its fitted state is LightGBM's own text model format in the
bundle (``trees.txt``), never a pickle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelmill.config.models import GBDTModelConfig
from modelmill.config.schema import TrainingConfig
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.features.base import Feature, RawColumn, Target
from modelmill.machine import physical_cores
from modelmill.models.base import MODELS, InputView, Learner, RoundHook
from modelmill.models.fit import TensorData, TrainResult

TREES = "trees.txt"
# LightGBM's name of each task's loss, and of the metric the curves also show.
OBJECTIVES = {"binary": ("binary", "binary_logloss", "auc"), "category": ("multiclass", "multi_logloss", "multi_error"),
              "number": ("regression", "l2", None)}


def lightgbm() -> Any:
    """The lightgbm module, or a clear error saying how to install it."""
    try:
        import lightgbm as lgb
    except ImportError:
        raise ModelError("model type gbdt needs LightGBM, which is not installed. Fix: pip install "
                         "'modelmill[trees]' (or pip install lightgbm)") from None
    return lgb


class Trees(nn.Module):
    """The raw view (a list of (batch, k) float64 tensors) → raw scores (batch, outputs) float64."""

    def __init__(self, columns: list[RawColumn], outputs: int) -> None:
        super().__init__()
        self.columns, self.outputs = columns, outputs
        self.booster: Any = None

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.booster is None:
            raise ModelError("the gbdt model is used before it was fitted")
        x = torch.cat(inputs, dim=1).to(torch.float64).numpy()  # (batch, columns)
        # one thread for a few rows (threads cost more than they give there), else torch's setting
        threads = 1 if len(x) < 1000 else torch.get_num_threads()
        scores = self.booster.predict(x, raw_score=True, num_threads=threads)
        return torch.from_numpy(np.asarray(scores, dtype=np.float64).reshape(len(x), self.outputs))

    @property
    def categorical(self) -> list[int]:
        return [i for i, column in enumerate(self.columns) if column.kind == "category"]


@MODELS.register("gbdt", config=GBDTModelConfig)
class GBDT(Learner[GBDTModelConfig]):
    view: InputView = "raw"

    def __init__(self, config: GBDTModelConfig) -> None:
        super().__init__(config)
        lightgbm()  # a missing install fails here, before any data is read

    @property
    def refits(self) -> bool:
        return self.config.refit

    def check(self, features: Sequence[Feature[Any]]) -> None:
        for feature in features:
            if feature.raw_kind is None:
                raise ConfigError(
                    f"feature {feature.name!r} ({getattr(feature.config, 'type', '?')}) cannot go into gbdt: trees "
                    "split raw numbers and categories, and a text or an image column has none (a bag of its "
                    "tokens would be thousands of sparse columns that trees split poorly). Fix: drop the column, "
                    "or use model type mlp (or tfidf_logistic for text)", path="model.type")
        by_name = {f.name: f for f in features}
        for name in self.config.monotone:
            if name not in by_name:
                raise ConfigError(f"{name!r} is not a feature; monotone constraints name feature columns: "
                                  f"{', '.join(by_name)}", path=f"model.monotone.{name}")
            if by_name[name].raw_kind != "number":
                kind = getattr(by_name[name].config, "type", "?")
                raise ConfigError(f"column {name!r} is a {kind} column; a monotone constraint needs one ordered "
                                  "value, which only number and binary columns have", path=f"model.monotone.{name}")

    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        self.check(features)
        return Trees([column for feature in features for column in feature.raw_columns()], target.output_size)

    def fit(self, module: nn.Module, train: TensorData, valid: TensorData, target: Target[Any],
            training: TrainingConfig, *, on_round: RoundHook | None = None) -> TrainResult:
        """Boost on the training rows, stop early on the validation loss, keep the best rounds."""
        lgb = lightgbm()
        if not isinstance(module, Trees):
            raise ModelError(f"gbdt fits the module it builds, not a {type(module).__name__}")
        objective, loss, extra = OBJECTIVES[target.task]
        params = self._params(module, target, objective, [loss] + ([extra] if extra else []))
        params.update(seed=training.seed, num_threads=training.threads or physical_cores())
        started = time.perf_counter()
        data = self._dataset(lgb, module, train, target)
        evals: dict[str, dict[str, list[float]]] = {}
        callbacks = [lgb.record_evaluation(evals)]
        if on_round is not None:
            callbacks.append(_RoundReport(on_round, loss, extra))
        if self.config.early_stopping_rounds:
            callbacks.append(lgb.early_stopping(self.config.early_stopping_rounds, first_metric_only=True,
                                                verbose=False))
        booster = lgb.train(params, data, num_boost_round=self.config.trees, callbacks=callbacks,
                            valid_sets=[data, self._dataset(lgb, module, valid, target, reference=data)],
                            valid_names=["train", "valid"])
        best = booster.best_iteration or booster.current_iteration()
        history = self._history(evals, loss, extra, time.perf_counter() - started)
        stopped = f"early stopping: no better validation loss for {self.config.early_stopping_rounds} rounds" \
            if best < len(history) else f"all {self.config.trees} rounds done"
        # the validation rows' raw scores before any refit on them: the honest held-out predictions
        valid_x = torch.cat(valid.inputs, dim=1).to(torch.float64).numpy()
        held_out = np.asarray(booster.predict(valid_x, raw_score=True, num_iteration=best), dtype=np.float64)
        if self.config.refit and valid.held_out:
            # the chosen number of rounds again, now on every row: the held-out rows (often the
            # latest ones, in a time split) are data the kept trees should not miss
            both = TensorData([torch.cat([a, b]) for a, b in zip(train.inputs, valid.inputs, strict=True)],
                              torch.cat([train.target, valid.target]))
            booster = lgb.train(params, self._dataset(lgb, module, both, target), num_boost_round=best)
            stopped += f"; then {best} rounds on the training and validation rows"
        # the kept model is exactly what a bundle holds: the best rounds, through LightGBM's text format
        module.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        seconds = time.perf_counter() - started
        history[-1]["seconds"] = seconds
        return TrainResult(history, best, None, len(history), seconds, stopped,
                           held_out_raw=torch.from_numpy(held_out.reshape(len(valid_x), module.outputs)))

    def _params(self, module: Trees, target: Target[Any], objective: str, metrics: list[str]) -> dict[str, Any]:
        config = self.config
        params: dict[str, Any] = {
            "objective": objective, "metric": metrics, "learning_rate": config.learning_rate,
            "num_leaves": config.leaves, "min_child_samples": config.min_child_samples,
            "feature_fraction": config.feature_fraction, "bagging_fraction": config.bagging_fraction,
            "bagging_freq": 1 if config.bagging_fraction < 1 else 0, "lambda_l2": config.l2,
            "extra_trees": config.extra_trees,
            "deterministic": True, "verbosity": -1,
        }
        if objective == "multiclass":
            params["num_class"] = target.output_size
        if config.monotone:
            positions = {c.name: i for i, c in enumerate(module.columns)}
            constraints = [0] * len(module.columns)
            for name, direction in config.monotone.items():
                constraints[positions[name]] = direction
            params["monotone_constraints"] = constraints
        return params

    def _dataset(self, lgb: Any, module: Trees, data: TensorData, target: Target[Any], reference: Any = None) -> Any:
        x = torch.cat(data.inputs, dim=1).to(torch.float64).numpy()
        labels = data.target.numpy()
        weights = target.class_weights
        weight = np.asarray(weights, dtype=np.float64)[labels.astype(np.int64)] if weights else None
        return lgb.Dataset(x, label=labels, weight=weight, categorical_feature=module.categorical or "auto",
                           feature_name=[f"c{i}" for i in range(x.shape[1])], reference=reference,
                           free_raw_data=False, params={"verbosity": -1})

    @staticmethod
    def _history(evals: dict[str, dict[str, list[float]]], loss: str, extra: str | None,
                 seconds: float) -> list[dict[str, float]]:
        """One row per boosting round, as the trainer has one per epoch."""
        train, valid = evals.get("train", {}), evals.get("valid", {})
        rounds = len(valid.get(loss, []))
        rows = []
        for i in range(rounds):
            row = {"epoch": float(i + 1), "train_loss": float(train[loss][i])}
            row.update(_valid_row({metric: values[i] for metric, values in valid.items()}, loss, extra))
            rows.append(row)
        if rows:
            rows[-1]["seconds"] = seconds
        return rows

    def trained_parameters(self, module: nn.Module) -> int:
        """Split thresholds and leaf values of the kept trees."""
        if not isinstance(module, Trees) or module.booster is None:
            return 0
        return sum(2 * tree["num_leaves"] - 1 for tree in module.booster.dump_model()["tree_info"])

    def save(self, module: nn.Module) -> dict[str, bytes]:
        if not isinstance(module, Trees) or module.booster is None:
            raise ModelError("the gbdt model is saved before it was fitted")
        return {TREES: module.booster.model_to_string().encode("utf-8")}

    def load(self, module: nn.Module, artifacts: Mapping[str, bytes], *, where: Path) -> None:
        if TREES not in artifacts:
            raise BundleError(f"bundle {where} has no {TREES} for its gbdt model")
        if not isinstance(module, Trees):
            raise ModelError(f"gbdt loads into the module it builds, not a {type(module).__name__}")
        try:
            module.booster = lightgbm().Booster(model_str=artifacts[TREES].decode("utf-8"))
        except Exception as exc:  # LightGBM's own error for a malformed model file
            raise BundleError(f"{where / TREES} is not a LightGBM model: {str(exc)[:200]}") from None


class _RoundReport:
    """A LightGBM callback handing each round's validation row to the training callbacks
    (after LightGBM's own evaluation; an exception raised there ends the boosting)."""

    def __init__(self, hook: RoundHook, loss: str, extra: str | None) -> None:
        self.hook, self.loss, self.extra = hook, loss, extra
        self.order = 25  # after record_evaluation (20), before early_stopping (30); LightGBM reads the instance's

    def __call__(self, env: Any) -> None:
        valid = {metric: value for name, metric, value, *_ in env.evaluation_result_list if name == "valid"}
        if self.loss in valid:
            self.hook({"epoch": float(env.iteration + 1), **_valid_row(valid, self.loss, self.extra)})


def _valid_row(valid: Mapping[str, float], loss: str, extra: str | None) -> dict[str, float]:
    """One round's validation loss and metric, named as the trainer names them, from
    LightGBM's metrics of that round."""
    row = {"valid_loss": float(valid[loss])}
    if extra == "auc" and extra in valid:
        row["valid_roc_auc"] = float(valid[extra])
    elif extra == "multi_error" and extra in valid:
        row["valid_accuracy"] = 1.0 - float(valid[extra])
    elif loss == "l2":
        row["valid_rmse"] = math.sqrt(row["valid_loss"])
    return row
