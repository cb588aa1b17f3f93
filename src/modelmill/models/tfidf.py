"""TF-IDF + logistic regression: the baseline every text model has to beat.

The tokens come from the text feature's own tokenizer (so serving tokenises as for any
model); pairs of neighbouring tokens are hashed into ``pair_buckets`` columns. The weights
are fitted by scikit-learn's solver and kept as buffers of a module whose forward computes
the same TF-IDF rows with sparse tensors, so prediction, bundles and serving need nothing
special.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modelmill.config.models import TfidfLogisticModelConfig
from modelmill.config.schema import TrainingConfig
from modelmill.errors import ConfigError, ModelError
from modelmill.features.base import Feature, Target
from modelmill.models.base import MODELS, Learner, RoundHook
from modelmill.models.fit import TensorData, TrainResult
from modelmill.models.inference import predict_raw

PAIR_PRIME = 1_000_003  # mixes the first token of a pair before the modulo


class TextColumns(nn.Module):
    """Token ids (batch, length) → TF-IDF entries (row, column, value), each row L2-normed."""

    idf: torch.Tensor

    def __init__(self, vocabulary: int, pad: int, pairs: int, sublinear: bool) -> None:
        super().__init__()
        self.vocabulary, self.pad, self.pairs, self.sublinear = vocabulary, pad, pairs, sublinear
        self.register_buffer("idf", torch.ones(vocabulary + pairs))

    @property
    def width(self) -> int:
        return self.vocabulary + self.pairs

    def counts(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Distinct (row, column) pairs and how often each occurs."""
        present = ids != self.pad
        rows = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(ids)
        row_parts, column_parts = [rows[present]], [ids[present]]
        if self.pairs:
            both = present[:, :-1] & present[:, 1:]
            hashed = (ids[:, :-1] * PAIR_PRIME + ids[:, 1:]) % self.pairs + self.vocabulary
            row_parts.append(rows[:, 1:][both])
            column_parts.append(hashed[both])
        keys = torch.cat(row_parts) * self.width + torch.cat(column_parts)
        unique, count = torch.unique(keys, return_counts=True)
        return unique // self.width, unique % self.width, count.to(torch.float32)

    def fit_idf(self, ids: torch.Tensor) -> None:
        """Smoothed inverse document frequency, as scikit-learn's TfidfVectorizer has it."""
        _, columns, _ = self.counts(ids)
        documents = torch.bincount(columns, minlength=self.width).to(torch.float64)
        rows = ids.shape[0]
        self.idf.copy_((torch.log((1 + rows) / (1 + documents)) + 1).to(torch.float32))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, columns, count = self.counts(ids)
        value = (1 + torch.log(count) if self.sublinear else count) * self.idf[columns]
        norm = torch.zeros(ids.shape[0]).index_add_(0, rows, value * value).sqrt()
        return rows, columns, value / norm[rows]


class TfidfLinear(nn.Module):
    """Sparse TF-IDF columns of the text inputs and the other inputs' fixed encodings, then
    one linear layer. ``weight`` and ``bias`` are buffers: a solver fits them, not autograd."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, texts: dict[int, TextColumns], others: dict[int, nn.Module], dense_width: int,
                 outputs: int) -> None:
        super().__init__()
        self.text_positions, self.other_positions = list(texts), list(others)
        self.text_columns: list[TextColumns] = list(texts.values())  # typed views of the registered lists
        self.other_encoders: list[nn.Module] = list(others.values())
        self.texts = nn.ModuleList(self.text_columns)
        self.others = nn.ModuleList(self.other_encoders)
        self.sparse_width = sum(t.width for t in self.text_columns)
        self.register_buffer("weight", torch.zeros(outputs, self.sparse_width + dense_width))
        self.register_buffer("bias", torch.zeros(outputs))

    @property
    def learned_parameters(self) -> int:
        return int(self.weight.numel() + self.bias.numel())

    def sparse(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, columns, values) of the TF-IDF part, columns offset per text input."""
        parts, offset = [], 0
        for position, columns in zip(self.text_positions, self.text_columns, strict=True):
            rows, cols, values = columns(inputs[position])
            parts.append((rows, cols + offset, values))
            offset += columns.width
        if not parts:
            empty = torch.empty(0, dtype=torch.int64)
            return empty, empty, torch.empty(0)
        return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]

    def dense(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        rows = inputs[0].shape[0]
        parts = [encoder(inputs[p]).float() for p, encoder in zip(self.other_positions, self.other_encoders,
                                                                   strict=True)]
        return torch.cat(parts, dim=1) if parts else torch.zeros(rows, 0)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        rows, columns, values = self.sparse(inputs)
        batch = inputs[0].shape[0]
        sparse = torch.sparse_coo_tensor(torch.stack([rows, columns]), values, (batch, self.sparse_width),
                                         check_invariants=False)
        out = torch.sparse.mm(sparse, self.weight[:, : self.sparse_width].t().contiguous())
        out = out + self.dense(inputs) @ self.weight[:, self.sparse_width:].t()
        return out + self.bias  # (batch, outputs)


def fixed_encoder(feature: Feature[Any], model_path: str) -> nn.Module:
    """A weightless encoding of a non-text feature (a solver fits only the last layer)."""
    encoder = feature.fixed_encoder()
    if encoder is None:
        raise ConfigError(f"feature {feature.name!r} ({getattr(feature.config, 'type', '?')}) needs a trained "
                          "encoder, which tfidf_logistic does not have; use model type mlp or linear for this "
                          "feature set", path=model_path)
    return encoder


@MODELS.register("tfidf_logistic", config=TfidfLogisticModelConfig)
class TfidfLogistic(Learner[TfidfLogisticModelConfig]):
    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        if target.task == "number":
            raise ConfigError("tfidf_logistic predicts classes, and the target is a number; use model type mlp "
                              "or linear for a number target", path="model.type")
        config = self.config
        texts: dict[int, TextColumns] = {}
        others: dict[int, nn.Module] = {}
        dense_width = 0
        for position, feature in enumerate(features):
            tokens = feature.token_space()
            if tokens is not None:
                pairs = config.pair_buckets if config.ngrams == 2 else 0
                texts[position] = TextColumns(tokens.vocabulary_size, tokens.pad_id, pairs, config.sublinear_tf)
            else:
                others[position] = fixed_encoder(feature, "model.type")
                dense_width += feature.output_dim
        return TfidfLinear(texts, others, dense_width, target.output_size)

    def trained_parameters(self, module: nn.Module) -> int:
        return module.learned_parameters if isinstance(module, TfidfLinear) else super().trained_parameters(module)

    @property
    def refits(self) -> bool:
        return self.config.refit

    def fit(self, module: nn.Module, train: TensorData, valid: TensorData, target: Target[Any],
            training: TrainingConfig, *, on_round: RoundHook | None = None) -> TrainResult:
        """One solve on the training rows, scored on the validation rows; with ``refit``, a
        second on both (nothing is chosen on the validation rows, so they are data to learn from)."""
        if not isinstance(module, TfidfLinear):
            raise ModelError(f"tfidf_logistic fits the module it builds, not a {type(module).__name__}")
        started = time.perf_counter()
        self._solve(module, train.inputs, train.target, target)
        held_out = predict_raw(module, valid.inputs) if len(valid) else None
        stopped = "fitted by the solver"
        if self.config.refit and valid.held_out and len(valid):
            pads = {i: int(c.pad) for i, c in zip(module.text_positions, module.text_columns, strict=True)}
            both = train.concat(valid, pads)
            self._solve(module, both.inputs, both.target, target)
            stopped += ", then again on the training and validation rows"
        seconds = time.perf_counter() - started
        return TrainResult([{"epoch": 1.0, "seconds": seconds}], 1, None, 1, seconds, stopped,
                           held_out_raw=held_out)

    def _solve(self, module: nn.Module, inputs: list[torch.Tensor], codes: torch.Tensor, target: Target[Any]) -> None:
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        if not isinstance(module, TfidfLinear):
            raise ModelError(f"tfidf_logistic fits the module it builds, not a {type(module).__name__}")
        labels = codes.to(torch.int64).numpy()
        known = labels >= 0
        inputs = [x[torch.from_numpy(known)] for x in inputs]
        labels = labels[known]
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ModelError(f"the training rows hold {len(classes)} class; a classifier needs at least 2")
        for position, columns in zip(module.text_positions, module.text_columns, strict=True):
            columns.fit_idf(inputs[position])
        rows, cols, values = module.sparse(inputs)
        matrix = sparse.hstack([
            sparse.csr_matrix((values.numpy(), (rows.numpy(), cols.numpy())), shape=(len(labels), module.sparse_width)),
            sparse.csr_matrix(module.dense(inputs).numpy()),
        ]).tocsr()
        weights = target.class_weights
        solver = LogisticRegression(C=self.config.C, max_iter=self.config.max_iter,
                                    class_weight=dict(enumerate(weights)) if weights else None)
        solver.fit(matrix, labels)
        with torch.no_grad():
            coefficients = torch.from_numpy(solver.coef_).float()
            intercepts = torch.from_numpy(solver.intercept_).float()
            if coefficients.shape[0] == 1 and module.weight.shape[0] > 1:
                # two classes seen: one logit for the second, i.e. softmax over (0, logit)
                coefficients = torch.cat([torch.zeros_like(coefficients), coefficients])
                intercepts = torch.cat([torch.zeros_like(intercepts), intercepts])
            if module.weight.shape[0] == 1:  # binary: one logit for the positive class
                module.weight.copy_(coefficients)
                module.bias.copy_(intercepts)
            else:  # classes never seen in training keep a probability of about zero
                module.weight.zero_()
                module.bias.fill_(-30.0)
                index = torch.from_numpy(solver.classes_)
                module.weight[index] = coefficients
                module.bias[index] = intercepts
