"""A fitted recommender from a bundle: the model, the id spaces of users and items, every
interaction the bundle knows (the *known items*: all interactions read at training, plus those
a ``modelmill recommend refresh`` added), and the items' popularity for users the bundle does not
know. What ``predict``, ``load`` and ``POST /v1/recommend`` use.

The known items are left out of every list, and they are what the two-tower computes a user's
vector from: a refreshed bundle changes a user's recommendations without retraining.

Popularity: a user the bundle knows is ranked by the ``popularity`` model itself, whose counts
are those of the *training part* (the evaluated model is the served one); the "popular" list
of a user the bundle does not know ranks by *every* known interaction (train, valid and test,
and what refreshes added). A model that does not rank from a user's items (popularity, or a
two-tower without ``history``) cannot use the items a request sends for an unknown user: that
user gets the popular list (fallback "popular"), the items sent left out of it.

Scaling: a list scores the whole catalogue exactly (one dot product per item, then a partial
sort), O(items × factors) per user: about a millisecond for tens of thousands of items. Beyond
a few million items an approximate index (FAISS, ScaNN) would take the place of exact scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from modelmill.bundle import Bundle
from modelmill.bundle.layout import MAIN_MODEL
from modelmill.bundle.weights import encode_weights, parse_weights
from modelmill.config.recommend import RecommendConfig
from modelmill.errors import BundleError, DataError
from modelmill.recommending.base import Recommender, RecommenderState
from modelmill.recommending.ranking import recommend_codes, top_k
from modelmill.recommending.read import as_id
from modelmill.recommending.registered import RECOMMENDERS

__all__ = ["KNOWN_FILE", "WEIGHTS_FILE", "RecommendPredictor", "Recommendation", "known_bytes", "known_from_bytes",
           "predictor_state"]

WEIGHTS_FILE = "weights.safetensors"  # the recommender's tensors (none for popularity)
KNOWN_FILE = "known_items.safetensors"  # the known items, users × items in CSR form (indptr, indices, weights)
POPULAR, HISTORY = "popular", "history"


@dataclass
class Recommendation:
    """One user's list, best first.

    Attributes:
        user: The user id asked about (a string).
        items: Item ids, best first (fewer than k when the catalogue runs out).
        scores: The model's score of each item (for the "popular" fallback: the item's summed weights).
        known_user: The bundle knows this user (fitted on, or added by a refresh).
        fallback: None (the model ranked the user's list), "history" (an unknown user ranked from
            the items the request sent) or "popular" (an unknown user with no items, or whose
            items the model cannot rank from: the most popular of every known interaction).
        unknown_items: Ids sent in ``items`` that are not in the catalogue (ignored).
    """

    user: str
    items: list[str]
    scores: list[float]
    known_user: bool
    fallback: str | None
    unknown_items: int = 0


@dataclass
class RecommendPredictor:
    """The fitted recommender with the bundle's users, items and known items.

    Attributes:
        config: The bundle's config.
        recommender: The fitted model.
        user_ids: Code → user id; codes below ``fitted_users`` are the users the model was fitted
            on, those after them were added by a refresh (the model knows them by their items).
        item_ids: Code → item id (the catalogue).
        known: (users, items) float32 CSR: every interaction the bundle knows, weights as values.
        fitted_users: How many users the model itself was fitted on.
    """

    config: RecommendConfig
    recommender: Recommender
    user_ids: list[str]
    item_ids: list[str]
    known: sparse.csr_matrix
    fitted_users: int
    _user_code: dict[str, int] = field(init=False, repr=False)
    _item_code: dict[str, int] = field(init=False, repr=False)
    popularity: np.ndarray = field(init=False, repr=False)  # (items,) float32: summed weights of the known items

    def __post_init__(self) -> None:
        if self.known.shape != (len(self.user_ids), len(self.item_ids)):
            raise BundleError(f"the known items are a {self.known.shape} matrix for {len(self.user_ids)} users and "
                              f"{len(self.item_ids)} items: the bundle is inconsistent")
        self._user_code = {user: code for code, user in enumerate(self.user_ids)}
        self._item_code = {item: code for code, item in enumerate(self.item_ids)}
        self.popularity = np.asarray(self.known.sum(axis=0), dtype=np.float32).ravel()

    @property
    def uses_history(self) -> bool:
        """Whether the model ranks a user from their items (so that an unknown user's items sent
        with a request can be used): the recommender's own ``uses_history`` where it has one,
        else the two-tower with ``history`` on."""
        default = self.config.model.type == "two_tower" and bool(getattr(self.config.model, "history", False))
        return bool(getattr(self.recommender, "uses_history", default))

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> RecommendPredictor:
        """The predictor of a recommend bundle already read and verified.

        Raises:
            BundleError: Not a recommend bundle, or its features.json, known items or model
                state do not describe one recommender of its users and items.
        """
        config = bundle.task_config()
        if not isinstance(config, RecommendConfig):
            raise BundleError(f"{bundle.path} is a `task: {config.task}` bundle, not a recommend one")
        where = bundle.path / "features.json"
        try:
            state: Any = bundle.features_state()
        except (TypeError, ValueError):  # features.json holds JSON, but not an object
            state = None
        user_ids, item_ids, fitted_users, recommender_json = _checked_state(state, where)
        artifacts = bundle.model_artifacts(MAIN_MODEL)
        if KNOWN_FILE not in artifacts:
            raise BundleError(f"bundle {bundle.path} holds no {KNOWN_FILE} (the known items of its users)")
        known = known_from_bytes(artifacts.pop(KNOWN_FILE), n_items=len(item_ids),
                                 where=str(bundle.path / KNOWN_FILE))
        tensors = parse_weights(artifacts.pop(WEIGHTS_FILE), where=bundle.path / WEIGHTS_FILE) \
            if WEIGHTS_FILE in artifacts else {}
        model = RECOMMENDERS.get(config.model.type, path="model.type")
        try:
            recommender = model.from_state(config, RecommenderState(recommender_json, tensors))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"{bundle.path}: the {config.model.type} model's state does not load ({exc!r}). Fix: "
                              "rebuild the bundle with `modelmill train`") from None
        if recommender_json.get("items", len(item_ids)) != len(item_ids):  # every model type states its catalogue
            raise BundleError(f"{bundle.path}: the {config.model.type} model ranks {recommender_json['items']} items, "
                              f"the bundle's catalogue has {len(item_ids)}. Fix: rebuild the bundle with "
                              "`modelmill train`")
        return cls(config, recommender, user_ids, item_ids, known, fitted_users)

    # ------------------------------------------------------------ one user

    def recommend(self, user: str, k: int, *, exclude: Sequence[str] = (),
                  items: Sequence[str] | None = None) -> Recommendation:
        """The top ``k`` items for ``user``, leaving out the user's known items and ``exclude``.

        Args:
            user: A user id, read as files are (``42``, ``42.0`` and ``" 42 "`` are ``"42"``).
            k: The list's length (at most; the catalogue may run out first).
            exclude: Item ids to leave out as well (unknown ids are ignored).
            items: The user's known items for this request: added to the bundle's for a known
                user; for an unknown one, what the list is ranked from (fallback "history")
                where the model ranks from items, else left out of the popular list.

        Raises:
            DataError: ``k`` below 1; a missing id (None, NaN, blank); ``items`` or ``exclude``
                given as one string instead of a list of ids.
        """
        _check_k(k)
        user = _id(user, "user")
        code = self._user_code.get(user)
        sent, unknown = self._codes(_ids(items, "items"))
        columns, weights = self._known_row(code, sent)
        row = _row(columns, weights, len(self.item_ids))
        model_code = code if code is not None and code < self.fitted_users else -1
        if (model_code == -1 and not len(columns)) or (code is None and not self.uses_history):
            fallback: str | None = POPULAR
            scores = self.popularity[None, :]
        else:
            fallback = HISTORY if code is None else None
            if not self.recommender.ranks_from(columns, fitted=model_code >= 0):
                fallback = POPULAR  # the model's own popular list (EASE: none of the user's items modelled)
            scores = self.recommender.scores(np.array([model_code], dtype=np.int64), row)
        dropped = np.union1d(columns, self._codes(_ids(exclude, "exclude"))[0])
        top = top_k(scores, k, _row(dropped, np.ones(len(dropped), np.float32), len(self.item_ids)))[0]
        top = top[top >= 0]
        return Recommendation(user, [self.item_ids[c] for c in top], [float(s) for s in scores[0, top]],
                              known_user=code is not None, fallback=fallback, unknown_items=unknown)

    def _codes(self, ids: list[str]) -> tuple[np.ndarray, int]:
        """Item codes of ``ids`` (sorted, distinct), and how many ids are not in the catalogue."""
        found = [self._item_code.get(i) for i in ids]
        codes = np.unique(np.array([c for c in found if c is not None], dtype=np.int64))
        return codes, sum(c is None for c in found)

    def _known_row(self, code: int | None, sent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The user's known item codes (sorted) and weights: the bundle's, and the items sent (weight 1)."""
        if code is None:
            return sent, np.ones(len(sent), np.float32)
        start, end = self.known.indptr[code], self.known.indptr[code + 1]
        columns = self.known.indices[start:end].astype(np.int64)
        weights = self.known.data[start:end].astype(np.float32)
        extra = np.setdiff1d(sent, columns, assume_unique=True)
        if not len(extra):
            return columns, weights
        merged = np.concatenate([columns, extra])
        order = np.argsort(merged, kind="stable")
        return merged[order], np.concatenate([weights, np.ones(len(extra), np.float32)])[order]

    # -------------------------------------------------------------- a batch

    def recommend_many(self, users: Sequence[str], k: int) -> list[Recommendation]:
        """The top ``k`` of each user (a batch: scored chunk by chunk), the known items left out;
        users the bundle does not know get the popular items. Ids are read as :meth:`recommend` reads them.

        Raises:
            DataError: ``k`` below 1; a missing user id; ``users`` given as one string.
        """
        _check_k(k)
        ids = _ids(users, "users")
        codes = np.array([self._user_code.get(u, -1) for u in ids], dtype=np.int64)
        counts = np.diff(self.known.indptr)
        ranked = (codes >= 0) & ((codes < self.fitted_users) | (counts[np.maximum(codes, 0)] > 0))
        results: list[Recommendation | None] = [None] * len(ids)
        if ranked.any():
            rows = self.known[codes[ranked]]
            model_codes = np.where(codes[ranked] < self.fitted_users, codes[ranked], -1)
            top, scores = recommend_codes(self.recommender, model_codes, rows, k)
            for row, (position, items, values) in enumerate(zip(np.flatnonzero(ranked), top, scores, strict=True)):
                keep = items >= 0
                own = self.recommender.ranks_from(rows.indices[rows.indptr[row]:rows.indptr[row + 1]],
                                                  fitted=bool(model_codes[row] >= 0))
                results[position] = Recommendation(ids[position], [self.item_ids[c] for c in items[keep]],
                                                   [float(s) for s in values[keep]], known_user=True,
                                                   fallback=None if own else POPULAR)
        if not ranked.all():
            popular = top_k(self.popularity[None, :], k)[0]
            popular = popular[popular >= 0]
            names, values = [self.item_ids[c] for c in popular], [float(s) for s in self.popularity[popular]]
            for position in np.flatnonzero(~ranked):
                results[position] = Recommendation(ids[position], list(names), list(values),
                                                   known_user=bool(codes[position] >= 0), fallback=POPULAR)
        return [r for r in results if r is not None]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k must be a whole number of items of at least 1, got {k!r}")


def _id(value: object, what: str) -> str:
    """One id as files are read (:func:`~modelmill.recommending.read.as_id`); a missing one refused."""
    text = as_id(value)
    if text is None:
        raise DataError(f"{what}: a missing id ({value!r}). Fix: give the id as a string or a whole number")
    return text


def _ids(values: Sequence[object] | None, what: str) -> list[str]:
    """A list of ids read as :func:`_id` reads one; one string in place of a list is refused (it
    would be read as its characters)."""
    if values is None:
        return []
    if isinstance(values, (str, bytes)):
        raise DataError(f"{what} must be a list of ids, got one string {values!r}. Fix: pass [{values!r}]")
    return [_id(value, what) for value in values]


def _checked_state(state: Any, where: Path) -> tuple[list[str], list[str], int, dict[str, Any]]:
    """features.json's user ids, item ids, fitted users and recommender state, checked."""
    problem = ""
    if not isinstance(state, dict):
        problem = "it is not a JSON object"
    else:
        missing = [key for key in ("recommender", "user_ids", "item_ids", "fitted_users") if key not in state]
        if missing:
            problem = f"it lacks {', '.join(missing)}"
        elif not isinstance(state["user_ids"], list) or not isinstance(state["item_ids"], list):
            problem = "user_ids and item_ids are not lists"
        elif not isinstance(state["recommender"], dict):
            problem = "recommender is not an object"
        elif isinstance(state["fitted_users"], bool) or not isinstance(state["fitted_users"], int) \
                or not 0 <= state["fitted_users"] <= len(state["user_ids"]):
            problem = (f"fitted_users ({state['fitted_users']!r}) is not a count of its "
                       f"{len(state['user_ids'])} users")
    if problem:
        raise BundleError(f"{where} does not describe a recommender's users and items: {problem}. Fix: rebuild the "
                          "bundle with `modelmill train` (or refresh its parent again)")
    return ([str(u) for u in state["user_ids"]], [str(i) for i in state["item_ids"]], int(state["fitted_users"]),
            state["recommender"])


def _row(columns: np.ndarray, weights: np.ndarray, n_items: int) -> sparse.csr_matrix:
    """One user's items as a (1, n_items) CSR row (``columns`` sorted)."""
    return sparse.csr_matrix((weights.astype(np.float32), columns.astype(np.int32),
                              np.array([0, len(columns)], dtype=np.int32)), shape=(1, n_items))


# ------------------------------------------------------------------ the bundle's form


def predictor_state(recommender_json: dict[str, Any], user_ids: list[str], item_ids: list[str],
                    fitted_users: int) -> dict[str, Any]:
    """What features.json holds: the recommender's JSON state and the id spaces."""
    return {"recommender": recommender_json, "user_ids": list(user_ids), "item_ids": list(item_ids),
            "fitted_users": int(fitted_users)}


def known_bytes(known: sparse.csr_matrix) -> bytes:
    """The known items as safetensors: ``indptr`` and ``indices`` (int64), ``weights`` (float32)."""
    import torch

    known = known.tocsr()
    known.sort_indices()
    return encode_weights({"indptr": torch.from_numpy(known.indptr.astype(np.int64)),
                           "indices": torch.from_numpy(known.indices.astype(np.int64)),
                           "weights": torch.from_numpy(known.data.astype(np.float32))})


def known_from_bytes(data: bytes, *, n_items: int, where: str) -> sparse.csr_matrix:
    """:func:`known_bytes`'s output back as a CSR matrix, checked (offsets from 0, never
    decreasing, ending at the number of entries; item codes inside the catalogue)."""
    tensors = parse_weights(data, where=Path(where))
    try:
        indptr, indices, weights = (tensors[name].numpy() for name in ("indptr", "indices", "weights"))
        if indptr.ndim != 1 or indices.ndim != 1 or weights.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 \
                or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices) or len(indices) != len(weights) \
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_items)):
            raise ValueError("the arrays do not describe a matrix of the bundle's items")
        matrix = sparse.csr_matrix((weights.astype(np.float32), indices.astype(np.int32), indptr.astype(np.int64)),
                                   shape=(len(indptr) - 1, n_items))
    except (KeyError, ValueError) as exc:
        raise BundleError(f"{where} does not hold the known items ({exc})") from None
    matrix.sort_indices()
    return matrix
