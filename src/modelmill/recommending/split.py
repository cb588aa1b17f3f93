"""The holdout of ``task: recommend``: each user's latest interactions are the test part, those
just before them the valid part, the rest the training part.

Holding out per user and by time asks the question a recommender is used for (what will this
user take next?) and leaves no future interaction in training; a random split of rows would
let a model learn a user's later tastes and flatter it.
"""

from __future__ import annotations

import numpy as np

from modelmill.config.recommend import HoldoutConfig
from modelmill.errors import DataError
from modelmill.recommending.interactions import Interactions

__all__ = ["holdout_split", "holdout_sizes"]


def holdout_sizes(counts: np.ndarray, holdout: HoldoutConfig) -> tuple[np.ndarray, np.ndarray]:
    """Interactions held out per user for the test and the valid parts, ``(n_users,)`` each.

    A user with ``min_interactions`` or more gives ``test`` of them (rounded, at least one) to
    the test part and ``valid`` of them (rounded, possibly none) to the valid part, keeping at
    least one for training (a user with 2 and ``test: 0.8`` gives 1, not 2, to test); a user with
    fewer keeps them all for training.
    """
    counts = np.asarray(counts, dtype=np.int64)
    eligible = counts >= holdout.min_interactions  # min_interactions ≥ 2: one to test, one to train at least
    n_test = np.where(eligible, np.maximum(1, np.floor(holdout.test * counts + 0.5)), 0).astype(np.int64)
    n_test = np.minimum(n_test, np.maximum(counts - 1, 0))  # one kept to train on: else the user is tested cold
    n_valid = np.where(eligible, np.floor(holdout.valid * counts + 0.5), 0).astype(np.int64)
    n_valid = np.clip(n_valid, 0, np.maximum(counts - 1 - n_test, 0))
    return n_test, n_valid


def holdout_split(data: Interactions, holdout: HoldoutConfig, *,
                  seed: int) -> tuple[Interactions, Interactions, Interactions, list[str]]:
    """The train, valid and test parts of ``data`` (same id spaces and features), and warnings.

    Each user's interactions are ordered by time, ties by their order in ``data`` (a later row
    is later); the latest go to test, those before them to valid (see :func:`holdout_sizes`).
    Without a time column the order is a seeded random one per user, with a warning.

    Raises:
        DataError: No user has ``holdout.min_interactions`` interactions (nothing to test on).
    """
    warnings: list[str] = []
    counts = data.counts()
    n_test, n_valid = holdout_sizes(counts, holdout)
    if not n_test.any():
        raise DataError(f"no user has {holdout.min_interactions} interactions or more, so none can be held out to "
                        f"test on (the most a user has: {int(counts.max(initial=0))}). Fix: lower "
                        "holdout.min_interactions, or use more interactions per user")
    small = int(((counts > 0) & (n_test == 0)).sum())
    if small:
        warnings.append(f"{small} user(s) with fewer than {holdout.min_interactions} interactions keep them all "
                        "for training (holdout.min_interactions)")
    if data.times is None:
        when = np.random.default_rng(seed).random(len(data))
        warnings.append(f"no time column: each user's held-out interactions are drawn at random (seed {seed}), "
                        "which flatters every model (later interactions are trained on). Fix: set "
                        "interactions.time")
    else:
        when = data.times
    position = np.arange(len(data))
    order = np.lexsort((position, when, data.users))  # by user, then time, then row
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    users = data.users[order]
    rank = np.empty(len(data), dtype=np.int64)  # 0: the user's earliest interaction
    rank[order] = position - starts[users]
    from_end = counts[data.users] - rank  # 1: the user's latest interaction
    test = from_end <= n_test[data.users]
    valid = ~test & (from_end <= n_test[data.users] + n_valid[data.users])
    return data.subset(~test & ~valid), data.subset(valid), data.subset(test), warnings
