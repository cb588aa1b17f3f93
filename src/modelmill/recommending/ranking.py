"""Top-k lists from scores: exact, over the whole catalogue, vectorised.

How it scales: a list costs one score per catalogue item and a partial sort (``np.partition``,
linear in the catalogue) before sorting only the k chosen, so a user's list is O(n_items + k log k)
and a batch is scored chunk by chunk of users, at most ``_CELLS`` scores at a time (the working
arrays of a chunk are a few times its float32 scores: ~0.4 GiB at ``_CELLS``, whatever the
catalogue size). Tied scores cost no more: each row keeps at most k of its ties.
Exact scoring stays in milliseconds up to a few hundred thousand items; beyond that an
approximate index (not needed at this size) would replace the full scoring.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from modelmill.recommending.base import Recommender

__all__ = ["recommend_codes", "top_k"]

_CELLS = 2**25  # scores (users × items) per chunk: 128 MiB of float32, the chunk's other arrays ~2× that


def top_k(scores: np.ndarray, k: int, exclude: sparse.csr_matrix | None = None) -> np.ndarray:
    """The k best items of each row, best first.

    Args:
        scores: (n, n_items) scores, higher is better; an item scored NaN or -inf is never chosen.
        k: List length (≥ 1).
        exclude: (n, n_items) items never to recommend to the row's user (its stored entries, whatever
            their values): the items the user already has, or those a request excludes.

    Returns:
        (n, k) int64 item codes, ties broken by the lower code; -1 pads a row with fewer than k
        items left to recommend.
    """
    items, _ = _top(np.array(scores, dtype=np.float64, copy=True), k, exclude)
    return items


def recommend_codes(recommender: Recommender, users: np.ndarray, known: sparse.csr_matrix, k: int,
                    exclude: sparse.csr_matrix | None = None, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each user's top k from the recommender's scores, never one of their known items.

    Args:
        recommender: A fitted recommender.
        users: (n,) user codes (-1: a user it was not fitted on).
        known: (n, n_items) each user's known items: the recommender computes the user's vector
            from them, and they are left out of the list (a user is never recommended what they have).
        k: List length.
        exclude: (n, n_items) more items to leave out (a request's ``exclude``); None: none.
        chunk: Most users scored at a time; fewer for a large catalogue, so that a chunk holds at
            most ``_CELLS`` scores (its memory does not grow with the catalogue).

    Returns:
        Items (n, k) int64 with -1 padding, and their scores (n, k) float32, NaN at the padding.
    """
    users = np.asarray(users, dtype=np.int64)
    known = sparse.csr_matrix(known)
    # the stored entries of known and exclude, whatever their values (an entry stored as 0 still counts)
    leave_out = _pattern(known) if exclude is None else (_pattern(known) + _pattern(exclude)).tocsr()
    n, n_items = len(users), known.shape[1]
    step = max(1, min(chunk, _CELLS // max(n_items, 1)))
    items = np.full((n, k), -1, dtype=np.int64)
    values = np.full((n, k), np.nan, dtype=np.float32)
    for start in range(0, n, step):
        stop = min(start + step, n)
        scores = np.asarray(recommender.scores(users[start:stop], known[start:stop]), dtype=np.float32)
        if not (scores.flags.writeable and scores.flags.owndata):  # a read-only or shared view: excluded items
            scores = scores.copy()  # are set to -inf in the scores, never in the model's own arrays
        items[start:stop], values[start:stop] = _top(scores, k, leave_out[start:stop])
    return items, values


def _pattern(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    """A copy of ``matrix`` with 1 at each stored entry: adding two patterns keeps every entry
    (adding the values would drop those that sum to 0)."""
    pattern = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
    pattern.data[:] = 1
    return pattern


def _top(scores: np.ndarray, k: int, exclude: sparse.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    """The top k of ``scores`` (changed in place: excluded items set to -inf) and their scores."""
    if k < 1:
        raise ValueError(f"a list holds at least one item, got k={k}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be (users, items), got shape {scores.shape}")
    n, n_items = scores.shape
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        exclude = sparse.csr_matrix(exclude)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude is {exclude.shape}, the scores {scores.shape}: one row per user, one column "
                             "per item")
        rows = np.repeat(np.arange(n), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    kept = min(k, n_items)
    items = np.full((n, k), -1, dtype=np.int64)
    values = np.full((n, k), np.nan, dtype=np.float32)
    if n == 0 or kept == 0:
        return items, values
    # the kept-th largest score of each row, then exactly `kept` items per row: those above it,
    # and of those equal to it the lowest codes (np.partition alone breaks ties at random)
    threshold = np.partition(scores, n_items - kept, axis=1)[:, n_items - kept]  # (n,)
    above = scores > threshold[:, None]  # (n, n_items)
    tied = scores == threshold[:, None]
    room = kept - above.sum(axis=1)  # (n,) ties still to take
    _first_ties(tied, room)
    above |= tied  # exactly `kept` chosen per row
    codes = np.nonzero(above)[1].reshape(n, kept)  # (n, kept) ascending codes per row
    best = np.take_along_axis(scores, codes, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")  # stable: ties stay by lower code
    codes = np.take_along_axis(codes, order, axis=1)
    best = np.take_along_axis(best, order, axis=1)
    absent = np.isneginf(best)  # fewer than k items left: padding
    items[:, :kept] = np.where(absent, -1, codes)
    values[:, :kept] = np.where(absent, np.nan, best)
    return items, values


def _first_ties(tied: np.ndarray, room: np.ndarray) -> None:
    """Keep (in place) only the ``room`` lowest codes of each row's tied items.

    Only the rows with more ties than room are touched, one at a time: listing every tie of
    the chunk at once would cost memory in the number of ties, which is the whole chunk when
    scores are flat (a cold user's, or the many items no one took in a popularity list).
    """
    counts = tied.sum(axis=1)  # (n,)
    for row in np.flatnonzero(counts > room):
        cut = np.flatnonzero(tied[row])[room[row]]  # the first tied code past the room
        tied[row, cut:] = False
