"""Config of the model types, one section per YAML ``type:``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

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
    init: Literal["gaussian", "xavier", "kaiming", "zeros", "torch"] = Field(
        "kaiming", description="Initial dense weights (biases start at zero): gaussian (std 0.01), xavier "
        "(Glorot uniform), kaiming (He uniform), zeros, or torch's own nn.Linear default (its biases too).")


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
    refit: bool = Field(True, description="After scoring the fit on the validation split, solve again on the "
                        "training and validation rows together (nothing is chosen on them).")


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
    feature_fraction: float = Field(0.8, gt=0, le=1, description="Share of the columns each tree sees (drawn "
                                    "anew every tree; below 1 it lowers the variance of the ensemble of trees).")
    bagging_fraction: float = Field(1.0, gt=0, le=1, description="Share of the rows each tree sees "
                                    "(drawn anew every tree when below 1).")
    l2: float = Field(0.0, ge=0, description="L2 penalty on the leaf values.")
    extra_trees: bool = Field(False, description="Split each column at one random threshold instead of the best "
                              "(extremely randomised trees): more rounds, less variance; a diverse ensemble member.")
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


MemberConfig = Annotated[LinearModelConfig | MLPModelConfig | TfidfLogisticModelConfig | GBDTModelConfig,
                         Field(discriminator="type")]
"""A model type that can stand alone or be a member of an ensemble."""

Folds = int | Literal["auto"]
FOLDS_DESCRIPTION = (
    "Out-of-fold fitting: each member is fitted k times, each time holding out one k-th of the training and "
    "validation rows, and predicts with the mean of its k fits; the weights, threshold and calibration are "
    "chosen on the out-of-fold predictions of every row. auto: 5 folds below 10,000 rows, else the validation "
    "split (and always the validation split for a time split, where folds would train on the future). "
    "0: the validation split.")


class EnsembleModelConfig(Section):
    """Several model types fitted on the same features, then weighted by greedy ensemble selection on
    held-out predictions (Caruana et al., 2004): members that do not help get weight 0."""

    type: Literal["ensemble"] = "ensemble"
    members: list[MemberConfig] = Field(min_length=1, description="The model types to fit, each with its settings.")
    folds: Folds = Field("auto", description=FOLDS_DESCRIPTION)
    selection_rounds: int = Field(25, ge=1, le=1000, description="Greedy selection steps (with replacement): "
                                  "a member's weight is the share of steps that picked it.")

    @field_validator("folds")
    @classmethod
    def _folds(cls, value: Folds) -> Folds:
        return _check_folds(value)


Candidate = Literal["linear", "gbdt", "gbdt_xt", "gbdt_slow", "mlp", "tfidf_logistic"]


def candidate_config(name: Candidate) -> MemberConfig:
    """The settings ``auto`` fits a candidate with: the model type's defaults; ``gbdt_xt`` is
    gbdt with extremely randomised splits, a diverse second tree model (as AutoGluon's LightGBMXT)."""
    configs: dict[str, MemberConfig] = {
        "linear": LinearModelConfig(), "gbdt": GBDTModelConfig(), "gbdt_xt": GBDTModelConfig(extra_trees=True),
        "gbdt_slow": GBDTModelConfig(learning_rate=0.03, feature_fraction=0.6),
        "mlp": MLPModelConfig(), "tfidf_logistic": TfidfLogisticModelConfig()}
    return configs[name]


class AutoModelConfig(Section):
    """The default: fits the model types that suit the data (linear, gbdt and mlp on tables; for a text column
    also TF-IDF + logistic regression; mlp with each feature's own encoder, so a pretrained text encoder or the
    image CNN) within a time budget, then weighs them as an ensemble on held-out predictions."""

    type: Literal["auto"] = "auto"
    time_budget: float | None = Field(
        None, gt=0, description="Seconds for fitting the candidates (default: sized for the data, 60 s, 1 s "
        "per 1,000 rows x 10 columns, and 50 ms per row of each text or image column). A candidate is not "
        "started once the budget is spent; the first is always fitted, and a budget it overruns by far is an "
        "error that says how long it took.")
    candidates: list[Candidate] | None = Field(
        None, description="The model types to try (default: those that suit the columns).")
    folds: Folds = Field("auto", description=FOLDS_DESCRIPTION)
    selection_rounds: int = Field(25, ge=1, le=1000, description="Greedy selection steps (with replacement).")

    @field_validator("folds")
    @classmethod
    def _folds(cls, value: Folds) -> Folds:
        return _check_folds(value)


def _check_folds(value: Folds) -> Folds:
    if isinstance(value, int) and (value == 1 or value < 0 or value > 20):
        raise ValueError("folds must be auto, 0 (the validation split) or 2 to 20")
    return value


ModelConfig = Annotated[LinearModelConfig | MLPModelConfig | TfidfLogisticModelConfig | GBDTModelConfig
                        | EnsembleModelConfig | AutoModelConfig, Field(discriminator="type")]
