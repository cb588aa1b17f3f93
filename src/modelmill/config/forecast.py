"""The config of ``task: forecast``: series in a table (a time column, an optional series-id
column, the target, known-future and static covariates), forecast ``horizon`` steps ahead,
judged by rolling-origin backtesting.

    task: forecast
    name: electricity
    data: {source: dataset:elecdemand}
    series: {time: time, target: Demand, horizon: 48, future: [Temperature, WorkDay]}

Each default is written once, here; ``modelmill render-config`` shows them all.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from modelmill.config.models import GBDTModelConfig
from modelmill.config.schema import NAME_PATTERN, DataConfig, EvaluationConfig, SplitConfig, TrainingConfig
from modelmill.config.section import Section
from modelmill.config.tracking import TrackingConfig
from modelmill.config.serving import ServingConfig

# The columns of the long frame every forecasting stage works on (the user's names are
# mapped onto them when the data is read, and back on every output).
SERIES_ID, TIME, VALUE = "unique_id", "ds", "y"
RESERVED = frozenset({SERIES_ID, TIME, VALUE})


class ForecastDataConfig(DataConfig):
    """Where the series come from and how they are read (as for task: predict, without a split)."""

    # narrower than DataConfig's on purpose: a forecast config may not hold a split at all
    split: SplitConfig | None = Field(None, exclude=True, description="Not for forecasts: they are judged by "
                                      "rolling-origin backtesting (see backtest).")  # type: ignore[assignment]

    shards: bool = Field(False, exclude=True, description="Not for task: forecast: its series are read on one "
                         "machine.")

    @field_validator("shards")
    @classmethod
    def _no_shards(cls, shards: bool) -> bool:
        if shards:
            raise ValueError("task: forecast reads its table on one machine: data.shards is for task: predict. "
                             "Fix: remove data.shards")
        return shards

    @field_validator("split")
    @classmethod
    def _no_split(cls, split: SplitConfig | None) -> None:
        if split is not None:
            raise ValueError("a forecast is judged by rolling-origin backtesting, never on a split of rows. Fix: "
                             "remove data.split and set backtest.cutoffs / backtest.step")


class SeriesConfig(Section):
    """Which columns hold the series, and what to forecast."""

    time: str = Field(description="The time column: timestamps, dates, months (2019 Jan, 2019-01), quarters "
                      "(2019 Q3) or ISO weeks (2019 W07).")
    target: str = Field(description="The column to forecast (numbers).")
    id: str | None = Field(None, description="The series-id column, when the table holds many series (one row "
                           "per series and time step); none: the whole table is one series.")
    horizon: int = Field(ge=1, le=10_000, description="Steps forecast ahead from the last observed time.")
    frequency: str = Field("auto", description="Step between rows as a pandas offset alias (30min, h, D, W-MON, "
                           "MS, QS-JAN, …); auto: inferred from the time column.")
    season_length: int | Literal["auto"] = Field(
        "auto", description="Steps in one season, for seasonal models and for MASE's seasonal-naive scale; auto: "
        "from the frequency (48 for half-hours, 24 hourly, 7 daily, 52 weekly, 12 monthly, 4 quarterly, 1 yearly).")
    future: list[str] = Field(default_factory=list, description="Known-future covariates (prices, holidays, "
                              "temperature forecasts): numbers known for every step of the horizon; a forecast "
                              "needs their values for the steps it forecasts.")
    static: list[str] = Field(default_factory=list, description="Static covariates: numbers constant within a "
                              "series (store size, region code as a number).")
    time_format: str | None = Field(None, description="strftime format of the time column (default: inferred).")
    keep: int = Field(1000, ge=1, le=1_000_000, description="Latest steps of each series kept in the bundle, so "
                      "that a forecast can name a series id instead of sending its history (bundle size: about "
                      "keep × series × (1 + covariates) numbers).")

    @model_validator(mode="after")
    def _columns_distinct(self) -> SeriesConfig:
        named = [("time", self.time), ("target", self.target)] + ([("id", self.id)] if self.id else [])
        named += [(f"future[{i}]", c) for i, c in enumerate(self.future)]
        named += [(f"static[{i}]", c) for i, c in enumerate(self.static)]
        seen: dict[str, str] = {}
        for role, column in named:
            if column in RESERVED and role.startswith(("future", "static")):
                raise ValueError(f"{role}: a covariate cannot be named {column!r} ({', '.join(sorted(RESERVED))} "
                                 "name the time, series and target inside). Fix: rename the column in the data")
            if column in seen:
                raise ValueError(f"{role}: column {column!r} is already the {seen[column]} column; each column "
                                 "has one role")
            seen[column] = role
        return self


class WindowFeaturesConfig(Section):
    """What the learned models (gbdt, deep) see of the past at each forecast origin: every value
    is from the origin or before it, never after."""

    lags: list[int] | Literal["auto"] = Field(
        "auto", description="Past values used, as steps before the origin (1 = the last observed value); auto: the "
        "last season and a half, plus the same steps one and two seasons back, capped at 1,000.")
    windows: list[int] | Literal["auto"] = Field(
        "auto", description="Rolling means (and standard deviations) over this many steps up to the origin; auto: "
        "one and four seasons (at least the horizon).")
    calendar: bool = Field(True, description="Calendar parts of each forecast step (hour, day of week, month, …, "
                           "those that vary at the frequency), as sine and cosine.")

    @model_validator(mode="after")
    def _positive(self) -> WindowFeaturesConfig:
        for name in ("lags", "windows"):
            values = getattr(self, name)
            if isinstance(values, list):
                if not values:
                    raise ValueError(f"{name}: an empty list; Fix: give steps ≥ 1, or auto")
                bad = [v for v in values if v < 1]
                if bad:
                    raise ValueError(f"{name}: steps must be ≥ 1, got {bad}")
        return self


class SeasonalNaiveConfig(Section):
    """Each step repeats the value one season earlier: the floor every forecast must beat."""

    type: Literal["seasonal_naive"] = "seasonal_naive"


class ETSConfig(Section):
    """Exponential smoothing (state-space ETS, statsmodels), one model per series; `auto` choices are
    made by AICc, as AutoETS does."""

    type: Literal["ets"] = "ets"
    trend: Literal["auto", "none", "additive", "damped"] = Field("auto", description="Trend component.")
    seasonal: Literal["auto", "none", "additive", "multiplicative"] = Field(
        "auto", description="Seasonal component (multiplicative needs positive values).")
    max_points: int = Field(5000, ge=10, description="Latest steps of each series the model is fitted on "
                            "(long half-hourly series make state-space fits slow, and old steps add little).")


class LagGBDTConfig(GBDTModelConfig):
    """Gradient-boosted trees (LightGBM, extra `trees`) on the window features of every series
    together: one model for all forecast steps, the step ahead being one of its inputs; quantile
    trees give the interval."""


class DeepForecastConfig(Section):
    """A global deep model trained on all series together (N-BEATS-style fully connected blocks on
    the scaled recent window, plus the covariates and calendar of the forecast steps), forecasting
    the whole horizon at once as quantiles (the interval's bounds and the median), through the
    shared trainer (training: epochs, optimiser, early stopping)."""

    type: Literal["deep"] = "deep"
    context: int | Literal["auto"] = Field(
        "auto", description="Past steps the model reads; auto: the window features' longest lag.")
    hidden: list[int] = Field(default_factory=lambda: [512, 512], description="Hidden layer sizes.")
    dropout: float = Field(0.1, ge=0, lt=1)


CandidateType = Literal["seasonal_naive", "ets", "gbdt", "deep"]
_CANDIDATES: tuple[CandidateType, ...] = ("seasonal_naive", "ets", "gbdt", "deep")


class AutoForecastConfig(Section):
    """Every candidate is scored by its mean MASE on the latest three horizons before the forecast
    origin, each fitted on the steps before it; all are refitted on every step and forecast as
    their mean weighted by 1 / MASE², its interval scaled so that each of those held-out horizons
    would have had at least `backtest.interval` of its values inside."""

    type: Literal["auto"] = "auto"
    candidates: list[CandidateType] = Field(
        default_factory=lambda: list(_CANDIDATES),
        description="The model types tried (gbdt only where LightGBM is installed).", min_length=1)


ForecastModelConfig = Annotated[
    SeasonalNaiveConfig | ETSConfig | LagGBDTConfig | DeepForecastConfig | AutoForecastConfig,
    Field(discriminator="type"),
]


class BacktestConfig(Section):
    """Rolling-origin evaluation: at each cut-off the model is fitted on the steps before it alone
    and forecasts the horizon after it."""

    cutoffs: int = Field(3, ge=1, le=100, description="Forecast origins, the latest one horizon before the end.")
    step: int | None = Field(None, ge=1, description="Steps between cut-offs (default: the horizon).")
    interval: float = Field(0.8, gt=0, lt=1, description="Coverage of the prediction intervals (0.8: the 10% "
                            "and 90% quantiles).")


class ForecastConfig(Section):
    """``task: forecast``: one or many series, forecast ``series.horizon`` steps ahead."""

    task: Literal["forecast"] = "forecast"
    name: str = Field(pattern=NAME_PATTERN, description="Name of the runs.")
    data: ForecastDataConfig
    series: SeriesConfig
    features: WindowFeaturesConfig = Field(default_factory=WindowFeaturesConfig)
    model: ForecastModelConfig = Field(default_factory=AutoForecastConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("features", mode="before")
    @classmethod
    def _window_settings(cls, features: object) -> object:
        if isinstance(features, list):
            raise ValueError("a forecast's features are window settings (lags, windows, calendar), not a list of "
                             "columns. Fix: name the columns under series (target, future, static)")
        return features
