"""Real data with a real shift for the closed loop: adult's people under 35 are the original
data (6,000 rows; the champion, an MLP, is trained on them), its people of 35 and over are
the traffic. The champion extrapolates badly to them (ROC-AUC near 0.7 against 0.91 on its
test split), so a challenger that learns from their labels is clearly better; a copy of the
original data whose training rows have six columns shuffled (an upstream bug) makes a
challenger that is worse on the original test split."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modelmill.api import Pipeline
from modelmill.bundle import read_bundle
from modelmill.data.datasets import fetch_dataset
from modelmill.data.split import SplitRecord

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
          "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country"]
DAMAGED = ["age", "education-num", "marital-status", "relationship", "capital-gain", "hours-per-week"]
ADMIN_TOKEN = "admin-token-of-the-retraining-tests"
FEEDBACK_TOKEN = "feedback-token-of-the-retraining-tests"


@dataclass
class Loop:
    folder: Path  # young.csv, damaged.csv, adult.yaml, damaged.yaml
    models: Path  # 1/: the champion
    traffic: pd.DataFrame  # people of 35 and over, in sending order

    def copy(self, to: Path) -> Loop:
        """A private copy (a test adds versions and logs)."""
        shutil.copytree(self.folder, to / "loop")
        return Loop(to / "loop", to / "loop" / "models", self.traffic)


def write_config(folder: Path, name: str, source: str, **monitoring: object) -> Path:
    config = yaml.safe_load((ROOT / "examples" / "adult" / "adult.yaml").read_text())
    config["data"]["source"] = source
    # shifted traffic brings categories the young never had: the model's unknown bucket takes them
    config.update(model={"type": "mlp"}, training={"progress": False}, serving={"unknown_categories": "accept"},
                  monitoring={"window": 200, "retrain": {"bootstrap": 500, "min_holdout": 100}, **monitoring})
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def adult_loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    folder = tmp_path_factory.mktemp("adult-loop")
    adult = pd.read_csv(fetch_dataset("adult"))
    young = adult[adult["age"] < 35].sample(n=6000, random_state=0).reset_index(drop=True)
    old = adult[adult["age"] >= 35].sample(n=3000, random_state=0).reset_index(drop=True)
    young.to_csv(folder / "young.csv", index=False)
    config = write_config(folder, "adult.yaml", "young.csv")
    Pipeline(config).fit().save(folder / "models" / "1")
    split = read_bundle(folder / "models" / "1").split()
    assert split is not None
    test = set(SplitRecord.from_json(split).test_positions(young))
    rest = np.array([i for i in range(len(young)) if i not in test])
    rng = np.random.default_rng(1)
    damaged = young.copy()
    for column in DAMAGED:  # the training rows only: the test rows must still be found
        damaged.loc[rest, column] = damaged.loc[rng.permutation(rest), column].to_numpy()
    damaged.to_csv(folder / "damaged.csv", index=False)
    write_config(folder, "damaged.yaml", "damaged.csv")
    return Loop(folder, folder / "models", old)
