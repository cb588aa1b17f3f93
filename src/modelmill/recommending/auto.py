"""``model.type: auto`` (the default): the model picked from the data before fitting.

EASE when no item features are configured and at most ``max_items`` items have training
interactions; the two-tower otherwise (it ranks items no one has interacted with by their
features, and its memory grows with the items, not their square). The pick is made on what a
user can see in their own config and data, not on the valid part: the two-tower's early
stopping already chooses its epoch on that part, so its valid score is optimistic against a
model with no epochs, and comparing them there would favour it unfairly.
"""

from __future__ import annotations

import numpy as np

from modelmill.config.recommend import AutoRecommendConfig, EaseConfig, RecommendConfig, TwoTowerConfig
from modelmill.recommending.interactions import Interactions

__all__ = ["resolved"]


def resolved(config: RecommendConfig, train: Interactions) -> tuple[RecommendConfig, str | None]:
    """``config`` with ``model: auto`` replaced by the model it picks for ``train`` (with that
    model's defaults), and why; any other model is returned as it is, with None."""
    if not isinstance(config.model, AutoRecommendConfig):
        return config, None
    limit = config.model.max_items
    with_interactions = int(np.count_nonzero(np.bincount(train.items, minlength=train.n_items)))
    if config.interactions.item_features:
        model: EaseConfig | TwoTowerConfig = TwoTowerConfig()
        why = "item features are configured: the two-tower ranks items with no interactions by them"
    elif with_interactions > limit:
        model = TwoTowerConfig()
        why = (f"{with_interactions:,} items have training interactions, more than model.max_items ({limit:,}) "
               "that a dense item-item model holds")
    else:
        model = EaseConfig(max_items=limit)
        why = (f"{with_interactions:,} items have training interactions (at most model.max_items, {limit:,}) and no "
               "item features are configured")
    return config.model_copy(update={"model": model}), f"auto picked {model.type}: {why}"
