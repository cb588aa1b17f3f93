"""A served recommender: one loaded, verified and warmed ``task: recommend`` version, its
predictor (the fitted model, the id spaces and every interaction the bundle knows) and its
request contract. The server holds it where it holds a
:class:`~modelmill.serving.models.ServedModel` for ``task: predict``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelmill.bundle import Bundle
from modelmill.config.recommend import RecommendServingConfig
from modelmill.config.serving import ServingConfig
from modelmill.errors import DataError, ModelError
from modelmill.recommending.predictor import Recommendation, RecommendPredictor
from modelmill.recommending.read import as_id
from modelmill.serving.problem import Problem, without_paths
from modelmill.serving.recommend_contract import (ID_TEXT, RecommendContract, RecommendRequest,
                                                  build_recommend_contract)

__all__ = ["ServedRecommender", "recommendation_json"]

_IDS_SHOWN = 20  # popular items listed by GET /v1/model
_NOBODY = "\x00no-such-user"  # a user no bundle holds (its popular items)


@dataclass
class ServedRecommender:
    """One loaded, verified recommend version: its predictor, its request contract and its metadata."""

    task: ClassVar[str] = "recommend"
    LIMITS: ClassVar[tuple[str, ...]] = ("max_k", "max_exclude", "max_body_bytes", "timeout_s", "queue_size")

    name: str
    version: str
    predictor: RecommendPredictor
    contract: RecommendContract
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    popular_items: list[str] = field(default_factory=list)  # GET /v1/model's, listed once at load
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, bundle: Bundle, version: str, serving: ServingConfig) -> ServedRecommender:
        """The version of ``bundle`` (read and verified), with its request contract. The limits
        ``max_k`` and ``max_exclude`` are those of ``serving``, the served settings: the bundle's
        ``serving:`` section under ``modelmill serve --max-k/--max-exclude``, else, where
        ``serving`` is not a recommender's, the bundle's own. An id may be as long as the
        bundle's longest (at least :data:`~modelmill.serving.recommend_contract.ID_TEXT`
        characters), so every id it holds can be asked for. A request without ``k`` gets the
        first of the bundle's ``evaluation.k`` (the length the model was judged on; at most
        ``max_k``). The popular items that GET
        /v1/model lists are listed here, once."""
        predictor = RecommendPredictor.from_bundle(bundle)
        limits = serving if isinstance(serving, RecommendServingConfig) else predictor.config.serving
        id_text = max([ID_TEXT, *map(len, predictor.user_ids), *map(len, predictor.item_ids)])
        contract = build_recommend_contract(max_k=limits.max_k, default_k=predictor.config.evaluation.k[0],
                                            max_exclude=limits.max_exclude, id_text=id_text,
                                            example=_example(predictor, limits.max_k))
        popular = predictor.recommend_many([_NOBODY], _IDS_SHOWN)[0].items if predictor.item_ids else []
        return cls(predictor.config.name, version, predictor, contract, bundle.manifest, bundle.metrics(), popular)

    def recommend(self, request: RecommendRequest) -> Recommendation:
        """The list of a checked request. What the predictor refuses as the request's fault (a
        :class:`~modelmill.errors.DataError`) is a 422 with its message; any other failure is the
        server's (a broken model), left to the app's handler: a 500."""
        try:
            return self.predictor.recommend(request.user, request.k, exclude=request.exclude, items=request.items)
        except DataError as exc:
            raise Problem(422, "invalid_request", without_paths(str(exc))[:1000]) from None

    def warm_up(self, batch_size: int) -> None:
        """List the example's items (a known user), and a new user's popular items, so the first
        real request pays no first-call costs and a broken bundle fails here (``batch_size``:
        unused, one list per request)."""
        request = self.contract.request_of(self.contract.adapter.validate_python(self.contract.example))
        for asked in (request, RecommendRequest(_NOBODY, 1, [], None)):
            # the predictor itself, not recommend(): a failure here is the bundle's (load_failed), no 422
            listed = self.predictor.recommend(asked.user, asked.k, exclude=asked.exclude, items=asked.items)
            if len(listed.items) != len(listed.scores) or len(listed.items) > asked.k:
                raise ModelError(f"warm-up listed {len(listed.items)} items with {len(listed.scores)} scores "
                                 f"for k = {asked.k}: the bundle's model is broken. Fix: train it again")

    def describe(self) -> dict[str, Any]:
        predictor = self.predictor
        spec = predictor.config.interactions
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "created_at": self.manifest.get("created_at"),
            "modelmill_version": self.manifest.get("modelmill_version"),
            "model_type": predictor.config.model.type,
            "inputs": [{"name": spec.user, "role": "user"}, {"name": spec.item, "role": "item"}],
            "catalogue": {"users": len(predictor.user_ids), "fitted_users": predictor.fitted_users,
                          "items": len(predictor.item_ids), "interactions": int(predictor.known.nnz),
                          "popular_items": list(self.popular_items)},
            "k": {"default": self.contract.default_k, "max": self.contract.max_k},
            "metrics": self.metrics,
            "example": self.contract.example,
        }


def recommendation_json(listed: Recommendation) -> dict[str, Any]:
    """A list as the response's fields: each item with its score (null where a score is not finite)."""
    return {"user": listed.user,
            "items": [{"item": item, "score": score if math.isfinite(score) else None}
                      for item, score in zip(listed.items, listed.scores, strict=True)],
            "known_user": listed.known_user, "fallback": listed.fallback, "unknown_items": listed.unknown_items}


def _example(predictor: RecommendPredictor, max_k: int) -> dict[str, Any]:
    """A request for the first user the bundle knows whose id reads back as itself (a new user's
    when there is none); its length is within the contract's limit, which is the longest id's."""
    user = next((u for u in predictor.user_ids[:1000] if as_id(u) == u), "a-new-user")
    return {"user": user, "k": min(5, max_k)}
