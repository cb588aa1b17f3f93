"""`task: recommend` through the CLI in real subprocesses: train, predict, evaluate and
`recommend refresh` end to end on a tiny CSV, and the bad inputs that end in one clear message
(exit 2) with nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.e2e.test_cli import cli, expect_user_error, nothing_written
from tests.recommending.test_pipeline import config, known_of, later, table


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recommend")
    table().to_csv(folder / "interactions.csv", index=False)
    (folder / "shop.yaml").write_text(yaml.safe_dump(config()))
    done = cli("train", "shop.yaml", cwd=folder)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert "test metrics (each user's latest interactions held out" in flat and "ndcg@10" in flat
    return folder


def test_train_writes_a_recommend_bundle(trained: Path) -> None:
    bundle = trained / "runs" / "shop" / "latest" / "bundle"
    assert yaml.safe_load((bundle / "config.yaml").read_text())["task"] == "recommend"
    assert (bundle / "known_items.safetensors").is_file() and (bundle / "report.html").is_file()


def test_predict_writes_top_k_lists_without_known_items(trained: Path) -> None:
    pd.DataFrame({"uid": ["u0", "u5", "u0", "stranger"]}).to_csv(trained / "users.csv", index=False)
    done = cli("predict", "runs/shop/latest", "users.csv", "-o", "lists.csv", cwd=trained)
    assert done.returncode == 0, done.stderr
    assert "wrote 15 recommendations to lists.csv" in " ".join(done.stderr.split())
    lists = pd.read_csv(trained / "lists.csv", dtype={"uid": str, "iid": str})
    assert list(lists.columns) == ["uid", "rank", "iid", "score", "known_user", "fallback"]
    assert lists["uid"].unique().tolist() == ["u0", "u5", "stranger"]
    assert lists.groupby("uid")["fallback"].first().fillna("").to_dict() == {"u0": "", "u5": "", "stranger": "popular"}
    for user in ("u0", "u5"):
        assert not known_of(table(), user) & set(lists.loc[lists["uid"] == user, "iid"])


def test_evaluate_and_refresh(trained: Path) -> None:
    later(table()).to_csv(trained / "later.csv", index=False)
    done = cli("evaluate", "runs/shop/latest", "later.csv", "-o", "evaluation", cwd=trained)
    assert done.returncode == 0, done.stderr
    assert json.loads((trained / "evaluation" / "metrics.json").read_text())["test_users"] == 11
    again = cli("evaluate", "runs/shop/latest", "interactions.csv", "-o", "on-training", cwd=trained)
    expect_user_error(again, "every held-out interaction", "already known to the bundle",
                      "Fix: evaluate on interactions newer than the training data")
    pd.DataFrame({"uid": ["u0", "newcomer"], "iid": [29, 0], "stars": [5, 5], "when": [1, 2]}).to_csv(
        trained / "new.csv", index=False)
    done = cli("recommend", "refresh", "runs/shop/latest", "new.csv", "-o", "refreshed", cwd=trained)
    assert done.returncode == 0, done.stderr
    assert "bundle:" in done.stdout and (trained / "refreshed" / "manifest.json").is_file()
    again = cli("recommend", "refresh", "runs/shop/latest", "new.csv", "-o", "refreshed", cwd=trained)
    expect_user_error(again, "already holds a bundle", "never overwritten")
    users = pd.DataFrame({"uid": ["newcomer"]})
    users.to_csv(trained / "newcomer.csv", index=False)
    done = cli("predict", "refreshed", "newcomer.csv", "-o", "newcomer-lists.csv", cwd=trained)
    assert done.returncode == 0, done.stderr
    assert "0" not in set(pd.read_csv(trained / "newcomer-lists.csv", dtype={"iid": str})["iid"])


@pytest.mark.parametrize("change,fragments", [
    ("no item column", ["column(s) 'iid' not found", "Fix:"]),
    ("all items unknown", ["none of the 2 interaction(s) is with an item the model knows", "Fix:"]),
    ("output under a file", ["is a file, not a folder", "Fix:"]),
])
def test_refresh_bad_input_ends_in_one_message_and_writes_nothing(trained: Path, tmp_path: Path, change: str,
                                                                   fragments: list[str]) -> None:
    new = pd.DataFrame({"uid": ["u0", "newcomer"], "iid": [29, 0], "stars": [5, 5], "when": [1, 2]})
    output = tmp_path / "refreshed"
    if change == "no item column":
        new = new.rename(columns={"iid": "product"})
    elif change == "all items unknown":
        new = new.assign(iid=[1000, 1001])
    else:
        (tmp_path / "a-file").write_text("x")
        output = tmp_path / "a-file" / "refreshed"
    new.to_csv(tmp_path / "new.csv", index=False)
    done = cli("recommend", "refresh", str(trained / "runs" / "shop" / "latest"), "new.csv", "-o", str(output),
               cwd=tmp_path)
    expect_user_error(done, *fragments)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == (["a-file", "new.csv"] if change == "output under a file" else ["new.csv"])


def test_refresh_refuses_a_folder_that_is_no_bundle(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("uid,iid\nu0,1\n")
    done = cli("recommend", "refresh", str(tmp_path), "x.csv", "-o", "out", cwd=tmp_path)
    expect_user_error(done, "is not a modelmill bundle")


@pytest.mark.parametrize("change,fragments", [
    ("no user column", ["column(s) 'uid' not found", "the table has: user, iid, stars, when", "Fix:"]),
    ("one user", ["the interactions hold one user only ('u0')", "Fix:"]),
    ("duplicates refused", ["rows repeat a (user, item) pair", "interactions.duplicates: sum"]),
])
def test_bad_interactions_end_in_one_message(tmp_path: Path, change: str, fragments: list[str]) -> None:
    frame, raw = table(), config()
    if change == "no user column":
        frame = frame.rename(columns={"uid": "user"})
    elif change == "one user":
        frame = frame.assign(uid="u0").drop_duplicates(["uid", "iid"])
    else:
        raw["interactions"]["duplicates"] = "refuse"
        frame = pd.concat([frame, frame[frame["stars"] >= 4].iloc[[0]]])
    frame.to_csv(tmp_path / "interactions.csv", index=False)
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(raw))
    expect_user_error(cli("train", "shop.yaml", cwd=tmp_path), *fragments)
    assert nothing_written(tmp_path)
