"""``model.type: gbdt``: gradient-boosted trees (LightGBM) on the window features of every
series together, one row per (origin, forecast step), the step one of the inputs: a direct
forecast of every step at once, never fed its own predictions.

The interval is conformal (split conformal prediction, Vovk et al., 2005; Lei et al., 2018):
the quantiles of the scaled errors of each step on the latest origins, held out in time order,
of the model fitted before them. Quantile trees were the other choice; they need a booster per
bound and, fitted with early stopping on a squared loss's rounds, cover less than they promise,
while held-out errors cover as often as the held-out stretch resembles the forecast's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import pandas as pd

from modelmill.config.forecast import VALUE, ForecastConfig, LagGBDTConfig
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.forecasting.base import FORECASTERS, FitContext, Forecaster, ForecasterState
from modelmill.forecasting.panel import Panel
from modelmill.forecasting.windows import (WindowSpec, Windows, build_windows, forecast_frame, resolve_spec,
                                           training_origins)
from modelmill.machine import physical_cores
from modelmill.models.gbdt import lightgbm

__all__ = ["LagGBDT", "conformal_bounds"]

TREES = "trees.txt"
MAX_ROWS = 50_000  # (origin, step) training rows: bounds the fit of a long series (elecdemand: ~20 s)
MIN_RESIDUALS = 50  # held-out errors behind each step's bounds (neighbouring steps pooled to reach it)


class LagGBDT(Forecaster):
    """LightGBM on the scaled windows; learned state ends in ``_``."""

    kind = "gbdt"

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__(config)
        self.spec_: WindowSpec | None = None
        self.booster_: Any = None
        self.bounds_: np.ndarray | None = None  # (horizon, 2): scaled error quantiles per step
        self.nonnegative_ = False
        self.summary_: dict[str, Any] = {}

    @property
    def settings(self) -> LagGBDTConfig:
        model = self.config.model
        if not isinstance(model, LagGBDTConfig):
            raise ModelError(f"the gbdt forecaster was given a {model.type} config")
        return model

    def fit(self, train: Panel, context: FitContext) -> Self:
        """Boost on the older origins, stop early on the latest ones, take the bounds from their
        errors, then (``refit``) boost the chosen rounds again on every origin."""
        lgb = lightgbm()
        started = time.perf_counter()
        spec = resolve_spec(self.config, train)
        origins = training_origins(train, spec, max_origins=max(64, MAX_ROWS // spec.horizon), seed=context.seed)
        x, y = build_windows(train, spec, origins.train).until(origins.train_until).rows()
        params = self._params(spec, context.seed)
        held = [key for key, positions in origins.valid.items() if len(positions)]
        if held:
            valid = build_windows(train, spec, {k: origins.valid[k] for k in held})
            booster, rounds = self._boost(lgb, params, x, y, valid)
            self.bounds_ = _held_out_bounds(booster, valid, rounds, self.interval)
        else:  # every series too short to hold any out: no early stopping, in-sample errors (narrower)
            rounds = min(self.settings.trees, 100)
            booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=rounds)
            self.bounds_ = conformal_bounds(y - booster.predict(x), x[:, _step_column(spec)], spec.horizon,
                                            self.interval)
        if self.settings.refit:
            x, y = build_windows(train, spec, origins.refit).rows()
            booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=rounds)
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
        self.spec_, self.nonnegative_ = spec, bool((train.frame[VALUE] >= 0).all())
        self.summary_ = {"rounds": rounds, "training_rows": len(y), "features": x.shape[1],
                         "held_out_series": len(held), "seconds": round(time.perf_counter() - started, 2)}
        return self

    def _boost(self, lgb: Any, params: dict[str, Any], x: np.ndarray, y: np.ndarray,
               valid: Windows) -> tuple[Any, int]:
        """The booster fitted on (x, y) with early stopping on ``valid``, and its best rounds."""
        vx, vy = valid.rows()
        data = lgb.Dataset(x, label=y, free_raw_data=False)
        callbacks = []
        if self.settings.early_stopping_rounds:
            callbacks.append(lgb.early_stopping(self.settings.early_stopping_rounds, verbose=False))
        booster = lgb.train(params, data, num_boost_round=self.settings.trees, callbacks=callbacks,
                            valid_sets=[lgb.Dataset(vx, label=vy, reference=data)], valid_names=["valid"])
        return booster, int(booster.best_iteration or booster.current_iteration())

    def _params(self, spec: WindowSpec, seed: int) -> dict[str, Any]:
        settings = self.settings
        params: dict[str, Any] = {
            # squared error on the scaled targets (absolute error fits the median MASE rewards, but
            # LightGBM's leaf refits make it 2.5x slower); the absolute error decides early stopping,
            # so that a few spikes on the held-out steps do not
            "objective": "l2", "metric": "l1", "max_bin": 63, "learning_rate": settings.learning_rate,
            "num_leaves": settings.leaves, "min_child_samples": settings.min_child_samples,
            "feature_fraction": settings.feature_fraction, "bagging_fraction": settings.bagging_fraction,
            "bagging_freq": 1 if settings.bagging_fraction < 1 else 0, "lambda_l2": settings.l2,
            "extra_trees": settings.extra_trees, "seed": seed, "deterministic": True, "verbosity": -1,
            "num_threads": self.config.training.threads or physical_cores(),
        }
        if settings.monotone:
            params["monotone_constraints"] = _monotone(spec, settings.monotone)
        return params

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        spec, booster, bounds = self.spec_, self.booster_, self.bounds_
        if spec is None or booster is None or bounds is None:
            raise ModelError("the gbdt forecaster is used before it was fitted (or loaded)")
        windows = build_windows(history, spec, None, future)
        shape = (len(windows), spec.horizon)
        scaled = np.asarray(booster.predict(windows.matrix()), dtype="float64").reshape(shape)
        scale = windows.scale[:, None]
        point, lower, upper = scaled * scale, (scaled + bounds[:, 0]) * scale, (scaled + bounds[:, 1]) * scale
        if self.nonnegative_:  # a series never below zero (counts, demand) is not forecast below it
            point, lower, upper = (np.maximum(a, 0.0) for a in (point, lower, upper))
        return forecast_frame(windows, spec, point, lower, upper)

    def needed_history(self) -> int:
        return self.spec_.context if self.spec_ is not None else 1

    def state(self) -> ForecasterState:
        if self.spec_ is None or self.booster_ is None or self.bounds_ is None:
            raise ModelError("the gbdt forecaster is saved before it was fitted")
        return ForecasterState(
            json={"spec": self.spec_.to_json(), "bounds": self.bounds_.tolist(), "nonnegative": self.nonnegative_,
                  "summary": self.summary_},
            files={TREES: self.booster_.model_to_string().encode("utf-8")})

    @classmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        if TREES not in state.files or "spec" not in state.json:
            raise BundleError(f"the gbdt forecaster's state lacks {TREES if TREES not in state.files else 'spec'}")
        forecaster = cls(config)
        try:
            forecaster.booster_ = lightgbm().Booster(model_str=state.files[TREES].decode("utf-8"))
        except ModelError:
            raise
        except Exception as exc:  # LightGBM's own error for a malformed model file
            raise BundleError(f"{TREES} is not a LightGBM model: {str(exc)[:200]}") from None
        forecaster.spec_ = WindowSpec.from_json(state.json["spec"])
        forecaster.bounds_ = np.asarray(state.json["bounds"], dtype="float64").reshape(-1, 2)
        forecaster.nonnegative_ = bool(state.json["nonnegative"])
        forecaster.summary_ = dict(state.json.get("summary", {}))
        return forecaster

    def describe(self) -> dict[str, Any]:
        return {**self.summary_, "interval": "conformal: held-out errors per step"}


def _step_column(spec: WindowSpec) -> int:
    """Where the forecast step sits among a row's columns."""
    return len(spec.origin_names()) + spec.step_names().index("step")


def _held_out_bounds(booster: Any, valid: Windows, rounds: int, interval: float) -> np.ndarray:
    """The bounds from the errors of ``booster``'s first ``rounds`` on the held-out windows."""
    x, y = valid.rows()
    step = x[:, valid.origin.shape[1]]  # the first step column is the step itself
    return conformal_bounds(y - booster.predict(x, num_iteration=rounds), step, valid.steps.shape[1], interval)


def conformal_bounds(errors: np.ndarray, steps: np.ndarray, horizon: int, interval: float) -> np.ndarray:
    """(horizon, 2): the lower and upper quantiles of the held-out ``errors`` (actual − forecast,
    scaled) of each step, with the finite-sample correction of split conformal prediction; a
    step with fewer than :data:`MIN_RESIDUALS` errors pools its neighbours'."""
    bounds = np.zeros((horizon, 2))
    for h in range(1, horizon + 1):
        width = 0
        chosen = errors[steps == h]
        while len(chosen) < MIN_RESIDUALS and width < horizon:
            width += 1
            chosen = errors[np.abs(steps - h) <= width]
        if not len(chosen):
            continue
        n = len(chosen)
        high = min(1.0, math.ceil((n + 1) * (1 + interval) / 2) / n)
        low = max(0.0, math.floor((n + 1) * (1 - interval) / 2) / n)
        bounds[h - 1] = np.quantile(chosen, [low, high], method="inverted_cdf")
    return bounds


def _monotone(spec: WindowSpec, wanted: Mapping[str, int]) -> list[int]:
    """LightGBM's constraint per column: the covariates named in model.monotone."""
    names = spec.origin_names() + spec.step_names()
    allowed = list(spec.future) + list(spec.static)
    constraints = [0] * len(names)
    for name, direction in wanted.items():
        if name not in allowed:
            raise ConfigError(f"{name!r} is no covariate; monotone constraints name the series' future or static "
                              f"covariates: {', '.join(allowed) or 'none configured'}", path=f"model.monotone.{name}")
        constraints[names.index(name)] = direction
    return constraints


FORECASTERS.add("gbdt", LagGBDT, config=LagGBDTConfig)
