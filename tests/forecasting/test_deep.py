"""The deep forecaster: the contract, quantiles that never cross, better than naive on a seasonal
series, identical forecasts after a safetensors round trip, and a killed fit that resumes from
the trainer's checkpoint to the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load, save

from modelmill.config.forecast import DeepForecastConfig
from modelmill.errors import ConfigError
from modelmill.forecasting.base import FORECASTERS, FitContext, ForecasterState
from modelmill.forecasting.deep import DeepForecaster, NBeats, PinballLoss
from modelmill.forecasting.panel import Panel, horizon_frame, read_panel
from modelmill.training.trainer import Trainer
from tests.forecasting.test_windows import HORIZON, shop_config, shops

DEEP = {"type": "deep", "hidden": [64, 64], "dropout": 0.0}
TRAINING = {"epochs": 30, "batch_size": 64, "progress": False, "threads": 1,
            "optimizer": {"type": "adamw", "lr": 0.003}, "early_stopping": {"patience": 10}}


def config(**training: Any) -> Any:
    return shop_config(DEEP, training={**TRAINING, **training})


def split(steps: int = 200) -> tuple[Panel, Panel, pd.DataFrame]:
    panel, _ = read_panel(shops(steps), config(), source="shops.csv")
    history = panel.up_to(panel.frame["ds"].max() - pd.Timedelta(days=HORIZON))
    return panel, history, horizon_frame(history, panel.frame, HORIZON, source="t")


def test_forecasts_follow_the_contract_and_beat_seasonal_naive() -> None:
    panel, history, future = split()
    forecast = DeepForecaster(config()).fit(history, FitContext(seed=0)).forecast(history, future)
    assert list(forecast.columns) == ["unique_id", "ds", "forecast", "lower", "upper"]
    assert forecast.groupby("unique_id").size().to_dict() == {"a": HORIZON, "b": HORIZON}
    last = history.frame["ds"].max()
    assert list(forecast["ds"].iloc[:HORIZON]) == list(pd.date_range(last, periods=HORIZON + 1, freq="D")[1:])
    assert (forecast["lower"] <= forecast["forecast"]).all() and (forecast["forecast"] <= forecast["upper"]).all()
    actual = panel.frame.set_index(["unique_id", "ds"])["y"]
    truth = actual.reindex(pd.MultiIndex.from_frame(forecast[["unique_id", "ds"]])).to_numpy()
    naive = actual.reindex(pd.MultiIndex.from_arrays([forecast["unique_id"], forecast["ds"] - pd.Timedelta(days=7)]))
    scale = forecast["unique_id"].map({"a": 100.0, "b": 5.0}).to_numpy()
    ours = np.mean(np.abs(forecast["forecast"].to_numpy() - truth) / scale)
    assert ours < 0.8 * np.mean(np.abs(naive.to_numpy() - truth) / scale)


def test_quantiles_never_cross_whatever_the_weights() -> None:
    torch.manual_seed(0)
    module = NBeats(context=14, origin=5, step=4, horizon=HORIZON, hidden=[16], dropout=0.0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=3.0)
    out = module([torch.randn(32, 14), torch.randn(32, 5), torch.randn(32, HORIZON, 4), torch.randn(32, HORIZON)])
    assert out.shape == (32, HORIZON, 3)
    assert (out[..., 0] <= out[..., 1]).all() and (out[..., 1] <= out[..., 2]).all()


def test_pinball_loss_weighs_each_side_by_its_level_and_skips_unknown_targets() -> None:
    loss = PinballLoss((0.1, 0.5, 0.9))
    raw = torch.zeros(1, 2, 3)
    target = torch.tensor([[1.0, float("nan")]])
    assert float(loss(raw, target)) == pytest.approx((0.1 + 0.5 + 0.9) / 3)


def test_the_state_round_trip_through_safetensors_gives_identical_forecasts() -> None:
    _, history, future = split(120)
    model = DeepForecaster(config(epochs=3)).fit(history, FitContext(seed=0))
    state = model.state()
    again = ForecasterState(json=state.json, tensors=load(save(state.tensors)))
    loaded = DeepForecaster.from_state(config(epochs=3), again)
    pd.testing.assert_frame_equal(loaded.forecast(history, future), model.forecast(history, future), check_exact=True)


def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_model(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, history, future = split(120)
    settings = config(epochs=4, early_stopping={"enabled": False})
    whole = DeepForecaster(settings).fit(history, FitContext(seed=3, checkpoint_dir=tmp_path / "a"))
    epoch, calls = Trainer.epoch, {"n": 0}

    def dying(self: Trainer, run: Any) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third epoch, after two checkpoints
        return epoch(self, run)

    monkeypatch.setattr(Trainer, "epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        DeepForecaster(settings).fit(history, FitContext(seed=3, checkpoint_dir=tmp_path / "b"))
    monkeypatch.setattr(Trainer, "epoch", epoch)
    assert (tmp_path / "b" / "last.safetensors").exists()
    resumed = DeepForecaster(settings).fit(history, FitContext(seed=3, checkpoint_dir=tmp_path / "b", resume=True))
    assert resumed.describe()["epochs"] == 4
    pd.testing.assert_frame_equal(resumed.forecast(history, future), whole.forecast(history, future),
                                  check_exact=True)


def test_registered_and_an_unknown_early_stopping_metric_is_refused() -> None:
    assert FORECASTERS.get("deep") is DeepForecaster and FORECASTERS.config_class("deep") is DeepForecastConfig
    _, history, _ = split(120)
    with pytest.raises(ConfigError, match=r"training.early_stopping.metric: 'roc_auc'.*valid: auto, loss"):
        DeepForecaster(config(early_stopping={"metric": "roc_auc"})).fit(history, FitContext())
