"""Text as a bag of words: a vocabulary fitted on the training split, token ids padded to
the longest text (capped), averaged word embeddings. The full text issue adds tokenizers
and sequence encoders as further registrations."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.schema import TextFeatureConfig
from modelmill.features.base import FEATURES, Feature

MAX_LENGTH = 256
_WORD = re.compile(r"\w+", re.UNICODE)


class MeanEmbedding(nn.Module):
    """Mean of the word embeddings of each text, padding (id 0) left out."""

    def __init__(self, vocabulary_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, dim, padding_idx=0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (batch, length) -> (batch, dim)
        vectors = self.embedding(ids)  # (batch, length, dim)
        present = (ids > 0).unsqueeze(-1).float()  # (batch, length, 1)
        return (vectors * present).sum(dim=1) / present.sum(dim=1).clamp(min=1.0)


@FEATURES.register("text")
class TextFeature(Feature[TextFeatureConfig]):
    def _tokens(self, column: pd.Series) -> list[list[str]]:
        texts = column.astype("string").fillna("")
        if self.config.lowercase:
            texts = texts.str.lower()
        return [_WORD.findall(text) for text in texts]

    def fit(self, column: pd.Series) -> Self:
        counts = Counter(token for tokens in self._tokens(column) for token in tokens)
        frequent = [t for t, c in counts.most_common(self.config.max_tokens) if c >= self.config.min_frequency]
        self.vocabulary_ = frequent
        self.index_ = {token: i + 1 for i, token in enumerate(frequent)}  # 0 = padding/unknown
        self.fitted_ = True
        return self

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        rows = [[self.index_[t] for t in tokens if t in self.index_][:MAX_LENGTH] for tokens in self._tokens(column)]
        length = max((len(r) for r in rows), default=0) or 1
        ids = np.zeros((len(rows), length), dtype="int64")
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return torch.from_numpy(ids)  # (rows, length)

    def encoder(self) -> nn.Module:
        return MeanEmbedding(len(self.vocabulary_) + 1, self.config.embedding_dim)

    @property
    def output_dim(self) -> int:
        return self.config.embedding_dim

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"vocabulary": self.vocabulary_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.vocabulary_ = state["vocabulary"]
        self.index_ = {token: i + 1 for i, token in enumerate(self.vocabulary_)}

    def profile(self, column: pd.Series) -> dict[str, Any]:
        lengths = np.array([len(t) for t in self._tokens(column)], dtype="float64")
        return {
            "type": "text",
            "missing_rate": float(column.isna().mean()) if len(column) else 0.0,
            "mean_tokens": float(lengths.mean()) if lengths.size else 0.0,
        }
