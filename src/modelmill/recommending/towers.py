"""The two-tower network (plain PyTorch), item features as tokens, and the early-stopping scorer
of :mod:`modelmill.recommending.two_tower`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch import nn

__all__ = ["TwoTowerNet", "item_tokens", "ranking_scorer"]

NEG_INF = float("-inf")
NUMBER_BINS = 10  # a numeric item feature becomes one token per decile


def item_tokens(frame: pd.DataFrame | None) -> tuple[sparse.csr_matrix | None, list[str]]:
    """Each item's feature tokens, (n_items, n_tokens) with each row summing to 1, and the
    tokens' names. A list column (values split on | or ,) gives a token per value, a category
    one per category, a number one per decile; a missing value gives none. None: no features."""
    if frame is None or frame.shape[1] == 0:
        return None, []
    rows: list[np.ndarray] = []
    names: list[str] = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            ranks = values.rank(pct=True, method="average")
            labels = np.floor(ranks.to_numpy(dtype=np.float64) * NUMBER_BINS - 1e-9).clip(0, NUMBER_BINS - 1)
            parts = [[f"{column}:q{int(v)}"] if np.isfinite(v) else [] for v in labels]
        else:
            parts = [[f"{column}={p.strip()}" for p in str(v).replace(",", "|").split("|") if p.strip()]
                     if not pd.isna(v) else [] for v in values]
        rows.append(np.array(parts, dtype=object))
        names.extend(sorted({t for p in parts for t in p} - set(names)))
    index = {name: i for i, name in enumerate(names)}
    per_item = [[index[t] for column in rows for t in column[i]] for i in range(len(frame))]
    indptr = np.concatenate([[0], np.cumsum([len(p) for p in per_item])]).astype(np.int64)
    indices = np.fromiter((t for p in per_item for t in p), dtype=np.int64, count=int(indptr[-1]))
    sizes = np.diff(indptr)
    data = np.repeat(1.0 / np.maximum(sizes, 1), sizes).astype(np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(frame), len(names))), names


def ranking_scorer(relevant: sparse.csr_matrix, k: int, n_items: int) -> Callable[[torch.Tensor, torch.Tensor],
                                                                                   dict[str, float]]:
    """NDCG@k and recall@k of validation outputs: (rows, k) item codes (as floats), the target
    each row's number in ``relevant``."""
    from modelmill.recommending.metrics import ranking_metrics

    def score(raw: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        rows = target.long().cpu().numpy()
        metrics = ranking_metrics(raw.long().cpu().numpy(), relevant[rows], [k], n_items)
        return {"ndcg": metrics[f"ndcg@{k}"], "recall": metrics[f"recall@{k}"]}

    return score


def _csr_buffers(matrix: sparse.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(matrix.indptr, dtype=torch.int64), torch.as_tensor(matrix.indices, dtype=torch.int64))


class TwoTowerNet(nn.Module):
    """Training inputs ``[users, items]`` (batch,) each → logits (batch, 1 + negatives) with the
    positive first (sampled softmax), or (batch, n_items) (full softmax); with ``per_user``, inputs
    ``[users]`` → (batch, n_items), each user's whole (dropped-out) bag as input. Evaluation inputs
    ``[users]`` → each user's top ``top`` item codes (batch, top) as floats, known items left out.

    The users' known items, the items' feature tokens and the sampling distribution are
    non-persistent buffers: they move with the module, but the checkpoints hold only weights.
    """

    def __init__(self, n_users: int, n_items: int, tokens: sparse.csr_matrix | None, known: sparse.csr_matrix,
                 counts: np.ndarray, *, factors: int, user_id: bool, history: bool, dropout: float,
                 negatives: int | None, power: float, top: int, per_user: bool = False) -> None:
        super().__init__()
        self.factors, self.dropout, self.negatives, self.top = factors, dropout, negatives, top
        self.per_user = per_user
        self.mask_known = True
        self.user = nn.Embedding(n_users, factors) if user_id else None
        self.history = nn.EmbeddingBag(n_items, factors, mode="sum") if history else None
        self.item = nn.Embedding(n_items, factors + 1)  # the last coordinate: the item's bias
        self.token = nn.EmbeddingBag(tokens.shape[1], factors + 1, mode="sum") if tokens is not None and \
            tokens.shape[1] else None
        for table in (self.user, self.history, self.item, self.token):
            if table is not None:
                nn.init.normal_(table.weight, std=0.05)
        indptr, indices = _csr_buffers(known)
        self.register_buffer("known_indptr", indptr, persistent=False)
        self.register_buffer("known_indices", indices, persistent=False)
        tokens = tokens if tokens is not None else sparse.csr_matrix((n_items, 0), dtype=np.float32)
        indptr, indices = _csr_buffers(tokens)
        self.register_buffer("token_offsets", indptr[:-1].contiguous(), persistent=False)
        self.register_buffer("token_indices", indices, persistent=False)
        self.register_buffer("token_weights", torch.as_tensor(tokens.data, dtype=torch.float32), persistent=False)
        # an item never seen in training has an untrained id vector: it is ranked by its features alone
        self.register_buffer("warm", torch.as_tensor(counts > 0, dtype=torch.float32)[:, None], persistent=False)
        q = np.power(counts, power) + 1e-3 * max(float(np.power(counts, power).mean()), 1e-9)
        q = q / q.sum()
        self.register_buffer("q", torch.as_tensor(q, dtype=torch.float32), persistent=False)
        log_q = np.log(q * (negatives or 1))  # log of the expected draws of each item per batch
        self.register_buffer("log_q", torch.as_tensor(log_q, dtype=torch.float32), persistent=False)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, factors + 1): id vector (warm items only) + mean feature vector; bias last."""
        out = self.item.weight * self.get_buffer("warm")
        if self.token is not None:
            out = out + self.token(self.get_buffer("token_indices"), self.get_buffer("token_offsets"),
                                   per_sample_weights=self.get_buffer("token_weights"))
        return out

    def user_vectors(self, users: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, factors): user-id vector + mean input vector of the user's known items, less
        ``leave_out`` (batch,) and, while training, each item dropped with probability ``dropout``."""
        out = self.user(users) if self.user is not None else torch.zeros(len(users), self.factors,
                                                                             device=users.device)
        if self.history is None:
            return out
        indptr = self.get_buffer("known_indptr")
        starts, sizes = indptr[users], indptr[users + 1] - indptr[users]  # (batch,)
        offsets = torch.cumsum(sizes, 0) - sizes
        bag = torch.repeat_interleave(torch.arange(len(users), device=users.device), sizes)  # (total,)
        position = starts[bag] + torch.arange(len(bag), device=users.device) - offsets[bag]
        items = self.get_buffer("known_indices")[position]  # (total,)
        keep = torch.ones(len(items), device=users.device)
        if leave_out is not None:
            keep = keep * (items != leave_out[bag]).float()
        if self.training and self.dropout:
            keep = keep * (torch.rand(len(items), device=users.device) >= self.dropout).float()
        kept = torch.zeros(len(users), device=users.device).index_add_(0, bag, keep)  # (batch,)
        weights = keep / kept.clamp(min=1.0)[bag]
        return out + self.history(items, offsets, per_sample_weights=weights)

    def export(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The arrays scoring needs: user-id vectors, input item vectors, item vectors (bias last)."""
        with torch.no_grad():
            users = self.user.weight if self.user is not None else torch.zeros(
                int(self.get_buffer("known_indptr").shape[0]) - 1, self.factors)
            history = self.history.weight if self.history is not None else torch.zeros(
                self.item.weight.shape[0], self.factors)
            return users.float(), history.float(), self.item_vectors().float()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if not self.training:
            return self._top(inputs[0])
        if self.per_user:  # one row per user: their (dropped-out) bag → logits over the whole catalogue
            user = self.user_vectors(inputs[0])
            table = self.item_vectors()
            return user @ table[:, :-1].T + table[:, -1]  # (batch, n_items)
        users, items = inputs
        user = self.user_vectors(users, leave_out=items)  # (batch, factors)
        user = torch.cat([user, torch.ones(len(user), 1, device=user.device, dtype=user.dtype)], dim=1)
        table = self.item_vectors()  # (n_items, factors + 1)
        if self.negatives is None:
            return user @ table.T  # (batch, n_items): the full softmax
        sampled = torch.multinomial(self.get_buffer("q"), self.negatives, replacement=True)  # (negatives,)
        log_q = self.get_buffer("log_q")
        positive = (user * table[items]).sum(dim=1, keepdim=True) - log_q[items][:, None]  # (batch, 1)
        negative = user @ table[sampled].T - log_q[sampled]  # (batch, negatives)
        negative = negative.masked_fill(sampled[None, :] == items[:, None], NEG_INF)  # accidental hits
        return torch.cat([positive, negative], dim=1)

    def _top(self, users: torch.Tensor) -> torch.Tensor:
        user = self.user_vectors(users)
        table = self.item_vectors()
        scores = user @ table[:, :-1].T + table[:, -1]  # (batch, n_items)
        if self.mask_known:
            indptr = self.get_buffer("known_indptr")
            sizes = indptr[users + 1] - indptr[users]
            rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), sizes)
            offsets = torch.cumsum(sizes, 0) - sizes
            position = indptr[users][rows] + torch.arange(len(rows), device=users.device) - offsets[rows]
            scores[rows, self.get_buffer("known_indices")[position]] = NEG_INF
        return torch.topk(scores, min(self.top, scores.shape[1]), dim=1).indices.float()  # (batch, top)
