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


ModelConfig = Annotated[LinearModelConfig | MLPModelConfig | TfidfLogisticModelConfig, Field(discriminator="type")]
