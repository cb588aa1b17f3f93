"""Interactions as codes: every stage of ``task: recommend`` works on this one checked form.

Users and items are numbered 0..n-1 in the order of their ids (sorted as strings); the ids
themselves are kept as strings (``42`` and ``"42"`` are one user), so that a request, a file and
the bundle agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["Interactions"]


@dataclass(frozen=True)
class Interactions:
    """Interactions of users with items, one row per (user, item) pair after duplicates are merged.

    Attributes:
        user_ids: Code → user id (the whole id space: users of every split share it).
        item_ids: Code → item id (the catalogue: items no one in this part interacted with included).
        users: Interaction → user code (int64).
        items: Interaction → item code (int64).
        weights: Interaction → weight (float32 > 0; 1 each where the config names no weight column).
        times: Interaction → time as float64 seconds since 1970 (None: the data has no time column).
        user_features: The configured user-feature columns, one row per user code (None: none configured).
        item_features: The configured item-feature columns, one row per item code (None: none configured).
    """

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    times: np.ndarray | None = None
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def matrix(self) -> sparse.csr_matrix:
        """Users × items, the weights as values (float32, sorted indices)."""
        shape = (self.n_users, self.n_items)
        matrix = sparse.csr_matrix((self.weights.astype(np.float32), (self.users, self.items)), shape=shape)
        matrix.sort_indices()
        return matrix

    def subset(self, mask: np.ndarray) -> Interactions:
        """The interactions where ``mask`` holds, in the same id spaces and with the same features."""
        return replace(self, users=self.users[mask], items=self.items[mask], weights=self.weights[mask],
                       times=None if self.times is None else self.times[mask])

    def counts(self) -> np.ndarray:
        """Interactions per user (n_users,)."""
        return np.bincount(self.users, minlength=self.n_users)
