"""Time columns in the forms people write them: read by ``parse_times`` (init, forecasting) and
``read_dates`` (the date feature), recognised by schema inference, laid out in series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelmill.data.schema import infer_column, infer_schema
from modelmill.data.time_layout import find_time_layout, infer_step, series_columns
from modelmill.data.times import parse_times, read_dates, season_for
from modelmill.errors import DataError

ROWS = 40
MONTHS = pd.date_range("2019-01-01", periods=ROWS, freq="MS")
QUARTERS = pd.date_range("2010-01-01", periods=ROWS, freq="QS")
WEEKS = pd.date_range("2019-01-07", periods=ROWS, freq="W-MON")
DAYS = pd.date_range("2020-01-01", periods=ROWS, freq="D")
HOURS = pd.date_range("2020-01-01", periods=ROWS, freq="h")

# (values as written, form, the times they stand for)
FORMS = {
    "timestamp": ([str(t) for t in HOURS], "timestamp", HOURS),
    "iso timestamp": ([t.isoformat() for t in HOURS], "timestamp", HOURS),
    "date": ([str(t.date()) for t in DAYS], "date", DAYS),
    "day-first date": ([t.strftime("%d/%m/%Y") for t in DAYS], "date", DAYS),
    "2019 Jan": ([t.strftime("%Y %b") for t in MONTHS], "month", MONTHS),
    "Jan 2019": ([t.strftime("%b %Y") for t in MONTHS], "month", MONTHS),
    "2019 January": ([t.strftime("%Y %B") for t in MONTHS], "month", MONTHS),
    "2019-01": ([t.strftime("%Y-%m") for t in MONTHS], "month", MONTHS),
    "2019 Q3": ([f"{t.year} Q{t.quarter}" for t in QUARTERS], "quarter", QUARTERS),
    "2019Q3": ([f"{t.year}Q{t.quarter}" for t in QUARTERS], "quarter", QUARTERS),
    "Q3 2019": ([f"Q{t.quarter} {t.year}" for t in QUARTERS], "quarter", QUARTERS),
    "2019 W07": ([t.strftime("%G W%V") for t in WEEKS], "week", WEEKS),
    "2019-W07": ([t.strftime("%G-W%V") for t in WEEKS], "week", WEEKS),
}


@pytest.mark.parametrize("written", FORMS, ids=str)
def test_each_form_parses_as_the_start_of_its_period(written: str) -> None:
    values, form, expected = FORMS[written]
    parsed = parse_times(pd.Series(values))
    assert parsed is not None
    assert parsed.form == form
    assert list(parsed.values) == list(expected)
    assert parsed.unparsed == ()


@pytest.mark.parametrize("written", FORMS, ids=str)
def test_schema_inference_calls_each_form_a_date(written: str) -> None:
    info = infer_column(pd.Series(FORMS[written][0]), "when")
    assert info.kind == "date", info.reason


@pytest.mark.parametrize("written", [w for w in FORMS if w != "day-first date"], ids=str)
def test_the_date_feature_reads_each_form_alone_as_in_a_column(written: str) -> None:
    values, _, expected = FORMS[written]
    whole = read_dates(pd.Series(values, dtype=object), None, feature="when")
    assert list(whole) == list(expected)
    alone = [read_dates(pd.Series([v], dtype=object), None, feature="when").iloc[0] for v in values[:5]]
    assert alone == list(expected[:5])


def test_the_date_feature_reads_forms_mixed_in_one_column() -> None:
    read = read_dates(pd.Series(["2019 Q3", "2019 W07", "2019 Jan", "2019-02", "2019-03-04 05:06", None]),
                      None, feature="when")
    assert list(read[:5]) == [pd.Timestamp(s) for s in
                              ("2019-07-01", "2019-02-11", "2019-01-01", "2019-02-01", "2019-03-04 05:06")]
    assert pd.isna(read.iloc[5])


def test_the_date_feature_names_values_that_are_no_times() -> None:
    with pytest.raises(DataError, match=r"column 'when'.*2 values that are not dates \(e.g. '2019 Q5', 'soon'\)"
                       r".*quarters \(2019 Q3\).*Fix:"):
        read_dates(pd.Series(["2019 Q3", "2019 Q5", "soon"]), None, feature="when")


@pytest.mark.parametrize("values", [
    [str(y) for y in range(1990, 2030)],  # years as text: numbers, too easily a plain number
    ["red", "green", "blue", "Mayday 2019"] * 10,
    ["2019 Mayday", "2019 Junk"] * 20,  # a month's name must be one, not start like one
    ["SKU-2019-A", "SKU-2020-B"] * 20,
])
def test_things_that_are_no_times(values: list[str]) -> None:
    assert infer_column(pd.Series(values), "code").kind != "date"


def test_years_beyond_what_nanoseconds_hold_are_not_times() -> None:
    assert parse_times(pd.Series(["1,234", "2,500", "3,000"] * 5)) is None


def test_numbers_are_not_times_however_they_look() -> None:
    assert parse_times(pd.Series([20200101, 20200102, 20200103])) is None


@pytest.mark.parametrize("frequency,season", [("30min", 48), ("h", 24), ("D", 7), ("W-MON", 52), ("MS", 12),
                                              ("QS", 4), ("QS-OCT", 4), ("YS", 1)])
def test_season_for(frequency: str, season: int) -> None:
    assert season_for(frequency) == season


# ------------------------------------------------------------------------- layout


def panel(rows_per_series: int = 12, shuffle: bool = False) -> pd.DataFrame:
    quarters = pd.date_range("2015-01-01", periods=rows_per_series, freq="QS")
    frame = pd.DataFrame({
        "when": [f"{t.year} Q{t.quarter}" for t in quarters] * 3,
        "state": np.repeat(["north", "south", "west"], rows_per_series),
        "region": np.repeat([1, 2, 3], rows_per_series),
        "sales": np.arange(3 * rows_per_series, dtype="float64") * 1.5,
    })
    return frame.sample(frac=1, random_state=0).reset_index(drop=True) if shuffle else frame


def test_rows_sorted_by_time_are_time_ordered() -> None:
    frame = pd.DataFrame({"at": [str(t) for t in HOURS], "y": np.arange(ROWS) % 7})
    layout = find_time_layout(frame, infer_schema(frame), skip="y")
    assert layout is not None and (layout.time, layout.series_id) == ("at", None)
    assert layout.reason == "the rows are sorted by at"


def test_unique_regular_times_in_any_order_are_one_series() -> None:
    frame = pd.DataFrame({"at": [str(t.date()) for t in DAYS], "y": np.arange(ROWS) % 7}).sample(frac=1, random_state=1)
    layout = find_time_layout(frame, infer_schema(frame), skip="y")
    assert layout is not None and layout.reason == "each at occurs once, at a regular step"


def test_times_unique_within_a_column_are_series_of_it() -> None:
    frame = panel(shuffle=True)
    layout = find_time_layout(frame, infer_schema(frame), skip="sales")
    assert layout is not None and (layout.time, layout.series_id) == ("when", "state")
    assert series_columns(frame, infer_schema(frame), layout.times.values, skip=("sales", "when")) == ["state", "region"]


def test_dates_scattered_at_random_are_not_time_ordered() -> None:
    rng = np.random.default_rng(0)
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, 60), unit="D")
    frame = pd.DataFrame({"joined": dates.strftime("%Y-%m-%d"), "city": rng.choice(["Oslo", "Rome"], 60),
                          "y": rng.normal(size=60)})
    assert find_time_layout(frame, infer_schema(frame), skip="y") is None


def test_the_step_is_the_most_common_over_the_series() -> None:
    frame = panel()
    parsed = parse_times(frame["when"])
    assert parsed is not None
    assert infer_step(parsed.values, frame["state"]) in ("QS-JAN", "QS-OCT", "QS")
    hours = pd.Series(HOURS)
    assert infer_step(hours, None) == "h"
    assert infer_step(hours.drop([3, 9, 20]), None) is None  # gaps: no regular step
