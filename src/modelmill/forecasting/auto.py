"""``auto``: every candidate model type is scored on held-out horizons at the end of the
training steps; all of them are refitted on every step and forecast together, each weighted by
its held-out MASE, the interval widened or narrowed by what the held-out horizons showed.

Each candidate is built through :data:`FORECASTERS` with the default config of its type, so
a new model type needs no code here: it is a name in ``model.candidates``.

Combining: a weighted mean of several forecasters is often better than the best of them chosen
on a few held-out horizons (the M competitions' lesson: Makridakis et al. 2020; FPP3 §13.4),
because the choice is noisy. Each candidate's weight is proportional to 1 / MASE², its held-out
MASE squared and inverted (the inverse-error weights of Bates & Granger 1969, MASE standing in for the error), so that one far
behind still counts, but little: MASE 0.5 against 1.5 weighs 90% to 10%. The bounds are averaged
as the forecasts are (quantile averaging). Replayed on the candidates' own backtests (six
aus_accommodation cut-offs, 16 Bikeshare ones without the deep candidate, each choice made on
the three before it), picking the best scored MASE 1.56 and 0.68, the mean of the best k (k
chosen on the same horizons) 1.45 and 0.69, the plain mean 1.44 and 0.76, and these weights 1.43
and 0.69: the best on aus_accommodation and 0.01 off it on Bikeshare; the mean of the best k came
as close in the replay but gave aus_accommodation 1.656 in a full run (docs/benchmarks.md,
"Forecasting").

Calibrating: a model's own interval reflects its assumptions (ETS's Gaussian errors, a
seasonal naive's in-sample residuals, quantile trees fitted on the training windows), which a
real series breaks: before this, `auto`'s 80% intervals covered 60% of aus_accommodation's
actual takings in a backtest, and ETS's covered 99.8% of Bikeshare's hours. So the interval is
scaled about the forecast by the factor that makes it cover ``backtest.interval`` of the
held-out points, the conformal quantile of how far outside (or inside) each actual value fell,
relative to the interval's half-width on its side (split conformal prediction: Vovk et al.
2005; Stankeviciute et al. 2021 for forecasts). The factor is each held-out origin's own, the
largest of them: the points of one horizon are not independent draws (a holiday, a break in
the trend moves all of them), and the next horizon is rarely calmer than the last three. On
the candidates' replayed backtests the factor of the pooled points covered 73% and 81% of
aus_accommodation's and Bikeshare's values, the largest per-origin factor 80% and 88%.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pandas as pd

from modelmill.config.forecast import SERIES_ID, TIME, VALUE, AutoForecastConfig, ForecastConfig
from modelmill.errors import ModelError, ModelmillError
from modelmill.forecasting.base import FORECASTERS, LOWER, UPPER, FitContext, ForecastMemo, Forecaster, ForecasterState
from modelmill.forecasting.combining import interval_scale, mase_weights, mean_forecast, rescaled
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
# (Measured when auto picked one candidate; the origins now also set the weights and each
# origin's interval factor. In a backtest the run's memo reuses the earlier cut-offs' fits, so
# each cut-off after the first adds one fit per candidate.) A series too short for three keeps
# fewer.
HELD_OUT_ORIGINS = 3
_NEEDS = {"gbdt": "lightgbm"}  # a candidate left out where its library is not installed
# The interval is never narrowed below a tenth of the models' own: where at every held-out
# origin at least backtest.interval of the values fell exactly on the forecast (runs of zeros
# forecast as zeros), the conformal factor is 0 and would collapse every interval onto its forecast.
MIN_SCALE = 0.1


def candidate_config(config: ForecastConfig, name: str) -> ForecastConfig:
    """``config`` with the model section replaced by the default config of type ``name``."""
    return config.model_copy(update={"model": FORECASTERS.config_class(name)()})


@dataclass
class HeldOut:
    """One held-out origin of a candidate: its forecasts beside the actual values (``unique_id``,
    ``ds``, ``forecast``, ``lower``, ``upper``, ``actual``) and MASE's scale per series there."""

    scored: pd.DataFrame
    scales: pd.Series


@dataclass
class Score:
    """A candidate's held-out MASE (mean over origins), seconds, why it failed, if it did, and
    its held-out forecasts (kept during the fit only, never saved)."""

    mase: float = math.nan
    seconds: float = 0.0
    error: str | None = None
    held_out: list[HeldOut] = field(default_factory=list, repr=False)
    reused: int = 0  # held-out forecasts taken from the run's memo, not fitted again


class AutoForecaster(Forecaster):
    """Weighs ``model.candidates`` by held-out MASE (1 / MASE²), calibrates the interval of
    their weighted mean on the same held-out horizons, and forecasts with all of them."""

    kind = "auto"

    def __init__(self, config: ForecastConfig, *, origins: int = HELD_OUT_ORIGINS) -> None:
        super().__init__(config)
        self.origins = origins
        self.members_: list[str] = []
        self.weights_: list[float] = []
        self.models_: list[Forecaster] = []
        self.scale_: float = 1.0
        self.scores_: dict[str, Score] = {}
        self.held_out_mase_: float = math.nan
        self.coverage_: dict[str, float] = {}
        self.origin_scales_: list[float] = []
        self.origins_used_: int = 0
        # (memo, seed, key of the fitted history) until the first forecast; if that forecast is of
        # the fitted history, each member's forecast is put in the memo
        self.recording_: tuple[weakref.ref[ForecastMemo], int, str] | None = None

    @property
    def settings(self) -> AutoForecastConfig:
        model = self.config.model
        if not isinstance(model, AutoForecastConfig):
            raise ModelError(f"the auto forecaster was given a model.type {model.type!r} config")
        return model

    @property
    def chosen_(self) -> str | None:
        """The members, heaviest first, joined by "+" (``ets+gbdt``). Kept under the name and
        report key ``chosen`` for older reports, bundles and benchmarks/forecast.py."""
        return "+".join(self.members_) or None

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
        fitted: dict[str, Forecaster] = {}
        for name in sorted(scored, key=lambda n: (scored[n], names.index(n))):  # the best first
            try:
                fitted[name] = self._build(name).fit(train, FitContext(
                    checkpoint_dir=_sub(context, name, "final"), resume=context.resume, seed=context.seed,
                    label=f"{context.label}: {name}"))
            except ModelmillError as exc:  # the others still forecast, weighed among themselves
                log.warning(f"auto: candidate {name} failed on all the steps, left out: {exc}")
                self.scores_[name].error = f"the fit on all the steps failed: {exc}"
        if not fitted:
            failures = "; ".join(f"{n}: {self.scores_[n].error}" for n in scored)
            raise ModelError(f"model.type auto: no candidate could be fitted on all the steps ({failures}). Fix: "
                             "check the data, or set model.type to one model type")
        self.members_, self.models_ = list(fitted), list(fitted.values())
        self._weigh([scored[name] for name in self.members_])
        for score in self.scores_.values():
            score.held_out = []  # only the weighing needed them
        # a weak reference: the memo belongs to the run (a backtest), not to the fitted model
        self.recording_ = (weakref.ref(context.memo), context.seed, context.memo.key_of(train)) \
            if context.memo else None
        return self

    def _weigh(self, mases: list[float]) -> None:
        """The members' weights, and the interval's factor from their weighted mean's held-out
        horizons: the largest of the origins' own factors (each horizon covered, not their pool)."""
        self.weights_ = mase_weights(mases)
        held_out = self._blended(self.members_, self.weights_)
        self.held_out_mase_ = _mean_mase(held_out)
        self.origin_scales_ = [interval_scale(part.scored, self.interval) for part in held_out]
        usable = [scale for scale in self.origin_scales_ if math.isfinite(scale)]
        self.scale_ = max(MIN_SCALE, *usable) if usable else 1.0
        points = pd.concat([part.scored for part in held_out], ignore_index=True)
        self.coverage_ = {"before": _coverage(points), "after": _coverage(rescaled(points, self.scale_))}
        weighed = ", ".join(f"{name} {weight:.2f}" for name, weight in zip(self.members_, self.weights_, strict=True))
        log.info(f"auto: weights {weighed} (held-out MASE {self.held_out_mase_:.3f}; interval × {self.scale_:.2f}: "
                 f"held-out coverage {self.coverage_['before']:.2f} → {self.coverage_['after']:.2f})")

    def _build(self, name: str) -> Forecaster:
        return FORECASTERS.get(name, path="model.candidates")(candidate_config(self.config, name))

    def _score(self, name: str, train: Panel, context: FitContext) -> Score:
        """Mean MASE of ``name`` over the held-out origins, each fitted on the steps before it."""
        started, held_out, reused, memo = time.perf_counter(), [], 0, context.memo
        try:
            for origin in range(1, self.origins_used_ + 1):
                past = _without_last(train, origin * self.horizon)
                key = memo.key_of(past) if memo else ""
                forecasts = memo.get(name, context.seed, key) if memo else None
                if forecasts is not None:
                    reused += 1
                else:
                    sub = FitContext(checkpoint_dir=_sub(context, name, f"origin-{origin}"), resume=context.resume,
                                     seed=context.seed, label=f"{context.label}: {name}, held-out origin {origin}")
                    forecaster = self._build(name).fit(past, sub)
                    future = horizon_frame(past, train.frame, self.horizon, source="auto's held-out horizon")
                    forecasts = forecaster.forecast(past, future)
                    if memo:
                        memo.put(name, context.seed, key, forecasts)
                actual = train.frame[[SERIES_ID, TIME, VALUE]].rename(columns={VALUE: ACTUAL})
                scored = forecasts.merge(actual, on=[SERIES_ID, TIME], how="inner")  # the held-out steps
                held_out.append(HeldOut(scored, naive_scales(past.frame, train.season)))
        except ModelmillError as exc:  # a candidate the data does not suit; the others still compete
            log.warning(f"auto: candidate {name} failed: {exc}")
            return Score(seconds=time.perf_counter() - started, error=str(exc))
        return Score(_mean_mase(held_out), time.perf_counter() - started, held_out=held_out, reused=reused)

    def _blended(self, members: list[str], weights: list[float]) -> list[HeldOut]:
        """The held-out origins of the weighted mean of ``members``' forecasts."""
        origins = zip(*(self.scores_[name].held_out for name in members), strict=True)
        return [HeldOut(mean_forecast([part.scored for part in parts], weights), parts[0].scales) for parts in origins]

    def _models(self) -> list[Forecaster]:
        if not self.models_:
            raise ModelError("auto is not fitted yet. Fix: call fit(train) before forecast or state")
        return self.models_

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        """The members' weighted mean forecast, its interval calibrated. The first forecast
        after a fit with a memo, where it is of the fitted history (a backtest's cut-off), is
        kept there for the next cut-offs' held-out horizons."""
        forecasts = [model.forecast(history, future) for model in self._models()]
        if self.recording_ is not None:
            reference, seed, key = self.recording_
            self.recording_ = None
            memo = reference()
            if memo is not None and memo.key_of(history) == key:
                for name, forecast in zip(self.members_, forecasts, strict=True):
                    memo.put(name, seed, key, forecast)
        return rescaled(mean_forecast(forecasts, self.weights_), self.scale_)

    def needed_history(self) -> int:
        return max(model.needed_history() for model in self._models())

    def history_to_keep(self) -> int:
        return max(model.history_to_keep() for model in self._models())

    def state(self) -> ForecasterState:
        states = {name: model.state() for name, model in zip(self.members_, self._models(), strict=True)}
        return ForecasterState(
            json={"members": self.members_, "weights": self.weights_,
                  "states": {name: state.json for name, state in states.items()},
                  "interval_scale": self.scale_, "describe": self.describe()},
            tensors={f"{name}/{key}": value for name, state in states.items() for key, value in state.tensors.items()},
            files={f"{name}/{key}": value for name, state in states.items() for key, value in state.files.items()})

    @classmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        made = cls(config)
        try:
            if "members" in state.json:
                members = [str(name) for name in state.json["members"]]
                inner = {name: ForecasterState(
                    json=dict(state.json["states"][name]),
                    tensors={k.split("/", 1)[1]: v for k, v in state.tensors.items() if k.startswith(f"{name}/")},
                    files={k.split("/", 1)[1]: v for k, v in state.files.items() if k.startswith(f"{name}/")})
                    for name in members}
                weights = [float(w) for w in state.json["weights"]]
                made.scale_ = float(state.json["interval_scale"])
            else:  # a bundle saved before auto could combine: one member, its own interval
                members, weights = [str(state.json["chosen"])], [1.0]
                inner = {members[0]: ForecasterState(json=dict(state.json["state"]), tensors=state.tensors,
                                                     files=state.files)}
            described = state.json.get("describe", {})
            if not members or len(weights) != len(members) or not all(math.isfinite(w) and w >= 0 for w in weights) \
                    or sum(weights) <= 0 or not math.isfinite(made.scale_) or made.scale_ < 0:
                raise ValueError(f"members {members}, weights {weights}, interval scale {made.scale_}")
            made.origins_used_ = int(described.get("origins", 0))
            made.scores_ = {n: Score(float(s["mase"]) if s["mase"] is not None else math.nan, float(s["seconds"]),
                                     s.get("error"), reused=int(s.get("reused", 0)))
                            for n, s in described.get("candidates", {}).items()}
            held = described.get("held_out_mase")
            made.held_out_mase_ = float(held) if held is not None else math.nan
            made.coverage_ = {str(k): float(v) for k, v in described.get("held_out_coverage", {}).items()}
            made.origin_scales_ = [float(v) if v is not None else math.nan
                                   for v in described.get("interval_scales_by_origin", [])]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the saved auto state is malformed ({exc!r}). Fix: refit and save the bundle again") \
                from None
        made.members_, made.weights_ = members, weights
        made.models_ = [FORECASTERS.get(name, path="model.candidates").from_state(candidate_config(config, name),
                                                                                  inner[name]) for name in members]
        return made

    def describe(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen_,
            "members": list(self.members_),
            "origins": self.origins_used_,
            "candidates": {n: {"mase": s.mase if math.isfinite(s.mase) else None, "seconds": round(s.seconds, 2),
                               **({"reused": s.reused} if s.reused else {}),
                               **({"error": s.error} if s.error else {})} for n, s in self.scores_.items()},
            "weights": dict(zip(self.members_, self.weights_, strict=True)),
            # of the weighted mean, before its interval is scaled
            "held_out_mase": self.held_out_mase_ if math.isfinite(self.held_out_mase_) else None,
            "interval_scale": self.scale_,
            "interval_scales_by_origin": [v if math.isfinite(v) else None for v in self.origin_scales_],
            "held_out_coverage": dict(self.coverage_),
            "model": {name: model.describe() for name, model in zip(self.members_, self.models_, strict=True)}
            if len(self.models_) > 1 else self.models_[0].describe() if self.models_ else {},
        }


def _mean_mase(held_out: list[HeldOut]) -> float:
    mases = [accuracy(part.scored, part.scales)["mase"] for part in held_out]
    return float(sum(mases) / len(mases)) if mases else math.nan


def _coverage(scored: pd.DataFrame) -> float:
    return float(((scored[ACTUAL] >= scored[LOWER]) & (scored[ACTUAL] <= scored[UPPER])).mean())


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
