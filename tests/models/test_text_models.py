"""Every text encoder learns generated sentiment and comes back from its bundle giving the
very same predictions; the pretrained encoder's tuning modes train what they say; frozen
embeddings are computed once; TF-IDF + logistic regression matches scikit-learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import modelmill
from modelmill.encoders.pretrained import PretrainedTextEncoder
from modelmill.models.tfidf import TextColumns
from modelmill.training.embedding_cache import cached_encoding
from tests.text_data import make_reviews, text_config, tiny_sentence_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sentence_model(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return make_reviews(240)


ENCODERS: list[tuple[dict[str, Any], float]] = [
    ({"type": "bag"}, 0.85),
    ({"type": "cnn", "filters": 16, "kernel_sizes": [2, 3]}, 0.85),
    ({"type": "rnn", "cell": "lstm", "hidden": 16}, 0.8),
    ({"type": "rnn", "cell": "gru", "hidden": 16, "bidirectional": False}, 0.8),
    ({"type": "transformer", "dim": 32, "heads": 2, "layers": 1, "feedforward": 64}, 0.8),
]
PRETRAINED: list[dict[str, Any]] = [
    {"tune": "frozen"},
    {"tune": "frozen", "pool_layers": 3},
    # random weights hold little knowledge to protect: the encoder learns faster than by default
    {"tune": "last_layers", "layers": 1, "lr_scale": 0.3},
    {"tune": "full", "lr_scale": 0.3},
    {"tune": "lora", "lr_scale": 1.0, "lora": {"r": 4, "targets": ["query", "value"]}},
]


def round_trip(pipeline: modelmill.Pipeline, tmp_path: Path, frame: pd.DataFrame) -> None:
    """Saved and loaded, the pipeline predicts exactly what it predicted before."""
    before = pipeline.predict(frame)
    after = modelmill.load(pipeline.save(tmp_path / "bundle")).predict(frame)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


@pytest.mark.parametrize("encoder,floor", ENCODERS, ids=lambda v: str(v.get("type", "")) + str(v.get("cell", ""))
                         if isinstance(v, dict) else "")
def test_each_encoder_from_scratch_learns_and_round_trips(encoder: dict[str, Any], floor: float,
                                                          reviews: pd.DataFrame, tmp_path: Path) -> None:
    pipeline = modelmill.Pipeline(text_config(encoder)).fit(reviews)
    assert pipeline.metrics_["accuracy"] >= floor
    round_trip(pipeline, tmp_path, make_reviews(60, seed=3))


@pytest.mark.parametrize("tuning", PRETRAINED, ids=lambda t: f"{t['tune']}-{t.get('pool_layers', 1)}")
def test_each_pretrained_tuning_learns_and_round_trips(tuning: dict[str, Any], tiny_model: Path,
                                                       reviews: pd.DataFrame, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path / "cache"))
    config = text_config({"type": "pretrained", "model": str(tiny_model), **tuning})
    epochs = 40 if tuning["tune"] == "frozen" else 12  # a frozen encoder's epochs are cheap
    config["training"] = {**config["training"], "epochs": epochs}  # type: ignore[dict-item]
    pipeline = modelmill.Pipeline(config).fit(reviews)
    # a random small encoder: above chance (0.5 on 60 test rows), not perfect; tuning it is
    # chaotic enough that the floor is lower, and the training loss must clearly fall
    assert pipeline.metrics_["accuracy"] >= (0.7 if tuning["tune"] == "frozen" else 0.6)
    assert pipeline.result_ is not None
    losses = [row["train_loss"] for row in pipeline.result_.history]
    assert min(losses[-3:]) < 0.8 * losses[0]
    round_trip(pipeline, tmp_path, make_reviews(60, seed=3))
    assert not (tmp_path / "bundle").joinpath("tiny-encoder").exists()


def trainable(pipeline: modelmill.Pipeline) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in pipeline.parts.model.named_parameters()}


def test_tuning_modes_train_what_they_say(tiny_model: Path, reviews: pd.DataFrame) -> None:
    def fit(**tuning: Any) -> tuple[modelmill.Pipeline, dict[str, torch.Tensor]]:
        config = text_config({"type": "pretrained", "model": str(tiny_model), **tuning})
        config["training"] = {**config["training"], "epochs": 2}  # type: ignore[dict-item]
        pipeline = modelmill.Pipeline(config)
        pipeline.fit(reviews)
        return pipeline, {k: v.clone() for k, v in pipeline.parts.model.state_dict().items()}

    from safetensors.torch import load_file
    original = load_file(str(tiny_model / "model.safetensors"))
    encoder_prefix = "encoders.0.transformer."

    frozen, weights = fit(tune="frozen")
    assert not any(flag for name, flag in trainable(frozen).items() if name.startswith(encoder_prefix))
    for name, value in original.items():  # the pretrained weights are untouched
        assert torch.equal(weights[encoder_prefix + name], value), name

    last, weights = fit(tune="last_layers", layers=1)
    flags = trainable(last)
    assert all(flag == (".layer.1." in name) for name, flag in flags.items() if name.startswith(encoder_prefix))
    assert not torch.equal(weights[encoder_prefix + "encoder.layer.1.attention.self.query.weight"],
                           original["encoder.layer.1.attention.self.query.weight"])
    assert torch.equal(weights[encoder_prefix + "encoder.layer.0.attention.self.query.weight"],
                       original["encoder.layer.0.attention.self.query.weight"])

    lora, _ = fit(tune="lora")
    tuned = [name for name, flag in trainable(lora).items() if flag and name.startswith(encoder_prefix)]
    assert tuned and all("lora_" in name for name in tuned)
    assert any("query" in name for name in tuned) and any("value" in name for name in tuned)


def test_bad_tuning_settings_are_config_errors(tiny_model: Path, reviews: pd.DataFrame) -> None:
    for tuning, message in [({"tune": "last_layers", "layers": 5}, "the model has 2 blocks"),
                            ({"tune": "lora", "lora": {"targets": ["nope"]}}, "not linear layers"),
                            ({"pool_layers": 9}, "pool_layers")]:
        with pytest.raises(modelmill.ConfigError, match=message):
            modelmill.Pipeline(text_config({"type": "pretrained", "model": str(tiny_model), **tuning})).fit(reviews)


def test_frozen_embeddings_are_computed_once_per_data_set(tiny_model: Path, reviews: pd.DataFrame,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path / "cache"))
    calls = {"n": 0}
    forward = PretrainedTextEncoder.forward

    def counting(self: PretrainedTextEncoder, ids: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return forward(self, ids)

    monkeypatch.setattr(PretrainedTextEncoder, "forward", counting)
    config = text_config({"type": "pretrained", "model": str(tiny_model)})
    config["training"] = {**config["training"], "epochs": 6, "batch_size": 16}  # type: ignore[dict-item]
    first = modelmill.Pipeline(config).fit(reviews)
    assert first.result_ is not None and first.result_.epochs_run == 6
    after_first = calls["n"]
    batches_per_epoch = 180 * 0.9 // 16
    assert after_first < batches_per_epoch  # not once per batch of every epoch: once per data set (in chunks)
    assert list((tmp_path / "cache" / "embeddings").glob("*.safetensors"))
    evaluation_calls = after_first - 2  # what the training and validation embeddings took at least
    second = modelmill.Pipeline(config).fit(reviews)  # same data, same model: the disk cache answers
    assert calls["n"] - after_first < max(evaluation_calls, 1) + 1
    pd.testing.assert_frame_equal(first.predict(reviews.head(20)), second.predict(reviews.head(20)))


def test_embedding_cache_hit_miss_and_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_CACHE", str(tmp_path))
    encoder = torch.nn.Linear(3, 2)
    inputs = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    computed = cached_encoding(encoder, inputs, lambda: encoder(inputs).detach())

    def must_not_run() -> torch.Tensor:
        raise AssertionError("the cache should have answered")

    assert torch.equal(cached_encoding(encoder, inputs, must_not_run), computed)
    other = inputs + 1  # other data: another entry
    assert not torch.equal(cached_encoding(encoder, other, lambda: encoder(other).detach()), computed)
    for path in (tmp_path / "embeddings").glob("*.safetensors"):
        path.write_bytes(b"damaged")
    assert torch.equal(cached_encoding(encoder, inputs, lambda: encoder(inputs).detach()), computed)


def test_text_and_a_category_combine_in_one_model(reviews: pd.DataFrame) -> None:
    """``verdict`` depends on the review's sentiment and on the shop together: neither input
    alone gets far beyond chance, both together do."""
    frame = make_reviews(400, seed=1)
    mixed = text_config(target={"name": "verdict", "type": "binary"},
                        features=[{"name": "review", "type": "text", "tokenizer": {"min_frequency": 1}},
                                  {"name": "shop", "type": "category"}],
                        model={"type": "mlp", "hidden": [32]})
    mixed["training"] = {**mixed["training"], "epochs": 25}  # type: ignore[dict-item]
    text_only = {**mixed, "features": mixed["features"][:1]}  # type: ignore[index]
    both = modelmill.Pipeline(mixed).fit(frame).metrics_["accuracy"]
    alone = modelmill.Pipeline(text_only).fit(frame).metrics_["accuracy"]
    assert both >= 0.85 and alone <= 0.7


def test_tfidf_columns_equal_scikit_learn() -> None:
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(2, 30, size=(50, 12)))
    ids[:, 8:] = 0  # padding
    ids[3] = 0  # an empty text
    columns = TextColumns(vocabulary=30, pad=0, pairs=0, sublinear=True)
    columns.fit_idf(ids)
    rows, cols, values = columns(ids)
    ours = torch.zeros(50, 30).index_put_((rows, cols), values).numpy()
    counts = np.zeros((50, 30))
    for r, row in enumerate(ids.tolist()):
        for token in row:
            if token:
                counts[r, token] += 1
    theirs = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_tfidf_logistic_learns_text_and_other_columns(reviews: pd.DataFrame, tmp_path: Path) -> None:
    frame = make_reviews(400, seed=1)  # keep: a great review of the north shop (text AND category)
    frame["keep"] = np.where((frame["sentiment"] == "great") & (frame["shop"] == "north"), "yes", "no")
    config = text_config(target={"name": "keep", "type": "binary"}, model={"type": "tfidf_logistic", "C": 10},
                         features=[{"name": "review", "type": "text", "tokenizer": {"min_frequency": 1}},
                                   {"name": "shop", "type": "category"}])
    pipeline = modelmill.Pipeline(config).fit(frame)
    assert pipeline.result_ is not None  # one solve scored on the validation rows, one on every row
    assert pipeline.result_.stop_reason == "fitted by the solver, then again on the training and validation rows"
    assert pipeline.metrics_["accuracy"] >= 0.9  # the text alone caps it near 0.75
    plain = modelmill.Pipeline(text_config(model={"type": "tfidf_logistic"})).fit(reviews)
    assert plain.metrics_["accuracy"] >= 0.9
    round_trip(plain, tmp_path, make_reviews(60, seed=3))


@pytest.mark.parametrize("classes", [2, 3])
def test_tfidf_logistic_on_a_category_target(classes: int) -> None:
    frame = make_reviews(300, seed=2)
    great = frame["sentiment"] == "great"
    frame["grade"] = np.where(great, "A", "C") if classes == 2 else \
        np.where(great, np.where(frame["shop"] == "north", "A", "B"), "C")
    config = text_config(target={"name": "grade", "type": "category"}, model={"type": "tfidf_logistic"},
                         features=[{"name": "review", "type": "text", "tokenizer": {"min_frequency": 1}},
                                   {"name": "shop", "type": "category"}])
    pipeline = modelmill.Pipeline(config).fit(frame)
    proba = pipeline.predict(frame.head(20)).filter(like="probability")
    assert proba.shape[1] == classes and np.allclose(proba.sum(axis=1), 1.0)
    assert pipeline.metrics_["accuracy"] >= 0.85


def test_head_epochs_train_the_head_alone_before_tuning(tiny_model: Path, reviews: pd.DataFrame,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    config = text_config({"type": "pretrained", "model": str(tiny_model), "tune": "last_layers", "layers": 1,
                          "head_epochs": 3})
    config["training"] = {**config["training"], "epochs": 1}  # type: ignore[dict-item]
    with caplog.at_level("INFO", logger="modelmill"):
        warmed = modelmill.Pipeline(config).fit(reviews)
    assert "training the head alone for 3 epochs" in caplog.text
    flags = trainable(warmed)  # the encoder's own flags are back: its last block tunes
    assert flags["encoders.0.transformer.encoder.layer.1.output.dense.weight"]
    assert not flags["encoders.0.transformer.encoder.layer.0.output.dense.weight"]
    encoder = warmed.parts.model.encoders[0]
    assert isinstance(encoder, PretrainedTextEncoder) and not encoder.frozen
    cold_config = text_config({"type": "pretrained", "model": str(tiny_model), "tune": "last_layers", "layers": 1})
    cold_config["training"] = config["training"]
    cold = modelmill.Pipeline(cold_config).fit(reviews)
    assert warmed.result_ is not None and cold.result_ is not None
    # one tuning epoch from a fitted head starts far lower than from a random one
    assert warmed.result_.history[0]["train_loss"] < cold.result_.history[0]["train_loss"]
