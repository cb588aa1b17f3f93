"""``auto``: every candidate model type is scored on held-out horizons at the end of the
training steps; the best by MASE is refitted on all of them and forecasts.

Each candidate is built through :data:`FORECASTERS` with the default config of its type, so
a new model type needs no code here: it is a name in ``model.candidates``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pandas as pd

from modelmill.config.forecast import SERIES_ID, TIME, VALUE, AutoForecastConfig, ForecastConfig
from modelmill.errors import ModelError, ModelmillError
from modelmill.forecasting.base import FORECASTERS, FitContext, Forecaster, ForecasterState
from modelmill.forecasting.metrics import ACTUAL, accuracy, naive_scales
from modelmill.forecasting.panel import Panel, horizon_frame

__all__ = ["AutoForecaster", "HELD_OUT_ORIGINS", "candidate_config"]

log = logging.getLogger("modelmill")

# Held-out origins per candidate, each one horizon apart (the latest one horizon before the end
# of the training steps); a candidate's score is its mean MASE over them. Three, because one
# horizon is a noisy judge: over 14 rolling choices each on elecdemand and Bikeshare (a day
# ahead, seasonal_naive against ets), three origins chose the better candidate 21 times of 28
# (two origins 13, one 16) and its forecasts scored MASE 0.82 on average (two: 0.91, one: 0.90).
# The price is a fit per candidate more than two (four fits each, the refit included). On
# aus_accommodation's three rolling choices two origins did best: too few to weigh against 28.
# A series too short for three keeps fewer.
HELD_OUT_ORIGINS = 3
_NEEDS = {"gbdt": "lightgbm"}  # a candidate left out where its library is not installed


def candidate_config(config: ForecastConfig, name: str) -> ForecastConfig:
    """``config`` with the model section replaced by the default config of type ``name``."""
    return config.model_copy(update={"model": FORECASTERS.config_class(name)()})


@dataclass
class Score:
    """A candidate's held-out MASE (mean over origins), seconds, and why it failed, if it did."""

    mase: float = math.nan
    seconds: float = 0.0
    error: str | None = None


class AutoForecaster(Forecaster):
    """Chooses among ``model.candidates`` by held-out MASE, then delegates to the chosen one."""

    kind = "auto"

    def __init__(self, config: ForecastConfig, *, origins: int = HELD_OUT_ORIGINS) -> None:
        super().__init__(config)
        self.origins = origins
        self.chosen_: str | None = None
        self.model_: Forecaster | None = None
        self.scores_: dict[str, Score] = {}
        self.origins_used_: int = 0

    @property
    def settings(self) -> AutoForecastConfig:
        model = self.config.model
        if not isinstance(model, AutoForecastConfig):
            raise ModelError(f"the auto forecaster was given a model.type {model.type!r} config")
        return model

    def candidates(self) -> list[str]:
        """The configured candidates whose libraries are installed."""
        names: list[str] = [n for n in self.settings.candidates
                            if n not in _NEEDS or importlib.util.find_spec(_NEEDS[n])]
        for name in names:
            FORECASTERS.get(name, path="model.candidates")  # an unknown name lists the known ones
        if not names:
            raise ModelError(f"model.candidates: none of {self.settings.candidates} can be used here (LightGBM is "
                             "not installed). Fix: pip install 'modelmill[trees]', or add other candidates")
        return names

    def fit(self, train: Panel, context: FitContext) -> Self:
        names = self.candidates()
        self.origins_used_ = _origins_possible(train, self.horizon, self.origins)
        self.scores_ = {name: self._score(name, train, context) for name in names}
        scored = {n: s.mase for n, s in self.scores_.items() if s.error is None and math.isfinite(s.mase)}
        if not scored:
            failures = "; ".join(f"{n}: {s.error or 'no finite MASE'}" for n, s in self.scores_.items())
            raise ModelError(f"model.type auto: no candidate could be scored ({failures}). Fix: check the data, or "
                             "set model.type to one model type")
        self.chosen_ = min(scored, key=lambda n: (scored[n], names.index(n)))  # ties: the earlier candidate
        log.info(f"auto: {self.chosen_} chosen (held-out MASE {scored[self.chosen_]:.3f}); refitting on all steps")
        final = FitContext(checkpoint_dir=_sub(context, self.chosen_, "final"), resume=context.resume,
                           seed=context.seed, label=f"{context.label}: {self.chosen_}")
        self.model_ = self._build(self.chosen_).fit(train, final)
        return self

    def _build(self, name: str) -> Forecaster:
        return FORECASTERS.get(name, path="model.candidates")(candidate_config(self.config, name))

    def _score(self, name: str, train: Panel, context: FitContext) -> Score:
        """Mean MASE of ``name`` over the held-out origins, each fitted on the steps before it."""
        started, mases = time.perf_counter(), []
        try:
            for origin in range(1, self.origins_used_ + 1):
                past = _without_last(train, origin * self.horizon)
                sub = FitContext(checkpoint_dir=_sub(context, name, f"origin-{origin}"), resume=context.resume,
                                 seed=context.seed, label=f"{context.label}: {name}, held-out origin {origin}")
                forecaster = self._build(name).fit(past, sub)
                future = horizon_frame(past, train.frame, self.horizon, source="auto's held-out horizon")
                forecasts = forecaster.forecast(past, future)
                actual = train.frame[[SERIES_ID, TIME, VALUE]].rename(columns={VALUE: ACTUAL})
                scored = forecasts.merge(actual, on=[SERIES_ID, TIME], how="inner")  # the held-out steps
                mases.append(accuracy(scored, naive_scales(past.frame, train.season))["mase"])
        except ModelmillError as exc:  # a candidate the data does not suit; the others still compete
            log.warning(f"auto: candidate {name} failed: {exc}")
            return Score(seconds=time.perf_counter() - started, error=str(exc))
        return Score(float(sum(mases) / len(mases)), time.perf_counter() - started)

    def _model(self) -> Forecaster:
        if self.model_ is None:
            raise ModelError("auto is not fitted yet. Fix: call fit(train) before forecast or state")
        return self.model_

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        """The chosen model's forecast."""
        return self._model().forecast(history, future)

    def needed_history(self) -> int:
        return self._model().needed_history()

    def history_to_keep(self) -> int:
        return self._model().history_to_keep()

    def state(self) -> ForecasterState:
        inner = self._model().state()
        return ForecasterState(json={"chosen": self.chosen_, "state": inner.json, "describe": self.describe()},
                               tensors=inner.tensors, files=inner.files)

    @classmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        made = cls(config)
        try:
            name = str(state.json["chosen"])
            inner = ForecasterState(json=dict(state.json["state"]), tensors=state.tensors, files=state.files)
            described = state.json.get("describe", {})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the saved auto state is malformed ({exc!r}). Fix: refit and save the bundle again") \
                from None
        made.chosen_ = name
        made.model_ = FORECASTERS.get(name, path="model.candidates").from_state(candidate_config(config, name), inner)
        made.origins_used_ = int(described.get("origins", 0))
        made.scores_ = {n: Score(float(s["mase"]) if s["mase"] is not None else math.nan, float(s["seconds"]),
                                 s.get("error")) for n, s in described.get("candidates", {}).items()}
        return made

    def describe(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen_,
            "origins": self.origins_used_,
            "candidates": {n: {"mase": s.mase if math.isfinite(s.mase) else None, "seconds": round(s.seconds, 2),
                               **({"error": s.error} if s.error else {})} for n, s in self.scores_.items()},
            "model": self.model_.describe() if self.model_ is not None else {},
        }


def _without_last(panel: Panel, steps: int) -> Panel:
    """Every series without its latest ``steps`` steps."""
    if steps == 0:
        return panel
    frame = panel.frame
    from_end = frame.groupby(SERIES_ID, sort=False).cumcount(ascending=False)
    return panel.with_frame(frame[from_end >= steps].reset_index(drop=True))


def _origins_possible(train: Panel, horizon: int, wanted: int) -> int:
    """As many origins as wanted while every series keeps a season and a step before the
    oldest one (at least one origin; a series too short for it forecasts from what it has)."""
    shortest = int(train.lengths().min())
    possible = (shortest - train.season - 1) // horizon
    return max(1, min(wanted, possible))


def _sub(context: FitContext, name: str, part: str) -> Path | None:
    return context.checkpoint_dir / "auto" / name / part if context.checkpoint_dir else None


FORECASTERS.add("auto", AutoForecaster, config=AutoForecastConfig)
