"""The text feature: tokenizers trained on the training split, normalisation, truncation,
awkward input (empty, missing, very long, non-UTF-8, emoji), and its state as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import modelmill
from modelmill.config.schema import TextFeatureConfig
from modelmill.errors import ConfigError, DataError
from modelmill.features.text import TextFeature, as_texts
from tests.text_data import make_reviews, text_config, tiny_sentence_model


def fitted(texts: list[str], **config: object) -> TextFeature:
    return TextFeature(TextFeatureConfig(name="review", **config)).fit(pd.Series(texts))  # type: ignore[arg-type]


def reloaded(feature: TextFeature) -> TextFeature:
    state = json.loads(json.dumps(feature.state()))  # the state survives JSON as it is
    return TextFeature.from_state(feature.config, state)


@pytest.mark.parametrize("kind", ["word", "bpe", "wordpiece"])
def test_each_tokenizer_trains_and_reloads_from_json(kind: str) -> None:
    texts = make_reviews(100)["review"].tolist()
    feature = fitted(texts, tokenizer={"type": kind, "min_frequency": 1, "vocabulary_size": 200})
    ids = feature.transform(pd.Series(texts))
    assert ids.dtype == torch.int64 and ids.shape[0] == 100
    assert 2 < feature.vocabulary_size <= 200
    assert torch.equal(reloaded(feature).transform(pd.Series(texts)), ids)
    unseen = feature.transform(pd.Series(["tastiest"]))[0]
    unknown = feature.tokenizer_.token_to_id("[UNK]")
    if kind == "word":
        assert unseen.tolist() == [unknown]  # a whole word never seen
    else:
        assert unknown not in unseen.tolist()  # sub-words of known pieces


def test_vocabulary_limit_and_min_frequency() -> None:
    texts = ["alpha beta", "alpha gamma", "alpha delta"]
    feature = fitted(texts, tokenizer={"min_frequency": 2})
    vocabulary = feature.tokenizer_.get_vocab()
    assert "alpha" in vocabulary and "beta" not in vocabulary  # seen once: unknown
    capped = fitted(make_reviews(100)["review"].tolist(), tokenizer={"vocabulary_size": 12, "min_frequency": 1})
    assert capped.vocabulary_size == 12


def test_normalisation_folds_case_width_and_accents() -> None:
    feature = fitted(["hello cafe world", "cafe hello"], tokenizer={"min_frequency": 1},
                     normalization={"lowercase": True, "unicode": "nfkc", "strip_accents": True})
    plain = feature.transform(pd.Series(["hello cafe"]))
    assert torch.equal(feature.transform(pd.Series(["ＨＥＬＬＯ   Café"])), plain)  # full width, case, accent, spaces
    kept = fitted(["café cafe"], tokenizer={"min_frequency": 1},
                  normalization={"lowercase": False, "unicode": "nfc", "strip_accents": False})
    first, second = kept.transform(pd.Series(["café cafe"]))[0].tolist()
    assert first != second


def test_long_texts_are_cut_and_counted(tmp_path: Path) -> None:
    frame = make_reviews(120)
    frame.loc[:9, "review"] = "great " * 5000  # ten texts of 5,000 words
    feature = fitted(frame["review"].tolist(), max_length=20, tokenizer={"min_frequency": 1})
    assert feature.truncated_["texts"] >= 10 and feature.truncated_["max_length"] == 20
    assert feature.transform(frame["review"]).shape[1] == 20
    config = text_config(features=[{"name": "review", "type": "text", "max_length": 20,
                                    "tokenizer": {"min_frequency": 1}}])
    pipeline = modelmill.Pipeline(config).fit(frame)
    assert pipeline.cleaning_ is not None
    assert pipeline.cleaning_.columns["review"]["truncated_texts"] >= 7  # of the training split's share
    long_one = pipeline.predict(pd.DataFrame({"review": ["awful " * 100_000]}))
    assert long_one["sentiment_predicted"].tolist() == ["other"]


def test_empty_missing_and_odd_values_are_texts() -> None:
    values = pd.Series(["", None, np.nan, "   ", b"caf\xe9 ok", "caf\udce9", 42, "😀 great"], dtype=object)
    texts = as_texts(values)
    assert texts[:4] == ["", "", "", "   "]
    assert texts[4] == "caf\ufffd ok" and texts[5] == "caf?"  # bad bytes and lone surrogates replaced
    assert texts[6] == "42" and texts[7] == "😀 great"
    feature = fitted(["great food 😀", "😀 lovely", "awful"], tokenizer={"min_frequency": 1})
    ids = feature.transform(values)
    assert ids.shape[0] == len(values)
    assert (ids[:4] == feature.pad_id_).all()  # nothing to say: all padding
    emoji = feature.tokenizer_.token_to_id("😀")
    assert emoji is not None and emoji in ids[7].tolist()  # an emoji is a token of its own


def test_every_value_of_a_column_of_bytes_and_emoji_trains_and_predicts() -> None:
    frame = make_reviews(200)
    frame["review"] = [text.encode("utf-8") if i % 3 == 0 else text for i, text in enumerate(frame["review"])]
    frame.loc[5, "review"] = b"\xff\xfe broken bytes great"
    frame.loc[6, "review"] = ""
    pipeline = modelmill.Pipeline(text_config()).fit(frame)
    predicted = pipeline.predict(frame.head(10))
    assert len(predicted) == 10 and predicted["sentiment_predicted"].notna().all()


def test_a_latin1_csv_is_read_and_predicted(tmp_path: Path) -> None:
    frame = make_reviews(200)
    frame["review"] = frame["review"].str.replace("😀", "").str.replace("🍕", "").str.replace("日本", "") \
        .str.replace("茶", "")  # characters latin-1 has
    path = tmp_path / "reviews.csv"
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    assert "crème".encode("latin-1") in path.read_bytes()  # really not UTF-8
    with pytest.raises(DataError, match="not valid UTF-8 at line .*data.encoding: latin-1"):
        modelmill.Pipeline(text_config(), base_dir=tmp_path).fit()  # never silently garbled
    config = text_config()
    config["data"]["encoding"] = "latin-1"  # type: ignore[index]
    pipeline = modelmill.Pipeline(config, base_dir=tmp_path).fit()
    assert pipeline.metrics_["accuracy"] > 0.8
    feature = pipeline.parts.features[0]
    assert isinstance(feature, TextFeature) and feature.tokenizer_.token_to_id("crème") is not None


def test_a_missing_pretrained_model_says_how_to_install_it() -> None:
    with pytest.raises(ConfigError, match="pip install no-such-encoder"):
        fitted(["a b"], encoder={"type": "pretrained", "model": "no-such-encoder"})
    with pytest.raises(ConfigError, match="holds no model"):
        fitted(["a b"], encoder={"type": "pretrained", "model": str(Path(__file__).parent)})


def test_pretrained_tokenizer_replaces_the_trained_one_and_caps_the_length(tmp_path: Path) -> None:
    folder = tiny_sentence_model(tmp_path / "tiny", max_seq_length=16)
    feature = fitted(["great coffee " * 40], max_length=256, encoder={"type": "pretrained", "model": str(folder)})
    ids = feature.transform(pd.Series(["great coffee " * 40, "tea"]))
    assert ids.shape[1] == 16 and feature.truncated_["texts"] == 1
    cls = feature.tokenizer_.token_to_id("[CLS]")
    assert ids[0, 0] == cls and ids[1, 0] == cls  # the model's own template
    again = reloaded(feature)
    assert again.model_dir_ is None and torch.equal(again.transform(pd.Series(["tea"])),
                                                    feature.transform(pd.Series(["tea"])))
