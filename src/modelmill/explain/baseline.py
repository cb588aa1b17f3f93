"""The baseline record that attributions are measured from: a typical record of the
training data, read from the bundle's reference profile, one value per input column.

It is a real record (values the features transform as they would a request), so its
output is an output the model actually gives, and categories, texts and images need no
special baseline tensor. Each column's value is the first of these that its feature can
transform: the profile's central value (the median of a numeric column's quantiles, the
most frequent category, the majority value of a binary column, the median date), the
empty text for a sequence of tokens (no words: the usual baseline for text, Sundararajan
et al. 2017, §3), the feature's own example value, and last a missing value, filled as in
training (for an image column: a flat picture of the training mean pixel, since the
example, a base64 PNG, is a request's form and not a table cell).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelmill.errors import ModelmillError
from modelmill.features import Feature


def baseline_record(features: list[Feature[Any]], profile: Mapping[str, Any]) -> pd.DataFrame:
    """One row (column → value) that every feature transforms: see the module docstring.

    Args:
        features: The fitted input features.
        profile: The bundle's reference profile (``{"features": {name: profile}}``).
    """
    profiles = profile.get("features", {}) if isinstance(profile, Mapping) else {}
    values: dict[str, Any] = {}
    for feature in features:
        values[feature.name] = _first_transformable(feature, _candidates(feature, profiles.get(feature.name) or {}))
    return pd.DataFrame([values], columns=[f.name for f in features])


def _first_transformable(feature: Feature[Any], candidates: Iterator[Any]) -> Any:
    for value in candidates:
        try:
            feature.transform(pd.Series([value], dtype=object, name=feature.name))
        except (ModelmillError, ValueError, TypeError, KeyError, OSError):
            continue
        return value
    return None


def _candidates(feature: Feature[Any], profile: Mapping[str, Any]) -> Iterator[Any]:
    """Baseline values for one column, best first. They are read from what the profile
    holds, not from the feature's type name (which only the feature may branch on)."""
    if feature.token_space() is not None:
        yield ""
    frequencies = profile.get("frequencies")
    if isinstance(frequencies, Mapping) and frequencies:
        yield max(frequencies.items(), key=lambda item: float(item[1]))[0]
    rate = profile.get("positive_rate")
    values = feature.schema().get("values")
    if isinstance(rate, (int, float)) and isinstance(values, list) and len(values) == 2:
        yield values[1] if rate >= 0.5 else values[0]
    quantiles = profile.get("quantiles")
    if isinstance(quantiles, list) and quantiles:
        centre = float(np.median(np.asarray(quantiles, dtype=np.float64)))
        if "first" in profile:  # a date's quantiles are in days since 1970
            yield (pd.Timestamp("1970-01-01") + pd.to_timedelta(round(centre), unit="D")).strftime("%Y-%m-%d")
        yield centre
    try:
        yield feature.example(dict(profile))
    except (ModelmillError, ValueError, TypeError, KeyError, ImportError):
        pass
    yield None
