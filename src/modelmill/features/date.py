"""Date features: calendar parts, periodic ones as sine/cosine (so December sits next to
January), the year standardised."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import DateFeatureConfig
from modelmill.errors import DataError
from modelmill.data.times import read_dates
from modelmill.features.base import FEATURES, Feature, FitReport, RawColumn
from modelmill.features.category import plain_strings
from modelmill.features.partials import Partial, Sketch, expect
from modelmill.features.request import date_type
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult, distribution_drift, distribution_profile

# Period of each cyclical part; "year" is not periodic and is standardised instead.
PERIODS: dict[str, float] = {
    "month": 12, "day": 31, "weekday": 7, "hour": 24, "minute": 60, "dayofyear": 366,
}


def date_parts(dates: pd.Series, part: str) -> np.ndarray:
    attribute = {"weekday": "day_of_week", "dayofyear": "day_of_year"}.get(part, part)
    values = getattr(dates.dt, attribute)
    return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan))


def epoch_days(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 as float64, NaN for missing dates."""
    nanoseconds = dates.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
    nanoseconds[dates.isna().to_numpy()] = np.nan
    return nanoseconds / 86_400e9


@dataclass(frozen=True)
class DatePartial(Partial):
    """A shard of a date column: the sketch of its present dates (nanoseconds since 1970, so
    the median date is an order statistic of it) and of their years."""

    dates: Sketch
    years: Sketch

    def merge(self, other: DatePartial) -> DatePartial:
        return DatePartial(self.dates.merge(other.dates), self.years.merge(other.years))


@FEATURES.register("date", config=DateFeatureConfig)
class DateFeature(Feature[DateFeatureConfig]):
    raw_kind = "parts"

    def validate(self, column: pd.Series) -> None:
        read_dates(column, self.config.format, feature=self.name)

    def fit(self, column: pd.Series) -> Self:
        dates = read_dates(column, self.config.format, feature=self.name)
        present = dates.dropna()
        if present.empty:
            raise DataError("has no dates in the training split", column=self.name)
        self.fill_ = str(present.sort_values().iloc[len(present) // 2])  # the median date
        years = present.dt.year.to_numpy(dtype="float64")
        self.year_center_ = float(years.mean())
        self.year_scale_ = float(years.std()) or 1.0
        self.fitted_ = True
        return self

    def partial(self, column: pd.Series, rows: np.ndarray) -> DatePartial:
        present = read_dates(column, self.config.format, feature=self.name).dropna()
        nanoseconds = present.to_numpy(dtype="datetime64[ns]").astype("int64")
        return DatePartial(Sketch.of(nanoseconds), Sketch.of(present.dt.year.to_numpy(dtype="float64")))

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged sketches: the median date, the years' mean and spread."""
        merged = expect(partial, DatePartial, self.name)
        n = merged.dates.n
        if n == 0:
            raise DataError("has no dates in the training split", column=self.name)
        middle = merged.dates.order_statistic(np.array([n // 2]))[0]
        self.fill_ = str(pd.Timestamp(int(middle), unit="ns"))
        years = merged.years.moments()
        self.year_center_ = years.mean
        self.year_scale_ = years.std or 1.0
        self.fitted_ = True
        return self

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        dates = read_dates(column, self.config.format, feature=self.name)
        missing = dates.isna().to_numpy()
        dates = dates.fillna(pd.Timestamp(self.fill_))
        columns: list[np.ndarray] = []
        for part in self.config.parts:
            values = date_parts(dates, part)
            if part == "year":
                columns.append((values - self.year_center_) / self.year_scale_)
            elif self.config.cyclical:
                angle = 2 * np.pi * values / PERIODS[part]
                columns += [np.sin(angle), np.cos(angle)]
            else:
                columns.append(values / PERIODS[part])
        if self.config.missing.indicator:
            columns.append(missing.astype("float64"))
        return torch.from_numpy(np.stack(columns, axis=1).astype("float32"))  # (rows, output_dim)

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        # A short column of strings is parsed from the same stripped strings whatever dtype
        # pandas gives it, so the column path on an object column is exact.
        if plain_strings(values) is None:
            return None
        return self.transform(pd.Series(values, dtype=object))

    def encoder(self) -> nn.Module:
        return nn.Identity()

    def raw_columns(self) -> list[RawColumn]:
        return [RawColumn(f"{self.name}.{part}", "number") for part in self.config.parts]

    def raw_view(self, column: pd.Series) -> torch.Tensor:
        dates = read_dates(column, self.config.format, feature=self.name)
        return torch.from_numpy(np.stack([date_parts(dates, part) for part in self.config.parts], axis=1))

    def fast_raw_view(self, values: list[Any]) -> torch.Tensor | None:
        if plain_strings(values) is None:  # as in fast_transform: the column path on an object column is exact
            return None
        return self.raw_view(pd.Series(values, dtype=object))

    @property
    def output_dim(self) -> int:
        width = sum(1 if part == "year" or not self.config.cyclical else 2 for part in self.config.parts)
        return width + (1 if self.config.missing.indicator else 0)

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"fill": self.fill_, "year_center": self.year_center_, "year_scale": self.year_scale_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.fill_ = state["fill"]
        self.year_center_, self.year_scale_ = state["year_center"], state["year_scale"]

    def report(self) -> FitReport:
        return FitReport({"filled_with": self.fill_})

    def request_type(self, *, strict_values: bool) -> Any:
        return date_type()

    def example(self, profile: dict[str, Any]) -> Any:
        return "2024-01-31T12:00:00"

    def profile(self, column: pd.Series) -> dict[str, Any]:
        dates = read_dates(column, self.config.format, feature=self.name)
        present = dates.dropna()
        return {"type": "date", **distribution_profile(epoch_days(dates)),  # in days since 1970
                "first": str(present.min()) if len(present) else None,
                "last": str(present.max()) if len(present) else None,
                "parts": {part: distribution_profile(date_parts(dates, part)) for part in self.config.parts}}

    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        """Drift of what the model sees: each configured part (month, weekday, …) against its
        training distribution, the part that moved most reported (all of them in the
        details). Only the year can leave the training range, and then the model
        extrapolates: an alarm; a date column read without its year does not alarm because
        time moved on. A profile from before bundles kept the parts compares whole dates."""
        dates = read_dates(column, self.config.format, feature=self.name)
        present = dates.dropna()
        first = str(present.min()) if len(present) else None
        last = str(present.max()) if len(present) else None
        parts = {part: profile for part, profile in (reference.get("parts") or {}).items()
                 if part in self.config.parts}
        if not parts:
            return distribution_drift(self.name, reference, epoch_days(dates), thresholds, range_alarm=False,
                                      first=first, last=last)
        shared = thresholds.model_copy(update={"alpha": thresholds.alpha / len(parts)})  # one test per part
        results = {part: distribution_drift(self.name, profile, date_parts(dates, part), shared,
                                            range_alarm=part == "year") for part, profile in parts.items()}
        moved, most = max(results.items(), key=lambda item: item[1].score)
        alarms = tuple(dict.fromkeys(alarm for result in results.values() for alarm in result.alarms))
        return replace(most, drifted=bool(alarms), alarms=alarms, details={
            **most.details, "first": first, "last": last, "part": moved,
            "parts": {part: {"statistic": r.statistic, "value": r.value, "p_value": r.p_value, "score": r.score,
                             "alarms": list(r.alarms)} for part, r in results.items()}})
