"""``ets``: exponential smoothing, statsmodels' state-space ETS, one model per series.

The form (error, trend, seasonal) of each series is chosen by AICc over the admissible forms,
as AutoETS does (Hyndman et al. 2002; Hyndman & Athanasopoulos, FPP3 §8.6): multiplicative
error or seasonality only for strictly positive series, never additive error with
multiplicative seasonality (numerically unstable), no form with more parameters than the
series can carry. A season longer than 24 steps (48 half-hours; 24 hours is still a state) is
not a state of the ETS: a seasonal ETS with m = 48 on 5,000 points takes 2.5–7 s per form to
fit, and the damped one did not converge (statsforecast's AutoETS and R's ``ets`` drop the
season there). We keep the season instead by STL decomposition (Cleveland et al. 1990; FPP3
§5.7, R's ``stlf``): ETS on the seasonally adjusted series (about 1 s for all forms), plus the
last season of the seasonal component; on 3 of 4 held-out days of elecdemand it forecast far
better (MASE 0.22–0.65 against 0.85–1.6) than seasonal ETS states from heuristic initial values.

statsmodels is an optional extra (``pip install 'modelmill[forecast]'``), imported lazily.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from modelmill.config.forecast import TIME, VALUE, ETSConfig, ForecastConfig
from modelmill.errors import DataError, ModelError
from modelmill.forecasting.base import FORECASTERS, FitContext, Forecaster, ForecasterState
from modelmill.forecasting.naive import forecast_frame, normal_quantile, residual_sigma, stack_forecasts
from modelmill.forecasting.panel import Panel, future_steps

__all__ = ["ETS", "ETSForm", "SeriesFit", "statsmodels_ets"]

INSTALL_HINT = "pip install 'modelmill[forecast]'"
LONG_SEASON = 24  # longer seasons are taken out by STL, not fitted as ETS states
NAIVE = "naive"  # the last resort of a series no ETS fits (a constant one): its last value


def statsmodels_ets() -> tuple[Any, Any]:
    """statsmodels' ETSModel and STL, or a ModelError with the install hint."""
    try:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel
        from statsmodels.tsa.seasonal import STL
    except ImportError as exc:
        raise ModelError(f"model.type ets needs statsmodels, which is not installed ({exc}). Fix: {INSTALL_HINT}") \
            from None
    return ETSModel, STL


@dataclass(frozen=True)
class ETSForm:
    """One ETS form. ``error``, ``trend``, ``seasonal``: "add", "mul" or None (statsmodels'
    names); ``decompose``: "stl" (additive) or "stl_log" (multiplicative) when the season is
    taken out by STL first; ``error == "naive"``: no ETS (the last value, σ̂ of its steps)."""

    error: str
    trend: str | None = None
    damped: bool = False
    seasonal: str | None = None
    period: int = 1
    decompose: str | None = None

    @property
    def name(self) -> str:
        if self.error == NAIVE:
            return NAIVE
        letter = {None: "N", "add": "A", "mul": "M"}
        trend = letter[self.trend] + ("d" if self.damped else "")
        seasonal = letter[self.seasonal] if self.decompose is None else \
            f"{'A' if self.decompose == 'stl' else 'M'} by STL"
        return f"ETS({letter[self.error]},{trend},{seasonal})" + (f"[{self.period}]" if self.period > 1 else "")

    def parameters(self) -> int:
        """Smoothing parameters, initial states and σ (AICc's k)."""
        k = 3 + (3 if self.damped else 2 if self.trend else 0)
        return k + (self.period if self.seasonal else 0)

    def model(self, values: np.ndarray, initialization: str) -> Any:
        ets_model, _ = statsmodels_ets()
        # a Series: statsmodels 0.15's get_prediction fails on a bare array's predictions
        return ets_model(pd.Series(values), error=self.error, trend=self.trend, damped_trend=self.damped,
                         seasonal=self.seasonal, seasonal_periods=self.period if self.seasonal else None,
                         initialization_method=initialization)


@dataclass
class SeriesFit:
    """A series' chosen form and its fitted parameters (by statsmodels' names), the first time
    and length of the window it was fitted on, its AICc, why a simpler form was taken, and the
    variance of its one-step errors on the fitted window (σ², statsmodels' ``scale``)."""

    form: ETSForm
    params: dict[str, float]
    start: str
    points: int
    aicc: float | None = None
    note: str | None = None
    scale: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "form": asdict(self.form)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesFit:
        return cls(**{**data, "form": ETSForm(**data["form"])})


# --------------------------------------------------------------------- choosing forms


def candidate_forms(config: ETSConfig, values: np.ndarray,
                    season: int) -> tuple[list[ETSForm], list[str], np.ndarray]:
    """The forms tried on one series (window ``values``), notes on what was left out, and the
    series the ETS sees (seasonally adjusted where the season is taken out by STL)."""
    notes: list[str] = []
    decompose, seasonals = _seasonal_choices(config, values, season, notes)
    inner = _decomposed(values, season, decompose)[0] if decompose else values
    positive = bool(np.all(inner > 0))
    forms = []
    for error in ["add"] + (["mul"] if positive else []):
        for trend, damped in _trend_choices(config):
            for seasonal in seasonals:
                if seasonal == "mul" and error == "add":
                    continue  # unstable (Hyndman et al. 2008 §15.1): R's ets leaves it out too
                period = season if seasonal or decompose else 1
                form = ETSForm(error, trend, damped, seasonal, period, decompose)
                if len(inner) > form.parameters() + 4:  # AICc needs n > k + 1; R's ets asks k + 4
                    forms.append(form)
    return forms, notes, inner


def _trend_choices(config: ETSConfig) -> list[tuple[str | None, bool]]:
    choices: dict[str, list[tuple[str | None, bool]]] = {
        "auto": [(None, False), ("add", False), ("add", True)], "none": [(None, False)],
        "additive": [("add", False)], "damped": [("add", True)]}
    return choices[config.trend]


def _seasonal_choices(config: ETSConfig, values: np.ndarray, season: int,
                      notes: list[str]) -> tuple[str | None, list[str | None]]:
    """(decompose, seasonal forms of the ETS) for this series."""
    wanted = config.seasonal
    if wanted == "none" or season <= 1:
        return None, [None]
    positive = bool(np.all(values > 0))
    if wanted == "multiplicative" and not positive:
        notes.append("multiplicative seasonality needs values > 0: additive instead")
        wanted = "additive"
    if len(values) < 2 * season + 10:
        notes.append(f"shorter than two seasons and 10 steps ({2 * season + 10}): no seasonal component")
        return None, [None]
    if season > LONG_SEASON:
        return ("stl_log" if wanted == "multiplicative" else "stl"), [None]
    choices: dict[str, list[str | None]] = {"auto": [None, "add"] + (["mul"] if positive else []),
                                            "additive": ["add"], "multiplicative": ["mul"]}
    return None, choices[wanted]


def _decomposed(values: np.ndarray, season: int, decompose: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(seasonally adjusted series, seasonal component), by robust STL; on logs for stl_log.
    STL is a filter with no fitted parameters, so running it on another history is no refit."""
    _, stl = statsmodels_ets()
    series = np.log(values) if decompose == "stl_log" else values
    seasonal = np.asarray(stl(series, period=season, robust=True).fit().seasonal, dtype="float64")
    return series - seasonal, seasonal


# --------------------------------------------------------------------- one series


def fit_series(config: ETSConfig, values: np.ndarray, start: pd.Timestamp, season: int) -> SeriesFit:
    """The lowest-AICc form of one series (its latest ``max_points`` steps ``values``)."""
    if np.ptp(values) == 0:
        return _naive_fit(values, start, "constant series: its value is repeated")
    forms, notes, inner = candidate_forms(config, values, season)
    best: tuple[float, ETSForm, Any] | None = None
    for form in forms:
        try:
            with warnings.catch_warnings():  # convergence chatter; a bad fit shows in its AICc
                warnings.simplefilter("ignore")
                result = form.model(inner, "estimated").fit(disp=False)
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
            continue
        aicc = float(result.aicc)
        if np.isfinite(aicc) and np.all(np.isfinite(result.params)) and (best is None or aicc < best[0]):
            best = (aicc, form, result)
    if best is None:
        why = "no ETS form could be fitted" + (f" ({'; '.join(notes)})" if notes else "")
        return _naive_fit(values, start, f"{why}: the last value is repeated")
    aicc, form, result = best
    params = dict(zip(result.model.param_names, map(float, result.params), strict=True))
    return SeriesFit(form, params, str(start), len(values), aicc, "; ".join(notes) or None, float(result.scale))


def _naive_fit(values: np.ndarray, start: pd.Timestamp, note: str) -> SeriesFit:
    return SeriesFit(ETSForm(NAIVE), {"sigma": residual_sigma(values, 1)}, str(start), len(values), None, note)


def forecast_series(fit: SeriesFit, values: np.ndarray, same_window: bool, horizon: int, coverage: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper), each (horizon,), from the fitted parameters, never re-optimised.

    On the window the fit saw (``same_window``) the estimated initial states apply; on another
    window (recent history sent to the service) the initial states come from the heuristic of
    Hyndman et al. (2008, §2.6.1) on that window, the fitted smoothing parameters smooth it, and
    the interval keeps the fitted σ: statsmodels would take σ² from the new window's residuals,
    which on a short window is noise (200 half-hours: 27% coverage of an 80% interval).
    """
    form = fit.form
    if form.error == NAIVE:
        width = normal_quantile(coverage) * fit.params["sigma"] * np.sqrt(np.arange(1, horizon + 1))
        mean = np.full(horizon, values[-1])
        return mean, mean - width, mean + width
    inner, seasonal = _decomposed(values, form.period, form.decompose) if form.decompose else (values, None)
    model = form.model(inner, "estimated" if same_window else "heuristic")
    result = model.smooth(np.array([fit.params[name] for name in model.param_names]))
    frame = result.get_prediction(start=len(inner), end=len(inner) + horizon - 1,
                                  rng=np.random.default_rng(seed)) \
        .summary_frame(alpha=1 - coverage)
    bounds = [frame[c].to_numpy(dtype="float64") for c in ("mean", "pi_lower", "pi_upper")]
    if not same_window and fit.scale and result.scale > 0:  # the fitted σ: widths scale with it
        ratio = float(np.sqrt(fit.scale / result.scale))  # exact for additive errors, close for multiplicative
        bounds = [bounds[0], bounds[0] - ratio * (bounds[0] - bounds[1]), bounds[0] + ratio * (bounds[2] - bounds[0])]
    if seasonal is not None:  # the seasonal component's last season, repeated (seasonal naive)
        again = seasonal[len(seasonal) - form.period + np.arange(horizon) % form.period]
        bounds = [b + again for b in bounds]
        if form.decompose == "stl_log":
            bounds = [np.exp(b) for b in bounds]
    return bounds[0], bounds[1], bounds[2]


def heuristic_steps(form: ETSForm) -> int:
    """Steps the heuristic initial states (statsmodels) and STL need on a new window."""
    if form.error == NAIVE:
        return 1
    if form.seasonal:
        return max(10 + 2 * (form.period // 2), 2 * form.period)
    return max(10, 2 * form.period)  # STL, where it takes the season out, needs two of them


# --------------------------------------------------------------------- the model type


class ETS(Forecaster):
    """One ETS per series, on its latest ``model.max_points`` steps; form by AICc (see module).

    A forecast of another history than the fitted one (a backtest's own cut, the service's
    recent history) reuses the fitted parameters: the model is built on the new window and
    ``smooth(params)`` runs it, with no optimisation. Covariates are not used.
    """

    kind = "ets"

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__(config)
        self.season_: int | None = None
        self.fits_: dict[str, SeriesFit] = {}

    @property
    def settings(self) -> ETSConfig:
        model = self.config.model
        if not isinstance(model, ETSConfig):
            raise ModelError(f"the ets forecaster was given a model.type {model.type!r} config")
        return model

    def fit(self, train: Panel, context: FitContext) -> Self:
        statsmodels_ets()
        self.season_ = train.season
        self.fits_ = {}
        for key, rows in train.series():
            window = rows.tail(self.settings.max_points)
            self.fits_[key] = fit_series(self.settings, window[VALUE].to_numpy(dtype="float64"),
                                         window[TIME].iloc[0], train.season)
        return self

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        """The horizon after each series' last step (``future`` is not read: no covariates)."""
        self._fitted()
        frames = []
        for key, rows in history.series():
            fit = self._fit_of(key)
            window = rows.tail(self.settings.max_points)
            values = window[VALUE].to_numpy(dtype="float64")
            same = str(window[TIME].iloc[0]) == fit.start
            target = self.config.series.target
            if not same and len(values) < heuristic_steps(fit.form):
                raise DataError(f"series {key!r} sends {len(values)} steps; its {fit.form.name} needs at least "
                                f"{heuristic_steps(fit.form)}. Fix: send more recent history", column=target)
            multiplicative = "mul" in (fit.form.error, fit.form.trend, fit.form.seasonal) or \
                fit.form.decompose == "stl_log"
            if multiplicative and (values <= 0).any():
                raise DataError(f"series {key!r}: its model, {fit.form.name}, is multiplicative and the history "
                                "holds values ≤ 0. Fix: send the recent positive values, or retrain with "
                                "model.seasonal additive", column=target)
            mean, lower, upper = forecast_series(fit, values, same, self.horizon, self.interval,
                                                 self.config.training.seed)
            times = future_steps(rows[TIME].iloc[-1], history.frequency, self.horizon)
            frames.append(forecast_frame(key, times, mean, lower, upper))
        return stack_forecasts(frames)

    def _fitted(self) -> int:
        if self.season_ is None:
            raise ModelError("ets is not fitted yet. Fix: call fit(train) before forecast or state")
        return self.season_

    def _fit_of(self, key: str) -> SeriesFit:
        try:
            return self.fits_[key]
        except KeyError:
            shown = ", ".join(repr(k) for k in list(self.fits_)[:5])
            raise DataError(f"series {key!r} was not in the data the ets model was fitted on (one model per series; "
                            f"fitted: {shown}{' …' if len(self.fits_) > 5 else ''}). Fix: refit with this series, or "
                            "use a global model type (gbdt, deep)") from None

    def needed_history(self) -> int:
        self._fitted()
        return max([heuristic_steps(fit.form) for fit in self.fits_.values()], default=1)

    def history_to_keep(self) -> int:
        # the fitted window of every series: from its first step, smooth(params) replays the fit exactly
        return max(self.needed_history(), self.settings.max_points)

    def state(self) -> ForecasterState:
        return ForecasterState(json={"season": self._fitted(),
                                     "series": {key: fit.to_json() for key, fit in self.fits_.items()}})

    @classmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        made = cls(config)
        try:
            made.season_ = int(state.json["season"])
            made.fits_ = {str(k): SeriesFit.from_json(v) for k, v in state.json["series"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the saved ets state is malformed ({exc!r}). Fix: refit and save the bundle again") \
                from None
        return made

    def describe(self) -> dict[str, Any]:
        forms: dict[str, int] = {}
        for fit in self.fits_.values():
            forms[fit.form.name] = forms.get(fit.form.name, 0) + 1
        shown = list(self.fits_.items())[:50]  # the report shows a sample; the forms count them all
        return {"season": self.season_, "forms": forms,
                "series": {key: {"form": fit.form.name, "aicc": fit.aicc, "points": fit.points,
                                 **({"note": fit.note} if fit.note else {})} for key, fit in shown}}


FORECASTERS.add("ets", ETS, config=ETSConfig)
