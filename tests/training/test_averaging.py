"""training.ema: the moving average follows its formula, is what validation sees and what the
fit keeps (with and without differential privacy), and survives a checkpoint."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from pydantic import ValidationError

import modelmill
from modelmill.config.schema import TrainingConfig
from modelmill.errors import ModelError
from modelmill.training.averaging import WARM_UP, WeightAverage
from modelmill.training.callbacks import Callback, LoopState
from tests.training.test_privacy import FAST, easy_config, easy_frame


def test_the_average_follows_its_formula_and_applied_swaps_back() -> None:
    model = torch.nn.Linear(2, 1)
    start = copy.deepcopy(model.state_dict())
    average = WeightAverage(model, decay=0.9)
    expected = {name: t.clone() for name, t in start.items()}
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
            model.bias.sub_(0.5)
        average.update()
        decay = min(0.9, (1 + step) / (WARM_UP + step))
        for name, live in model.state_dict().items():
            expected[name] = decay * expected[name] + (1 - decay) * live
    for name, tensor in expected.items():
        torch.testing.assert_close(average.average[name], tensor)
    live = copy.deepcopy(model.state_dict())
    with average.applied():
        torch.testing.assert_close(model.weight, expected["weight"])
    assert all(torch.equal(model.state_dict()[name], live[name]) for name in live)
    restored = WeightAverage(torch.nn.Linear(2, 1), decay=0.9)
    restored.load_state_dict(average.state_dict())
    assert restored.steps == 5 and torch.equal(restored.average["weight"], average.average["weight"])


def test_only_what_the_steps_change_is_averaged_and_a_foreign_average_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1),
                                torch.nn.BatchNorm1d(1))
    for parameter in [*model[0].parameters(), *model[1].parameters()]:  # a frozen encoder, its norm too
        parameter.requires_grad_(False)
    average = WeightAverage(model, decay=0.9)
    assert set(average.average) == {"2.weight", "2.bias", "3.weight", "3.bias", "3.running_mean", "3.running_var"}
    other = WeightAverage(torch.nn.Linear(3, 1), decay=0.9)
    with pytest.raises(ModelError, match="holds other weights than this model trains.*--resume"):
        average.load_state_dict(other.state_dict())


class Recorder(Callback):
    """The average and the live weights at each epoch's end."""

    def __init__(self) -> None:
        self.averages: list[dict[str, torch.Tensor]] = []
        self.live: list[dict[str, torch.Tensor]] = []

    def on_prepare(self, run: Any) -> None:
        self.run = run

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        assert self.run.average is not None
        self.averages.append({k: v.clone() for k, v in self.run.average.average.items()})
        self.live.append({k: v.detach().clone() for k, v in self.run.model.state_dict().items()})


@pytest.mark.parametrize("privacy", [None, FAST], ids=["plain", "dp-sgd"])
def test_the_fit_keeps_the_best_epochs_average(privacy: dict[str, Any] | None) -> None:
    recorder = Recorder()
    config = easy_config(privacy, ema=0.9, epochs=4)
    pipeline = modelmill.Pipeline(config, callbacks=[recorder]).fit(easy_frame())
    assert pipeline.result_ is not None
    best = pipeline.result_.best_epoch - 1
    kept = pipeline.parts.model.state_dict()
    for name, tensor in recorder.averages[best].items():
        torch.testing.assert_close(kept[name], tensor)
    moved = [name for name in recorder.averages[best]
             if not torch.allclose(recorder.averages[best][name], recorder.live[best][name])]
    assert moved, "the average equals the live weights: nothing was averaged"
    assert pipeline.metrics_["roc_auc"] > 0.85


@pytest.mark.parametrize("decay", [0, 1, -0.5, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay: float) -> None:
    with pytest.raises(ValidationError, match="ema"):
        TrainingConfig.model_validate({"ema": decay})
