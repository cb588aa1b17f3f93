"""A run's report explains the model: importance (also on the card), records explained, and
token highlights for a text column."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelmill
from tests.conftest import base_config, make_frame


def test_the_report_and_the_card_carry_the_explanations(tmp_path: Path) -> None:
    config = base_config(training={"epochs": 4, "batch_size": 64, "progress": False, "seed": 0},
                         evaluation={"explain": 3})
    pipeline = modelmill.Pipeline(config).fit(make_frame(rows=400, seed=1))
    assert pipeline.importance_ is not None and set(pipeline.importance_) == {"x", "colour", "flag", "when", "review"}
    assert max(pipeline.importance_, key=pipeline.importance_.__getitem__) in ("x", "review")  # the signal's columns
    bundle = pipeline.save(tmp_path / "bundle")
    report = (bundle / "report.html").read_text()
    assert "Global importance" in report and "test records explained" in report
    assert "Tokens of &#x27;review&#x27;" in report or "Tokens of 'review'" in report
    assert "rgba(" in report  # the highlighted tokens
    card = modelmill.load(bundle)
    assert card is not None
    off = modelmill.Pipeline({**config, "evaluation": {"explain": 0}}).fit(make_frame(rows=400, seed=1))
    assert off.importance_ is None and not off.explained_


def test_modelmill_explain_highlights_a_text_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.compression.conftest import run_main

    config = base_config(training={"epochs": 3, "batch_size": 64, "progress": False, "seed": 0},
                         evaluation={"explain": 0, "report": False, "plots": False})
    bundle = modelmill.Pipeline(config).fit(make_frame(rows=300, seed=1)).save(tmp_path / "bundle")
    data = tmp_path / "rows.csv"
    make_frame(rows=40, seed=2).drop(columns=["label"]).to_csv(data, index=False)  # unlabelled rows
    code, output = run_main(monkeypatch, capsys, "explain", str(bundle), str(data), "-o", str(tmp_path / "why"),
                            "--records", "3")
    assert code == 0, output
    assert "no permutation importance" in output and not (tmp_path / "why" / "importance.csv").exists()
    page = (tmp_path / "why" / "explanations.html").read_text()
    assert "Tokens of &#x27;review&#x27;" in page and page.count("<b>record ") == 3 and "rgba(" in page
