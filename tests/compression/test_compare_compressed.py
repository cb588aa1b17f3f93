"""modelmill compare --compress: each trained variant compressed too, judged on the same
test split, one row per compression."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modelmill.bundle import read_bundle
from modelmill.compare import compare, table_rows, variant_configs
from modelmill.config.io import parse_config
from tests.conftest import base_config, make_frame


def test_compressed_variants_get_rows_of_their_own(tmp_path: Path) -> None:
    make_frame(rows=500, seed=3).to_csv(tmp_path / "data.csv", index=False)
    config = parse_config(base_config(training={"epochs": 4, "batch_size": 64, "progress": False, "seed": 0}),
                          origin="test")
    rows = compare(config, variant_configs(config, ["mlp"]), tmp_path / "out", base_dir=tmp_path,
                   compress=["bfloat16", "prune"])
    assert [row["variant"] for row in rows] == ["mlp", "mlp+bfloat16", "mlp+prune"]
    trained, half, pruned = rows
    assert "error" not in half and "refused" not in half, half
    assert abs(half["metrics"]["roc_auc"] - trained["metrics"]["roc_auc"]) <= 0.005  # the gate's default
    assert read_bundle(half["bundle"]).lineage.parent == read_bundle(trained["bundle"]).digest
    # half the neurons of a small net: kept within the gate, or refused with its figures; never an error
    assert "error" not in pruned and ("refused" in pruned or pruned["metrics"]["roc_auc"] > 0)
    headings, cells = table_rows("binary", rows)
    assert cells[1][0] == "mlp+bfloat16" and cells[1][headings.index("trained weights")] == ""
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert table["variant"].tolist() == ["mlp", "mlp+bfloat16", "mlp+prune"]
