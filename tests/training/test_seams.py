"""The trainer's contract: user callbacks, the hooks for a model/optimiser wrapper and a
batch sampler, the backend registry, process settings restored after a fit; learners that
see the validation split, fit the features' raw view and keep their fitted state in a
format of their own."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

import modelmill
from modelmill.bundle import read_bundle
from modelmill.config import parse_config
from modelmill.features import Feature, Target, build_features
from modelmill.models import MODELS, Learner, TensorData, TrainResult
from modelmill.training import BACKENDS, Callback, LoopState, Trainer, TrainingRun
from tests.conftest import base_config, make_frame


def tabular(**overrides: Any) -> dict[str, Any]:
    config = base_config(**overrides)
    config["features"] = [f for f in config["features"] if f["type"] != "text"]
    return config


class Recorder(Callback):
    def __init__(self) -> None:
        self.prepared: list[str] = []
        self.epochs: list[dict[str, float]] = []
        self.ended = 0

    def on_prepare(self, run: TrainingRun) -> None:
        self.prepared.append(run.state.phase)

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        self.epochs.append(row)

    def on_train_end(self, state: LoopState) -> None:
        self.ended += 1


def test_user_callbacks_see_every_epoch_of_the_pipelines_training() -> None:
    recorder = Recorder()
    pipeline = modelmill.Pipeline(tabular(training={"epochs": 3, "batch_size": 64, "progress": False}),
                                  callbacks=[recorder]).fit(make_frame(200))
    assert recorder.prepared == ["train"] and recorder.ended == 1
    assert [row["epoch"] for row in recorder.epochs] == [1.0, 2.0, 3.0]
    assert recorder.epochs == pipeline.result_.history  # type: ignore[union-attr]


class CountingOptimizer(torch.optim.Optimizer):
    """Stands where a wrapper (a DP optimiser, say) would: delegates, and counts the steps."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:
        self.inner, self.steps = inner, 0
        self.param_groups = inner.param_groups
        self.defaults = inner.defaults
        self.state = inner.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.steps += 1
        return self.inner.step(closure)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()


class WrapAndSample(Callback):
    """Wraps the optimiser and replaces the sampler with one of fixed batches of 10 rows."""

    def __init__(self) -> None:
        self.optimizer: CountingOptimizer | None = None
        self.sampled: list[int] = []

    def on_prepare(self, run: TrainingRun) -> None:
        self.optimizer = CountingOptimizer(run.optimizer)
        run.optimizer = self.optimizer

        def first_rows(data: TensorData, epoch: int, batch_size: int) -> list[torch.Tensor]:
            self.sampled.append(epoch)
            return [torch.arange(0, 10), torch.arange(10, 20)]

        run.sampler = first_rows


def test_a_callback_can_wrap_the_optimiser_and_swap_the_batch_sampler() -> None:
    hooks = WrapAndSample()
    modelmill.Pipeline(tabular(training={"epochs": 2, "batch_size": 64, "progress": False}),
                       callbacks=[hooks]).fit(make_frame(200))
    assert hooks.sampled == [0, 1]
    assert hooks.optimizer is not None and hooks.optimizer.steps == 4  # 2 batches × 2 epochs


def test_training_goes_through_the_backend_registry() -> None:
    calls: list[int] = []

    class Recording:
        def fit(self, trainer: Trainer, model: nn.Module, train: TensorData, valid: TensorData, *,
                resume: bool) -> TrainResult:
            calls.append(len(train))
            return trainer.fit(model, train, valid, resume=resume)

    with BACKENDS.swapped("local", Recording):
        modelmill.Pipeline(tabular(training={"epochs": 1, "batch_size": 64, "progress": False})).fit(make_frame(200))
    assert calls == [135] and BACKENDS.names() == ["local", "ray"]  # 200 rows: 50 test, 15 validation


def test_the_trainer_restores_threads_and_determinism(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert not torch.are_deterministic_algorithms_enabled()
        config = tabular(training={"epochs": 1, "batch_size": 64, "progress": False, "threads": 2,
                                   "deterministic": True})
        seen: list[tuple[int, bool]] = []

        class Watch(Callback):
            def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
                seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))

        modelmill.Pipeline(config, callbacks=[Watch()]).fit(make_frame(200))
        assert seen == [(2, True)]  # as the config asks, while training
        assert torch.get_num_threads() == 1 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(threads)


class Centroids(nn.Module):
    """Distance to each class's mean standardised raw row (missing → the mean): a logit."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.state: dict[str, list[Any]] = {"centroids": [[0.0] * width] * 2, "mean": [0.0] * width,
                                            "std": [1.0] * width}

    def standardised(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(inputs, dim=1)  # (batch, width) float64
        mean, std = torch.tensor(self.state["mean"]), torch.tensor(self.state["std"])
        return torch.nan_to_num((x - mean) / std)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = self.standardised(inputs)
        centres = torch.tensor(self.state["centroids"], dtype=torch.float64)  # (2, width)
        distance = torch.cdist(x, centres)  # (batch, 2)
        return (distance[:, :1] - distance[:, 1:]).float()  # (batch, 1): closer to class 1 → positive


class CentroidLearner(Learner[Any]):
    """A learner whose fitted state is JSON, not tensors, and that fits the raw view."""

    view = "raw"
    seen: dict[str, Any] = {}

    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        CentroidLearner.seen["raw_columns"] = [c for f in features for c in f.raw_columns()]
        return Centroids(sum(len(f.raw_columns()) for f in features))

    def fit(self, module: nn.Module, train: TensorData, valid: TensorData, target: Target[Any],
            training: Any, *, on_round: Any = None) -> TrainResult:
        assert isinstance(module, Centroids)
        CentroidLearner.seen["valid_rows"] = len(valid)
        CentroidLearner.seen["dtypes"] = {x.dtype for x in train.inputs}
        raw = torch.cat(train.inputs, dim=1)
        module.state["mean"] = torch.nanmean(raw, dim=0).tolist()
        module.state["std"] = [float(torch.std(c[~torch.isnan(c)])) or 1.0 for c in raw.T]
        x = module.standardised(train.inputs)
        module.state["centroids"] = [x[train.target == c].mean(dim=0).tolist() for c in (0.0, 1.0)]
        return TrainResult([{"epoch": 1.0, "seconds": 0.0}], 1, None, 1, 0.0, "fitted by the centroids")

    def trained_parameters(self, module: nn.Module) -> int:
        return 2 * module.width if isinstance(module, Centroids) else 0

    def save(self, module: nn.Module) -> dict[str, bytes]:
        assert isinstance(module, Centroids)
        return {"centroids.json": json.dumps(module.state).encode()}

    def load(self, module: nn.Module, artifacts: Mapping[str, bytes], *, where: Path) -> None:
        assert isinstance(module, Centroids)
        module.state = json.loads(artifacts["centroids.json"])


def test_a_learner_with_its_own_artefact_format_sees_validation_data_and_the_raw_view(tmp_path: Path) -> None:
    frame = make_frame(300)
    with MODELS.swapped("linear", CentroidLearner):
        pipeline = modelmill.Pipeline(tabular(model={"type": "linear"})).fit(frame)
        bundle = read_bundle(pipeline.save(tmp_path / "bundle"))
        loaded = modelmill.load(bundle.path)
    seen = CentroidLearner.seen
    assert seen["valid_rows"] == 23 and seen["dtypes"] == {torch.float64}
    assert [(c.name, c.kind) for c in seen["raw_columns"]] == [
        ("x", "number"), ("colour", "category"), ("flag", "number"), ("when.year", "number"),
        ("when.month", "number"), ("when.day", "number"), ("when.weekday", "number"), ("when.dayofyear", "number")]
    history = pipeline.result_.history  # type: ignore[union-attr]
    assert set(history[0]) >= {"train_loss", "valid_loss", "valid_roc_auc"} and pipeline.metrics_["roc_auc"] > 0.8
    assert set(bundle.model_artifacts()) == {"centroids.json"} and "weights.safetensors" not in bundle.files
    assert bundle.models["model"].artifacts == {"centroids.json": "centroids.json"}
    new = make_frame(60, seed=4)
    pd.testing.assert_frame_equal(loaded.predict(new), pipeline.predict(new))


def test_the_raw_view_is_codes_and_numbers_with_nan_for_missing() -> None:
    config = parse_config(tabular())
    frame = make_frame(100)
    features = {f.name: f.fit(frame[f.name]) for f in build_features(config)}
    column = pd.Series(["blue", "purple", None, "red"])
    assert features["colour"].raw_view(column).squeeze(1).tolist()[::3] == [0.0, 2.0]
    assert torch.isnan(features["colour"].raw_view(column)[1:3]).all()
    assert features["x"].raw_view(pd.Series([1.5, None])).squeeze(1)[0].item() == 1.5
    assert torch.isnan(features["flag"].raw_view(pd.Series(["maybe"]))).all()
    text = build_features(parse_config(base_config()))[4].fit(make_frame(50)["review"])
    with pytest.raises(modelmill.ModelError, match="'review' \\(text\\) has no raw view"):
        text.raw_columns()
