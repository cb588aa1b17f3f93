"""The frozen-encoder embedding cache: an encrypted run keeps its embeddings in memory only
(computed once per run as ever), never on disk; a run in clear keeps using the disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import modelmill
from modelmill.training.embedding_cache import cached_encoding
from tests.text_data import make_reviews, text_config, tiny_sentence_model

KEY = bytes(range(32))


def _files(folder: Path) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file()] if folder.exists() else []


def test_persist_false_neither_reads_nor_writes_the_disk_cache(tmp_path: Path) -> None:
    encoder = torch.nn.Linear(3, 2)
    inputs = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    computed = cached_encoding(encoder, inputs, lambda: encoder(inputs).detach(), tmp_path)
    assert len(_files(tmp_path)) == 1
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return computed

    other = inputs + 1
    assert torch.equal(cached_encoding(encoder, inputs, compute, tmp_path, persist=False), computed)
    cached_encoding(encoder, other, lambda: encoder(other).detach(), tmp_path, persist=False)
    assert calls == [1] and len(_files(tmp_path)) == 1  # computed, not read; nothing new written


ENSEMBLE = {"type": "ensemble", "members": [{"type": "mlp", "hidden": [16]}], "folds": 0}


@pytest.mark.parametrize("model", [None, ENSEMBLE], ids=["mlp", "ensemble"])
def test_an_encrypted_run_writes_no_embeddings_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            model: dict[str, object] | None) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELMILL_CACHE", str(cache))
    config = text_config({"type": "pretrained", "model": str(tiny_sentence_model(tmp_path / "encoder"))})
    config["training"] = {**config["training"], "epochs": 2}  # type: ignore[dict-item]
    if model is not None:  # an ensemble's members are fitted through the same settings, the key's choice too
        config["model"] = model
    reviews = make_reviews(120)
    sealed = modelmill.Pipeline(config).fit(reviews, run_dir=tmp_path / "run", key=KEY)
    if model is None:
        assert sealed.result_ is not None and sealed.result_.epochs_run == 2
    assert not _files(cache)
    modelmill.Pipeline(config).fit(reviews)  # in clear, the cache is kept as before
    assert list((cache / "embeddings").glob("*.safetensors"))
