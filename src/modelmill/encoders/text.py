"""Text encoders trained from scratch: token ids (batch, length), padding id 0, in; one
vector per text (batch, output_dim) out. Registered by the ``type`` of the text feature's
``encoder:`` config; the pretrained encoder lives in ``models/pretrained.py``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelmill.config.text import BagEncoderConfig, CNNTextEncoderConfig, RNNEncoderConfig, TransformerEncoderConfig
from modelmill.registry import Registry

PAD = 0

# type name → builder(config, vocabulary size, maximum length) → (module, output width)
TextEncoderBuilder = Callable[[Any, int, int], tuple[nn.Module, int]]
TEXT_ENCODERS: Registry[TextEncoderBuilder] = Registry("text encoder")


def trim(ids: torch.Tensor, pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the columns that are padding in every row of the batch (texts are padded to the
    longest of the whole column), and the mask of real tokens. A text with no token keeps
    one position, so pooling and attention always see at least one."""
    present = ids != pad
    length = max(int(present.sum(dim=1).max()), 1) if ids.shape[0] else 1
    ids, present = ids[:, :length], present[:, :length].clone()
    present[:, 0] = True
    return ids, present


def masked_mean(vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    weights = present.unsqueeze(-1).to(vectors.dtype)  # (batch, length, 1)
    return (vectors * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class BagEncoder(nn.Module):
    def __init__(self, vocabulary: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, dim, padding_idx=PAD)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, present = trim(ids)
        return masked_mean(self.embedding(ids), present)


class CNNTextEncoder(nn.Module):
    """Kim (2014): parallel convolutions of several widths, each max-pooled over time."""

    def __init__(self, vocabulary: int, config: CNNTextEncoderConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, config.embedding_dim, padding_idx=PAD)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.filters, k, padding=k // 2) for k in config.kernel_sizes)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, present = trim(ids)
        x = self.embedding(ids).transpose(1, 2)  # (batch, dim, length)
        pooled = []
        for conv in self.convs:
            y = F.relu(conv(x))[:, :, : ids.shape[1]]  # even widths give one extra position
            pooled.append(y.masked_fill(~present.unsqueeze(1), float("-inf")).amax(dim=2))
        return self.dropout(torch.cat(pooled, dim=1))


class RNNEncoder(nn.Module):
    def __init__(self, vocabulary: int, config: RNNEncoderConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, config.embedding_dim, padding_idx=PAD)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = cell(config.embedding_dim, config.hidden, num_layers=config.layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        self.directions = 2 if config.bidirectional else 1

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, present = trim(ids)
        lengths = present.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        last = hidden[-self.directions:]  # (directions, batch, hidden) of the top layer
        return torch.cat(list(last), dim=1)


class SmallTransformer(nn.Module):
    """Token + learned position embeddings, pre-norm transformer layers, masked mean pooling."""

    def __init__(self, vocabulary: int, max_length: int, config: TransformerEncoderConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, config.dim, padding_idx=PAD)
        self.position = nn.Embedding(max_length, config.dim)
        layer = nn.TransformerEncoderLayer(config.dim, config.heads, config.feedforward, config.dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.layers = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.scale = math.sqrt(config.dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, present = trim(ids)
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embedding(ids) * self.scale + self.position(positions)
        x = self.layers(x, src_key_padding_mask=~present)
        return masked_mean(self.norm(x), present)


@TEXT_ENCODERS.register("bag")
def _bag(config: BagEncoderConfig, vocabulary: int, max_length: int) -> tuple[nn.Module, int]:
    return BagEncoder(vocabulary, config.embedding_dim), config.embedding_dim


@TEXT_ENCODERS.register("cnn")
def _cnn(config: CNNTextEncoderConfig, vocabulary: int, max_length: int) -> tuple[nn.Module, int]:
    return CNNTextEncoder(vocabulary, config), config.filters * len(config.kernel_sizes)


@TEXT_ENCODERS.register("rnn")
def _rnn(config: RNNEncoderConfig, vocabulary: int, max_length: int) -> tuple[nn.Module, int]:
    return RNNEncoder(vocabulary, config), config.hidden * (2 if config.bidirectional else 1)


@TEXT_ENCODERS.register("transformer")
def _transformer(config: TransformerEncoderConfig, vocabulary: int, max_length: int) -> tuple[nn.Module, int]:
    return SmallTransformer(vocabulary, max_length, config), config.dim
