"""Config of the model types, one section per YAML ``type:``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from modelmill.config.section import Section


class LinearModelConfig(Section):
    """Linear, logistic or softmax regression (by the target type), trained by gradient descent."""

    type: Literal["linear"] = "linear"


class MLPModelConfig(Section):
    type: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [256, 128], description="Hidden layer sizes.")
    activation: Literal["relu", "tanh", "sigmoid", "gelu"] = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = True
    init: Literal["gaussian", "xavier", "kaiming", "zeros"] = "kaiming"


class TfidfLogisticModelConfig(Section):
    """TF-IDF of every text column's tokens (and of hashed pairs of neighbouring tokens),
    then logistic or softmax regression fitted by scikit-learn: the cheap, strong baseline
    for text. Other columns enter as they are (categories one-hot). Needs a class target."""

    type: Literal["tfidf_logistic"] = "tfidf_logistic"
    C: float = Field(10.0, gt=0, description="Inverse strength of the L2 penalty (scikit-learn's C).")
    ngrams: Literal[1, 2] = Field(2, description="1: single tokens; 2: also pairs of neighbouring tokens.")
    pair_buckets: int = Field(2**18, ge=1, le=2**24, description="Hash buckets for token pairs.")
    sublinear_tf: bool = Field(True, description="Count c weighs 1 + log(c) instead of c.")
    max_iter: int = Field(1000, ge=1, description="Solver iterations at most.")


class GBDTModelConfig(Section):
    """Gradient-boosted decision trees (LightGBM, an optional extra: pip install 'modelmill[trees]')
    on the features' raw values: numbers as they are, categories as codes split natively, dates
    as their parts, missing values as missing. Boosting stops early when the validation loss has
    not improved for `early_stopping_rounds`. Text and image columns are refused (use mlp)."""

    type: Literal["gbdt"] = "gbdt"
    trees: int = Field(2000, ge=1, le=100_000, description="Most boosting rounds; early stopping on the "
                       "validation split keeps the best number of them.")
    learning_rate: float = Field(0.05, gt=0, le=1, description="Shrinkage of each tree.")
    leaves: int = Field(31, ge=2, le=131_072, description="Most leaves per tree.")
    min_child_samples: int = Field(20, ge=1, description="Fewest training rows in a leaf.")
    feature_fraction: float = Field(1.0, gt=0, le=1, description="Share of the columns each tree sees.")
    bagging_fraction: float = Field(1.0, gt=0, le=1, description="Share of the rows each tree sees "
                                    "(drawn anew every tree when below 1).")
    l2: float = Field(0.0, ge=0, description="L2 penalty on the leaf values.")
    early_stopping_rounds: int | None = Field(
        100, ge=1, description="Stop when the validation loss has not improved for this many rounds "
        "(null: grow all `trees`).")
    refit: bool = Field(
        True, description="After early stopping has chosen the number of rounds, boost again that many rounds "
        "on the training and the validation rows together, so the kept trees have seen all the data (the "
        "validation curves in the report are those of the first fit).")
    monotone: dict[str, Literal[-1, 1]] = Field(
        default_factory=dict, description="Column → 1 (predictions never fall as it rises) or -1 (never "
        "rise): for number and binary columns, as regulators and credit policies often require.")


ModelConfig = Annotated[LinearModelConfig | MLPModelConfig | TfidfLogisticModelConfig | GBDTModelConfig,
                        Field(discriminator="type")]
