"""The config of ``task: recommend``: interactions between users and items (who bought, rated,
watched what, and when), ranked into top-k lists per user, judged on each user's latest
interactions held out.

    task: recommend
    name: movies
    data: {source: dataset:movielens}
    interactions: {user: userId, item: movieId, rating: rating, min_rating: 4, time: timestamp}

Each default is written once, here; ``modelmill render-config`` shows them all.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from modelmill.config.optimizers import AdamWConfig
from modelmill.config.schema import NAME_PATTERN, DataConfig, EarlyStoppingConfig, SplitConfig, TrainingConfig
from modelmill.config.section import Section
from modelmill.config.tracking import TrackingConfig
from modelmill.config.serving import ServingConfig


class RecommendDataConfig(DataConfig):
    """Where the interactions come from and how they are read (as for task: predict, without a split)."""

    # narrower than DataConfig's on purpose: the split of interactions is holdout:, per user
    split: SplitConfig | None = Field(None, exclude=True, description="Not for recommendations: each user's "
                                      "latest interactions are held out (see holdout).")  # type: ignore[assignment]

    shards: bool = Field(False, exclude=True, description="Not for task: recommend: its interactions are read on one "
                         "machine.")

    @field_validator("shards")
    @classmethod
    def _no_shards(cls, shards: bool) -> bool:
        if shards:
            raise ValueError("task: recommend reads its table on one machine: data.shards is for task: predict. "
                             "Fix: remove data.shards")
        return shards

    @field_validator("split")
    @classmethod
    def _no_split(cls, split: SplitConfig | None) -> None:
        if split is not None:
            raise ValueError("recommendations are judged on each user's latest interactions, never on a split of "
                             "rows. Fix: remove data.split and set holdout.test / holdout.valid")


class InteractionsConfig(Section):
    """Which columns hold the interactions (one row per user and item, or per event)."""

    user: str = Field(description="The user-id column.")
    item: str = Field(description="The item-id column.")
    rating: str | None = Field(None, description="A rating column (numbers); with min_rating, the interactions "
                               "kept as positives.")
    min_rating: float | None = Field(None, description="Interactions rated below this are left out (explicit "
                                     "ratings as implicit positives: 4 on a 5-star scale); none: every "
                                     "interaction is a positive.")
    weight: str | None = Field(None, description="A weight column (numbers ≥ 0: quantities, plays, seconds "
                               "watched); none: each interaction weighs 1.")
    time: str | None = Field(None, description="The time column (timestamps, dates, or numbers such as Unix "
                             "seconds); the held-out interactions are each user's latest. None: a seeded random "
                             "holdout per user (with a warning: it flatters every model).")
    time_format: str | None = Field(None, description="strftime format of the time column (default: inferred; "
                                    "numbers are read as Unix seconds).")
    duplicates: Literal["sum", "refuse"] = Field(
        "sum", description="Repeated (user, item) rows: sum (one interaction weighing the sum of the rows' weights, "
        "at the latest time; their number is reported) or refuse (a clear error naming the rows).")
    user_features: list[str] = Field(default_factory=list, description="Columns describing users (constant per "
                                     "user): categories, numbers, or lists separated by vertical bars or commas. "
                                     "Read and checked, but no model uses them yet (a fit says so): a user the "
                                     "bundle does not know is ranked from the items a request sends (EASE, the "
                                     "two-tower with history), else gets the popular list.")
    item_features: list[str] = Field(default_factory=list, description="Columns describing items (constant per "
                                     "item: genres, brand, price, year): the two-tower ranks an item no one has "
                                     "interacted with yet by them (model: auto picks it when they are set).")

    @model_validator(mode="after")
    def _columns_distinct(self) -> InteractionsConfig:
        named = [("user", self.user), ("item", self.item)]
        named += [(role, getattr(self, role)) for role in ("rating", "weight", "time") if getattr(self, role)]
        named += [(f"user_features[{i}]", c) for i, c in enumerate(self.user_features)]
        named += [(f"item_features[{i}]", c) for i, c in enumerate(self.item_features)]
        seen: dict[str, str] = {}
        for role, column in named:
            if column in seen:
                raise ValueError(f"{role}: column {column!r} is already the {seen[column]} column; each column "
                                 "has one role")
            seen[column] = role
        if self.min_rating is not None and self.rating is None:
            raise ValueError("min_rating needs a rating column. Fix: set interactions.rating, or remove min_rating")
        return self


class HoldoutConfig(Section):
    """Each user's latest interactions held out: the test part scores the model.

    The valid part, just before it, chooses the model's settings (EASE's L2 penalty, the
    two-tower's early stopping)."""

    test: float = Field(0.2, gt=0, lt=1, description="Fraction of each user's latest interactions held out "
                        "for the test metrics.")
    valid: float = Field(0.1, ge=0, lt=1, description="Fraction of each user's interactions just before the "
                         "test part, held out to choose the model's settings: EASE's L2 penalty, the two-tower's "
                         "early stopping (0: none; l2: auto takes 300, training runs all its epochs).")
    min_interactions: int = Field(3, ge=2, description="Users with fewer interactions keep them all for training.")

    @model_validator(mode="after")
    def _room_left(self) -> HoldoutConfig:
        if self.test + self.valid >= 0.9:
            raise ValueError(f"test + valid = {self.test + self.valid:g} leaves too little to train on. Fix: keep "
                             "their sum below 0.9")
        return self


class PopularityConfig(Section):
    """The items with the most interactions (weights summed), the same list for every user.

    The floor every recommender must beat."""

    type: Literal["popularity"] = "popularity"


class EaseConfig(Section):
    """EASE (Steck 2019): item-item weights fitted in closed form; a user's scores sum their items' rows.

    No training epochs and no seed: one regularised inverse of the items' co-occurrence matrix. It
    is dense in items (memory and the bundle grow as the square of the items modelled: 10,000
    items take 400 MB), so it models at most ``max_items`` items, those with the most interactions;
    items with no interactions in training (or beyond ``max_items``) are ranked after every
    modelled one (by their training counts), and a user none of whose items are modelled gets the
    popular list."""

    type: Literal["ease"] = "ease"
    l2: Annotated[float, Field(ge=1e-3, le=1e9)] | Literal["auto"] = Field(
        "auto", description="The L2 penalty on the item-item weights. auto: the value of 10, 30, 100, 300, "
        "1000, 3000, 10000 with the best valid NDCG@k, climbing from 300 (its right size grows with the "
        "interactions per item); 300 when nothing is held out for validation.")
    max_items: int = Field(10_000, ge=2, le=50_000, description="The most items modelled (those with the most "
                           "interactions): the fit holds up to 5 × max_items² float32 (10,000 items: 2 GB).")


class AutoRecommendConfig(Section):
    """The default: ease when no item features are set and at most max_items items have interactions, else two_tower.

    The two-tower ranks items no one has interacted with by their features, and its memory grows
    with the items, not with their square. EASE is the default because on movielens it beat the
    tuned peers and our two-tower on test NDCG@10 with no seed to draw (docs/benchmarks.md), as
    item-item models often do on catalogues of this size. The bundle's config names the model
    picked, with its defaults."""

    type: Literal["auto"] = "auto"
    max_items: int = Field(10_000, ge=2, le=50_000, description="ease up to this many items with training "
                           "interactions, two_tower beyond.")


class TwoTowerConfig(Section):
    """Two towers in PyTorch trained together through the shared trainer.

    A user's vector comes from the items they interacted with (and, optionally, their user id);
    an item's from its id and its features. Scores are dot products; the loss is a softmax over the whole catalogue per user
    (up to 50,000 items), else over each interaction's positive item and sampled negatives. A
    user's vector is computed from their known items, so a user the model has not seen, or items
    learnt of after training, change the recommendations without retraining; an item with no
    interactions is ranked by its features."""

    type: Literal["two_tower"] = "two_tower"
    factors: int = Field(64, ge=2, le=4096, description="Dimension of the user and item vectors.")
    user_id: bool = Field(False, description="Also learn a vector per user id, added to the vector of their "
                          "items. Off by default: with tens of interactions per user it mostly memorises "
                          "(movielens: lower valid NDCG@10), and without it a known user and a new one with "
                          "the same items get the same list.")
    history: bool = Field(True, description="Add the mean vector of the items the user interacted with (false: "
                          "plain matrix factorisation, which needs user_id).")
    negatives: Annotated[int, Field(ge=1)] | Literal["auto", "all"] = Field(
        "auto", description="auto: one training example per user, an exact softmax over the whole catalogue "
        "whose loss is minus the log-probabilities of the user's items (Mult-DAE's multinomial loss) when "
        "there are at most 50,000 items, else 1000 sampled negatives. A number: one example per "
        "interaction, that many items sampled per batch as negatives (in proportion to their interactions "
        "** 0.5, with the logQ sampling correction); all: one example per interaction, the exact softmax.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout of a user's known items while training (a "
                           "denoising objective: the model cannot lean on any one item).")

    @model_validator(mode="after")
    def _some_user_vector(self) -> TwoTowerConfig:
        if not (self.user_id or self.history):
            raise ValueError("user_id and history are both false, so users would have no vector. Fix: set "
                             "history: true (or user_id: true)")
        return self


def recommend_training() -> TrainingConfig:
    """A recommender's training defaults (chosen on movielens's valid part): batches of about
    1,024 interactions (one row per interaction, or as many users as hold that many), so a higher
    learning rate than the tabular defaults; weight decay regularises the embeddings; 100 epochs
    with more patience for a noisy ranking metric (the per-user softmax's best epoch on movielens:
    26-46; early stopping ends the fit)."""
    return TrainingConfig(epochs=100, batch_size=1024, optimizer=AdamWConfig(lr=0.01, weight_decay=0.5),
                          early_stopping=EarlyStoppingConfig(patience=15))


RecommendModelConfig = Annotated[AutoRecommendConfig | EaseConfig | PopularityConfig | TwoTowerConfig,
                                 Field(discriminator="type")]


class RecommendEvaluationConfig(Section):
    """The ranking metrics: recall, NDCG, MAP at each k, and catalogue coverage.

    The items a user already has are left out of their list."""

    plots: bool = True
    report: bool = True
    k: list[int] = Field(default_factory=lambda: [10], min_length=1, description="List lengths scored; the "
                         "first is the one early stopping and the summary use.")

    @field_validator("k")
    @classmethod
    def _positive(cls, k: list[int]) -> list[int]:
        bad = [v for v in k if v < 1 or v > 1000]
        if bad:
            raise ValueError(f"list lengths must be between 1 and 1000, got {bad}")
        return k


class RecommendServingConfig(ServingConfig):
    """The service, with the limits of ``/v1/recommend``."""

    max_k: int = Field(100, ge=1, le=10_000, description="The longest list a request may ask for.")
    max_exclude: int = Field(10_000, ge=0, description="The most item ids a request may exclude or send as the "
                             "user's known items.")


class RecommendConfig(Section):
    """``task: recommend``: the top items per user from their interactions."""

    task: Literal["recommend"] = "recommend"
    name: str = Field(pattern=NAME_PATTERN, description="Name of the runs.")
    data: RecommendDataConfig
    interactions: InteractionsConfig
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig)
    model: RecommendModelConfig = Field(default_factory=AutoRecommendConfig)
    training: TrainingConfig = Field(default_factory=recommend_training, description="The shared trainer's "
                                     "settings, with a recommender's defaults (recommend_training) under the "
                                     "keys a config leaves out.")

    evaluation: RecommendEvaluationConfig = Field(default_factory=RecommendEvaluationConfig)
    serving: RecommendServingConfig = Field(default_factory=RecommendServingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("training", mode="before")
    @classmethod
    def _recommend_defaults(cls, training: object) -> object:
        """``training: {epochs: 5}`` or ``training: {optimizer: {lr: 0.02}}`` keep the rest of the
        recommender's defaults: the keys given are laid over recommend_training's, not over the
        tabular defaults (a section of another type, such as ``optimizer: {type: sgd}``, replaces ours)."""
        if isinstance(training, TrainingConfig):  # from Python: the keys it was given, as from YAML
            training = training.model_dump(include=training.model_fields_set)
        if not isinstance(training, dict):
            return training
        defaults = recommend_training()
        whole = defaults.model_dump()  # nested sections whole (their type: included), top-level keys as set
        return _laid_over({key: whole[key] for key in defaults.model_fields_set}, training)


def _laid_over(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in given.items():
        base = defaults.get(key)
        same_kind = isinstance(base, dict) and isinstance(value, dict) and value.get("type", base.get("type")) == \
            base.get("type")
        merged[key] = _laid_over(base, value) if same_kind else value  # type: ignore[arg-type]
    return merged
