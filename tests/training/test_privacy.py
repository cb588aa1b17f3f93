"""Differentially private training (training.privacy): the spent ε per epoch and on the card,
per-row clipping that really bounds a step, Poisson batches, batch norm replaced so that private
bundles load without Opacus, resume with the accountant rebuilt, and the refused configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

import modelmill
from modelmill.config.schema import TrainingConfig
from modelmill.errors import ConfigError
from modelmill.models import TabularNet, TensorData
from modelmill.training import Callback, LoopState, Trainer, TrainingRun
from modelmill.training.batches import PoissonBatches, steps_per_epoch
from modelmill.training.privacy import DifferentialPrivacy
from tests.compression.conftest import run_main
from tests.features.test_image import frame_of, make_images
from tests.text_data import make_reviews, text_config, tiny_sentence_model

FAST = {"epsilon": 3.0, "accountant": "rdp"}  # rdp calibrates in a tenth of prv's time


def easy_frame(rows: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    score = 2 * x + (colour == "red") + rng.normal(scale=0.3, size=rows)
    return pd.DataFrame({"x": x, "colour": colour, "label": np.where(score > 0.3, "good", "bad")})


def easy_config(privacy: dict[str, Any] | None = FAST, **training: Any) -> dict[str, Any]:
    return {
        "name": "private",
        "data": {"source": "unused", "split": {"method": "stratified", "test": 0.25, "seed": 0}},
        "features": [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}],
        "target": {"name": "label", "type": "binary"},
        "model": {"type": "mlp", "hidden": [16], "batch_norm": True},
        "training": {"epochs": 3, "batch_size": 64, "progress": False, "early_stopping": {"enabled": False},
                     "optimizer": {"type": "adamw", "lr": 0.02}, "privacy": privacy, **training},
        "evaluation": {"explain": 0, "plots": False},
    }


@pytest.fixture(scope="module")
def private_mlp() -> modelmill.Pipeline:
    """The easy table's mlp (with batch norm) at ε = 3, fitted once for the tests that read it."""
    return modelmill.Pipeline(easy_config()).fit(easy_frame())


def test_private_fit_spends_a_growing_epsilon_within_the_target_and_reports_it(
        private_mlp: modelmill.Pipeline, tmp_path: Path) -> None:
    pipeline = private_mlp
    spent = [row["epsilon"] for row in pipeline.result_.history]  # type: ignore[union-attr]
    assert len(spent) == 3 and all(a < b for a, b in zip(spent, spent[1:])), spent
    assert 0 < spent[-1] <= 3.0
    privacy = pipeline.metrics_["privacy"]
    assert privacy["epsilon"] == pytest.approx(spent[-1], abs=1e-3) and privacy["delta"] == 1e-5
    assert privacy["steps"] == 3 * steps_per_epoch(pipeline.metrics_["rows"]["train"], 64)
    assert privacy["noise_multiplier"] > 0.5 and privacy["accountant"] == "rdp"
    assert pipeline.metrics_["roc_auc"] > 0.85  # ε = 3 still learns an easy rule
    measures = " ".join(pipeline.model_card().privacy.measures)
    assert f"ε = {privacy['epsilon']:.3g} spent of 3" in measures and "noise multiplier" in measures
    bundle = pipeline.save(tmp_path / "bundle")
    assert f"ε = {privacy['epsilon']:.3g} spent of 3" in (bundle / "report.html").read_text()
    card = json.loads((bundle / "model_card.json").read_text())
    assert any("differential privacy (DP-SGD)" in line for line in card["privacy"]["measures"])


# ---------------------------------------------------------------- the mechanism


class _Seen(Callback):
    """Records what the run trains with once every callback has prepared it."""

    def __init__(self) -> None:
        self.optimizer: Any = None
        self.sampler: Any = None

    def on_prepare(self, run: TrainingRun) -> None:
        self.optimizer, self.sampler = run.optimizer, run.sampler


def _one_step(private: DifferentialPrivacy | None, target: float, width: int = 4) -> tuple[torch.Tensor, _Seen]:
    """One SGD step (lr 1, all 64 rows in the batch) of a zero-initialised linear model towards
    ``target`` from rows of ones: the weights' change is the step."""
    config = TrainingConfig.model_validate({
        "epochs": 1, "batch_size": 64, "progress": False, "scheduler": {"type": "none"},
        "optimizer": {"type": "sgd", "lr": 1.0, "momentum": 0.0}, "early_stopping": {"enabled": False}})
    head = nn.Linear(width, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    model = TabularNet([nn.Identity()], nn.Identity(), head)
    data = TensorData([torch.ones(64, width)], torch.full((64, 1), target))
    seen = _Seen()
    trainer = Trainer(config, loss=nn.MSELoss(), scorer=lambda raw, truth: {}, monitor="loss", mode="min",
                      callbacks=[*([private] if private else []), seen])
    trainer.fit(model, data, data)
    return torch.cat([head.weight.detach().flatten(), head.bias.detach()]), seen


def _private(**settings: Any) -> DifferentialPrivacy:
    config = TrainingConfig.model_validate({"privacy": {"accountant": "rdp", **settings}}).privacy
    assert config is not None
    return DifferentialPrivacy(config, seed=0)


def test_each_row_gradient_is_clipped_so_one_step_moves_at_most_max_grad_norm() -> None:
    from opacus.optimizers import DPOptimizer

    plain, _ = _one_step(None, target=1000.0)
    assert plain.norm() > 1000  # the plain gradient of a squared error 1000 away is huge
    private, seen = _one_step(_private(epsilon=1e4, max_grad_norm=0.5), target=1000.0)
    assert isinstance(seen.optimizer, DPOptimizer) and isinstance(seen.sampler, PoissonBatches)
    # q = 1: every row is in the batch; each row's gradient clipped to 0.5, their mean moves lr × 0.5
    # at most (plus noise: σ is tiny at ε = 10^4)
    assert 0.45 < float(private.norm()) < 0.55, private
    assert torch.all(private > 0)  # towards the target, as the plain step


def test_the_noise_is_the_planned_gaussian_over_the_clipped_sum() -> None:
    """Predictions already equal to the target: every row's gradient is 0, so one SGD step (lr 1,
    all rows in the batch) is the noise alone over the batch size: N(0, (σ · max_grad_norm / 64)²)
    per weight, 201 weights."""
    private = _private(epsilon=2.0, max_grad_norm=3.0)
    step, _ = _one_step(private, target=0.0, width=200)
    assert private.plan_ is not None
    expected = private.plan_.noise_multiplier * 3.0 / 64
    assert 0.8 < float(step.std()) / expected < 1.2, (float(step.std()), expected)
    assert abs(float(step.mean())) < 3 * expected / 201 ** 0.5


def test_poisson_batches_have_the_expected_size_and_replay_per_epoch() -> None:
    data = TensorData([torch.zeros(2000, 1)], torch.zeros(2000))
    sampler = PoissonBatches(seed=7)
    batches = sampler(data, 0, 50)
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float32)
    assert len(batches) == 40
    # each row in each batch with q = 1/40: size ~ Binomial(2000, 1/40), mean 50, sd ~6.9
    assert 47 < float(sizes.mean()) < 53 and 4 < float(sizes.std()) < 10
    assert float(sizes.std()) > 0  # not fixed-size batches
    everyone = torch.cat(batches)
    assert len(torch.unique(everyone)) < len(everyone)  # a row may join several batches of an epoch
    again = PoissonBatches(seed=7)(data, 0, 50)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # an epoch replays from its own seed
    assert not all(torch.equal(a, b) for a, b in zip(batches, sampler(data, 1, 50)))
    assert not all(torch.equal(a, b) for a, b in zip(batches, PoissonBatches(seed=8)(data, 0, 50)))


def test_empty_poisson_batches_take_a_noise_step_and_are_counted() -> None:
    """20 rows at batch size 1: q = 0.05, a third of the batches empty."""
    rows = 20
    data = TensorData([torch.randn(rows, 3)], torch.randn(rows, 1))
    config = TrainingConfig.model_validate({"epochs": 3, "batch_size": 1, "progress": False,
                                            "scheduler": {"type": "none"}, "early_stopping": {"enabled": False},
                                            "privacy": {"epsilon": 8, "accountant": "rdp"}})
    assert config.privacy is not None
    assert any(len(b) == 0 for b in PoissonBatches(0)(data, 0, 1))
    private = DifferentialPrivacy(config.privacy, seed=0)
    model = TabularNet([nn.Identity()], nn.Identity(), nn.Linear(3, 1))
    trainer = Trainer(config, loss=nn.MSELoss(), scorer=lambda raw, truth: {}, monitor="loss", mode="min",
                      callbacks=[private])
    result = trainer.fit(model, data, data)
    assert private.steps() == 3 * rows
    assert all(np.isfinite(row["train_loss"]) for row in result.history)


# --------------------------------------------------- modules that load without Opacus

PROBE = """
import json, sys
from pathlib import Path
import modelmill
import pandas as pd
from torch import nn
found = {}
for name in ("mlp", "cnn"):
    pipeline = modelmill.load(Path(sys.argv[1]) / name)
    out = pipeline.predict(pd.read_pickle(Path(sys.argv[1]) / f"{name}.pkl"))
    norms = [type(m).__name__ for m in pipeline.parts.model.modules() if isinstance(m, (nn.GroupNorm,
             nn.BatchNorm1d, nn.BatchNorm2d))]
    found[name] = {"norms": norms, "labels": out.iloc[:, 0].astype(str).tolist()}
found["opacus"] = [m for m in sys.modules if m.split(".")[0] == "opacus"]
print(json.dumps(found))
"""


def _image_config() -> dict[str, Any]:
    return {
        "name": "blobs", "data": {"source": "unused", "split": {"method": "stratified", "test": 0.25, "seed": 0}},
        "features": [{"name": "image", "type": "image", "encoder": [
            {"type": "conv", "filters": 8, "batch_norm": True}, {"type": "pool"},
            {"type": "conv", "filters": 8, "batch_norm": True}, {"type": "global_pool"}]}],
        "target": {"name": "label", "type": "category"},
        "model": {"type": "mlp", "hidden": [8], "batch_norm": False, "dropout": 0.0},
        "training": {"epochs": 1, "batch_size": 32, "progress": False, "privacy": {"epsilon": 8, "accountant": "rdp"},
                     "optimizer": {"type": "adamw", "lr": 0.01}},
        "evaluation": {"explain": 0, "plots": False},
    }


def test_batch_norm_models_train_privately_and_their_bundles_load_without_opacus(
        private_mlp: modelmill.Pipeline, tmp_path: Path) -> None:
    """An MLP with batch norm and a CNN with batch norm: group norm at training and at load time,
    and the loaded bundle predicts what the fitted pipeline did, in a process that never imports
    Opacus."""
    mlp = private_mlp
    images, labels = make_images(160)
    cnn = modelmill.Pipeline(_image_config()).fit(frame_of(images, labels), evaluate=False)  # test metrics: not here
    assert 0 < cnn.metrics_["privacy"]["epsilon"] <= 8
    cases = [(mlp, easy_frame(30, seed=1), "mlp"), (cnn, frame_of(images[:20], labels[:20]), "cnn")]
    for pipeline, frame, name in cases:
        pipeline.save(tmp_path / name)
        frame.to_pickle(tmp_path / f"{name}.pkl")  # the probe's input only (the bundle holds no pickle)
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["opacus"] == [], found
    assert found["mlp"]["norms"] == ["GroupNorm"] and found["cnn"]["norms"] == ["GroupNorm", "GroupNorm"]
    for pipeline, frame, name in cases:
        assert found[name]["labels"] == pipeline.predict(frame).iloc[:, 0].astype(str).tolist(), name


class _RowGradientCheck(Callback):
    """At a private run's first steps, before each step clips and noises anything: how far the mean
    of Opacus's per-row gradients is from the batch gradient autograd computed (relative, per weight
    tensor)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []

    def on_prepare(self, run: TrainingRun) -> None:
        self.run = run  # the callbacks given to Pipeline run before privacy's own

    def on_train_start(self, state: LoopState, total_epochs: int) -> None:
        optimizer = self.run.optimizer  # privacy's DPOptimizer by now
        original = optimizer.pre_step

        def pre_step(closure: Any = None) -> Any:
            if len(self.gaps) < 40:
                self.gaps += [float((p.grad - p.grad_sample.mean(0)).norm() / p.grad.norm())
                              for p in optimizer.params if p.grad is not None and p.grad_sample is not None
                              and len(p.grad_sample) and float(p.grad.norm()) > 0]
            return original(closure)

        optimizer.pre_step = pre_step


@pytest.mark.parametrize("channels", [1, 3])
def test_a_private_cnn_gets_each_rows_true_gradient(channels: int) -> None:
    """The image encoder runs its convolutions channels-last; Opacus's per-row gradients of a
    convolution with a channels-last input are wrong (in Opacus's MNIST network the second
    convolution's rows' mean was 94% of the batch gradient's norm away from it), so a private
    model is built in the default layout: every per-row gradient then averages to the batch
    gradient autograd computes. Colour images given as (h, w, 3) arrays arrive channels-last
    already, at the first convolution."""
    from modelmill.config.images import ImageFeatureBase

    images, labels = make_images(160)
    if channels == 3:
        images = np.stack([images, images // 2, 255 - images], axis=-1)
    check = _RowGradientCheck()
    config = _image_config()
    config["features"][0]["encoder"] = [{"type": "conv", "filters": 8}, {"type": "pool"},
                                        {"type": "conv", "filters": 8}, {"type": "flatten"}]
    assert ImageFeatureBase.model_fields["channels_last"].default  # the default, the layout that broke it
    modelmill.Pipeline(config, callbacks=[check]).fit(frame_of(images, labels), evaluate=False)
    assert len(check.gaps) >= 8 and max(check.gaps) < 1e-3, check.gaps  # float32 rounding only; the bug: > 0.9


def test_frozen_pretrained_encoder_is_cached_and_trains_privately(tmp_path: Path) -> None:
    model = tiny_sentence_model(tmp_path / "tiny")
    config = text_config({"type": "pretrained", "model": str(model)},
                         training={"epochs": 1, "batch_size": 32, "progress": False,
                                   "privacy": {"epsilon": 8, "accountant": "rdp"}})
    pipeline = modelmill.Pipeline(config).fit(make_reviews(120), evaluate=False)
    assert 0 < pipeline.metrics_["privacy"]["epsilon"] <= 8
    net = pipeline.parts.model
    assert isinstance(net, TabularNet)
    encoder = list(net.encoders[0].parameters())
    assert encoder and not any(p.requires_grad for p in encoder)  # frozen: its outputs were cached
    assert not any(hasattr(p, "grad_sample") for p in net.parameters())  # Opacus's hooks gone


# ------------------------------------------------------------------------ resume


class _Interrupt(Exception):
    pass


class _StopAfter(Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        if state.epoch > self.epochs:  # raised before this epoch's checkpoint: the last one holds `epochs`
            raise _Interrupt


def test_resumed_private_run_rebuilds_the_accountant_from_the_epochs_done(private_mlp: modelmill.Pipeline,
                                                                         tmp_path: Path) -> None:
    """Cut after epoch 1 of 3, resumed from its checkpoint: every epoch's ε and the steps are those
    of the same run uninterrupted (the module's fixture)."""
    config, frame, whole = easy_config(), easy_frame(), private_mlp
    with pytest.raises(_Interrupt):
        modelmill.Pipeline(config, callbacks=[_StopAfter(1)]).fit(frame, run_dir=tmp_path / "cut", evaluate=False)
    resumed = modelmill.Pipeline(config).fit(frame, run_dir=tmp_path / "cut", resume=True, evaluate=False)
    assert resumed.result_ is not None and whole.result_ is not None
    assert [r["epoch"] for r in resumed.result_.history] == [1, 2, 3]
    assert [r["epsilon"] for r in resumed.result_.history] == pytest.approx(
        [r["epsilon"] for r in whole.result_.history], rel=1e-9)
    assert resumed.metrics_["privacy"]["steps"] == whole.metrics_["privacy"]["steps"]
    assert resumed.metrics_["privacy"]["epsilon"] == whole.metrics_["privacy"]["epsilon"]


# ------------------------------------------------------------------------ refused


@pytest.mark.parametrize("epsilon", [0, -1])
def test_epsilon_must_be_positive(epsilon: float) -> None:
    with pytest.raises(ConfigError) as caught:
        modelmill.Pipeline(easy_config({"epsilon": epsilon}))
    assert caught.value.path == "training.privacy.epsilon"
    assert f"training.privacy.epsilon: epsilon must be above 0, got {epsilon}" in str(caught.value)


@pytest.mark.parametrize("model, words", [
    ({"type": "gbdt"}, "model type 'gbdt' is a learner with its own solver"),
    ({"type": "auto"}, "model type 'auto' fits several candidates"),
])
def test_model_types_dp_sgd_does_not_train_are_refused(model: dict[str, Any], words: str) -> None:
    config = easy_config()
    config["model"] = model
    with pytest.raises(ConfigError) as caught:
        modelmill.Pipeline(config).fit(easy_frame(200))
    assert caught.value.path == "training.privacy"
    assert words in str(caught.value) and "Fix: set model.type to mlp or linear" in str(caught.value)


def test_recurrent_text_encoder_is_refused_with_the_feature_named() -> None:
    config = text_config({"type": "rnn"}, training={"epochs": 1, "progress": False, "privacy": FAST})
    with pytest.raises(ConfigError) as caught:
        modelmill.Pipeline(config).fit(make_reviews(100))
    message = str(caught.value)
    assert message.startswith("training.privacy: feature 'review': its encoder (RNNEncoder) has an LSTM layer")
    assert "Fix: for a text column use encoder type cnn or bag" in message


@pytest.mark.parametrize("training, words", [
    ({"l2": 0.01}, "training.l1 / training.l2 cannot be used with training.privacy"),
    ({"grad_clip": 1.0}, "training.grad_clip cannot be used with training.privacy"),
])
def test_penalties_and_grad_clip_are_refused_with_privacy(training: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match="Fix:") as caught:
        modelmill.Pipeline(easy_config(**training))
    assert words in str(caught.value)


def test_class_weights_are_refused_with_privacy() -> None:
    config = easy_config()
    config["target"]["class_weights"] = "balanced"
    with pytest.raises(ConfigError) as caught:
        modelmill.Pipeline(config).fit(easy_frame(200))
    assert caught.value.path == "target.class_weights" and "Fix: class_weights: none" in str(caught.value)


def test_cli_exits_2_with_one_message_for_a_bad_epsilon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    easy_frame(100).to_csv(tmp_path / "data.csv", index=False)
    config = easy_config({"epsilon": -2})
    config["data"]["source"] = "data.csv"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code, output = run_main(monkeypatch, capsys, "train", str(tmp_path / "config.yaml"), "--runs",
                            str(tmp_path / "runs"))
    assert code == 2, output
    assert "training.privacy.epsilon: epsilon must be above 0, got -2" in output and "Traceback" not in output


def test_a_private_model_is_not_fine_tuned_without_dp_sgd(private_mlp: modelmill.Pipeline) -> None:
    from modelmill.compression.finetune import FineTuning, finetune
    from modelmill.errors import ModelError

    frame = easy_frame(rows=200, seed=1)
    with pytest.raises(ModelError, match=r"differential privacy .*ε = 3.*Fix: prune with --finetune-epochs 0"):
        finetune(private_mlp.parts, FineTuning(frame, frame, 1))
