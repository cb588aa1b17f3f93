"""Calibration maps and the decision threshold of a class target: how a fitted target turns
a model's probabilities into calibrated ones and into classes.

Only applying them lives here (NumPy, so serving needs nothing more); fitting them on
held-out predictions is the trainer's (``modelmill.training.decision``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelmill.errors import BundleError

ISOTONIC_MIN_ROWS = 1000
"""Fewest held-out rows for isotonic calibration: below this its step function follows the
noise of the few rows per step (scikit-learn's user guide gives the same order of
magnitude), so it is refused and sigmoid is suggested."""


@dataclass(frozen=True)
class Calibrator:
    """A monotone map of probabilities: Platt's sigmoid on the log-odds (``slope``,
    ``intercept``) or an isotonic step function, linear between its knots (``x``, ``y``)."""

    method: Literal["sigmoid", "isotonic"]
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "sigmoid":
            logit = np.log(np.clip(p, 1e-12, 1.0)) - np.log(np.clip(1 - p, 1e-12, 1.0))
            return 1.0 / (1.0 + np.exp(-(self.slope * logit + self.intercept)))
        # as scikit-learn's IsotonicRegression predicts: linear between knots, clipped outside
        return np.interp(p, np.asarray(self.x), np.asarray(self.y))

    def state(self) -> dict[str, Any]:
        if self.method == "sigmoid":
            return {"method": "sigmoid", "slope": self.slope, "intercept": self.intercept}
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Calibrator:
        method = state.get("method")
        if method == "sigmoid":
            return cls("sigmoid", slope=float(state["slope"]), intercept=float(state["intercept"]))
        if method == "isotonic":
            x, y = tuple(float(v) for v in state["x"]), tuple(float(v) for v in state["y"])
            if len(x) != len(y) or not x:
                raise BundleError("an isotonic calibration map needs as many knots as values, and at least one")
            return cls("isotonic", x=x, y=y)
        raise BundleError(f"unknown calibration method {method!r} in the bundle's target state")


def calibrate_classes(proba: np.ndarray, calibrators: list[Calibrator]) -> np.ndarray:
    """Each class's probability through its own map (one against the rest), rows renormalised."""
    mapped = np.stack([c.apply(proba[:, i]) for i, c in enumerate(calibrators)], axis=1)
    total = mapped.sum(axis=1, keepdims=True)
    return np.where(total > 0, mapped / np.where(total > 0, total, 1.0), 1.0 / proba.shape[1])
