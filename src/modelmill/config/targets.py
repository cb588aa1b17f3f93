"""Config of the target: the column to predict, and for class targets how they decide
(threshold, costs, calibration)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from modelmill.config.section import Section


class TargetBase(Section):
    name: str = Field(description="Column to predict.")


Calibration = Literal["none", "sigmoid", "isotonic"]
CALIBRATION_DESCRIPTION = (
    "Map the model's probabilities so that they match observed frequencies, fitted on held-out predictions: "
    "sigmoid (Platt scaling, two numbers) or isotonic (a monotone step function; needs at least 1,000 "
    "held-out rows, below that it overfits).")


class CostsConfig(Section):
    """The cost of each kind of mistake, in any unit (only their ratio matters)."""

    false_positive: float = Field(1.0, ge=0, description="Cost of predicting the positive class wrongly.")
    false_negative: float = Field(1.0, ge=0, description="Cost of missing a positive.")

    @model_validator(mode="after")
    def _some_cost(self) -> CostsConfig:
        if self.false_positive == 0 and self.false_negative == 0:
            raise ValueError("costs are both 0: every threshold would cost the same; give at least one a positive cost")
        return self


class BinaryTargetConfig(TargetBase):
    type: Literal["binary"] = "binary"
    positive: str | None = Field(None, description="The positive class (default: inferred).")
    loss: Literal["bce"] = "bce"
    class_weights: Literal["none", "balanced"] | dict[str, float] = "none"
    threshold: float | Literal["auto"] = Field(
        0.5, description="Probability from which the positive class is predicted, or auto: chosen on held-out "
        "predictions, by the lowest total cost when `costs` are given, else by the best F1.")
    costs: CostsConfig | None = Field(None, description="What each kind of mistake costs (threshold: auto "
                                      "then minimises their total on held-out predictions).")
    calibration: Calibration = Field("none", description=CALIBRATION_DESCRIPTION)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0 < value < 1:
            raise ValueError("threshold must be between 0 and 1 (exclusive), or auto")
        return value

    @model_validator(mode="before")
    @classmethod
    def _costs_mean_auto(cls, data: object) -> object:
        """Costs without a threshold: the threshold is the one they choose."""
        if isinstance(data, dict) and data.get("costs") is not None and "threshold" not in data:
            return {**data, "threshold": "auto"}
        return data

    @model_validator(mode="after")
    def _costs_need_auto(self) -> BinaryTargetConfig:
        if self.costs is not None and self.threshold != "auto":
            raise ValueError(f"costs choose the threshold, and the threshold is fixed at {self.threshold}; "
                             "set threshold: auto (or remove costs)")
        return self


class CategoryTargetConfig(TargetBase):
    type: Literal["category"] = "category"
    loss: Literal["cross_entropy"] = "cross_entropy"
    class_weights: Literal["none", "balanced"] | dict[str, float] = "none"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    calibration: Calibration = Field("none", description=CALIBRATION_DESCRIPTION + " Per class, one against the "
                                     "rest, then renormalised.")


class NumberTargetConfig(TargetBase):
    type: Literal["number"] = "number"
    loss: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(1.0, gt=0)
    normalization: Literal["zscore", "none"] = Field(
        "zscore", description="Train on the standardised target; predictions are in original units."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_class_settings(cls, data: object) -> object:
        """Settings of class targets, named with why they do not apply (not just "extra input")."""
        if isinstance(data, dict):
            for key in ("calibration", "threshold", "costs"):
                if key in data:
                    raise ValueError(f"{key} is a setting of class targets (binary or category): it acts on "
                                     "predicted probabilities, and a number target has none; remove it, or "
                                     "make the target binary")
        return data


TargetConfig = Annotated[
    BinaryTargetConfig | CategoryTargetConfig | NumberTargetConfig, Field(discriminator="type")
]
