"""Generated texts with a learnable sentiment, and a tiny sentence-transformers model folder
(random weights, a WordPiece tokenizer trained here) in the very format of the real
all-MiniLM-L6-v2 package, so the pretrained paths are tested fast and offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

POSITIVE = ["great", "tasty", "lovely", "delicious", "perfect", "fresh", "yummy", "superb"]
NEGATIVE = ["awful", "bland", "stale", "soggy", "rancid", "terrible", "mouldy", "gross"]
NEUTRAL = ["the", "coffee", "tea", "box", "arrived", "was", "and", "price", "taste", "bag", "it", "this",
           "café", "crème", "brûlée", "naïve", "😀", "🍕", "日本", "茶"]


def make_reviews(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Reviews of 3 to 30 words; ``sentiment`` is great when positive words outnumber negative
    ones; ``shop`` is a category that, with the sentiment, decides ``verdict`` (mixed inputs)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(rows):
        length = int(rng.integers(3, 31))
        good = bool(rng.random() < 0.5)
        mood = POSITIVE if good else NEGATIVE
        words = [str(rng.choice(mood)) if rng.random() < 0.3 else str(rng.choice(NEUTRAL)) for _ in range(length)]
        words[int(rng.integers(0, length))] = str(rng.choice(mood))  # at least one telling word
        texts.append(" ".join(words))
        labels.append("great" if good else "other")
    shop = rng.choice(["north", "south"], size=rows)
    sentiment = np.array(labels)
    verdict = np.where((sentiment == "great") == (shop == "north"), "keep", "drop")
    return pd.DataFrame({"review": texts, "shop": shop, "sentiment": sentiment, "verdict": verdict})


def tiny_sentence_model(folder: Path, *, pooling: str = "mean", max_seq_length: int = 64) -> Path:
    """A BERT of 2 blocks (hidden size 32) with random weights, saved as a
    sentence-transformers folder: config.json, model.safetensors, tokenizer.json,
    modules.json (Transformer, Pooling, Normalize), 1_Pooling/config.json and
    sentence_bert_config.json."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    corpus = make_reviews(200, seed=99)["review"].tolist()
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials,
                                                                    show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # steadier on 240 rows
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max"}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                  "do_lower_case": False}))
    return folder


def text_config(encoder: dict[str, object] | None = None, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "name": "reviews",
        "data": {"source": "reviews.csv", "split": {"method": "stratified", "test": 0.25, "seed": 0}},
        "features": [{"name": "review", "type": "text", "tokenizer": {"min_frequency": 1},
                      "encoder": encoder or {"type": "bag"}}],
        "target": {"name": "sentiment", "type": "binary"},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"epochs": 8, "batch_size": 32, "progress": False,
                     "optimizer": {"type": "adamw", "lr": 0.01}},
        "evaluation": {"plots": False, "report": False},
    }
    config.update(overrides)
    return config
