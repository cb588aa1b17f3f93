"""What a run's report shows of why the model decides: the columns' global importance
(permutation on the test split, which also goes on the model card), a few test records
explained column by column, and for picture and text columns their saliency maps and
highlighted tokens."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from modelmill.evaluation.report import RawHtml
from modelmill.predictor import Predictor

IMPORTANCE_ROWS = 2000  # test rows the permutation importance is measured on, at most
IMPORTANCE_REPEATS = 3
TOP_COLUMNS = 5  # columns shown per explained record
MAP_STEPS = 256  # the most Integrated Gradients steps a map in a report or a CLI page takes (its gap is shown)


@dataclass
class ReportExplanations:
    importance: dict[str, float]
    sections: dict[str, Any] = field(default_factory=dict)
    pngs: dict[str, bytes] = field(default_factory=dict)


def explain_for_report(predictor: Predictor, test: pd.DataFrame, profile: dict[str, Any], *,
                       records: int, seed: int = 0) -> ReportExplanations:
    """Importance on (up to 2,000 of) the test rows, and the first ``records`` test rows
    explained; maps for each picture and text column the model reads through a network."""
    from modelmill.errors import ModelError
    from modelmill.explain.attributions import attributions
    from modelmill.explain.importance import importance

    ranked = importance(predictor, _sample(predictor, test, seed), repeats=IMPORTANCE_REPEATS, seed=seed)
    finite = {column: (mean, std) for column, (mean, std) in ranked.items() if math.isfinite(mean)}
    result = ReportExplanations({column: float(mean) for column, (mean, _) in finite.items()})
    heading = ("Global importance (permutation on the test split: how much the metric drops when a column is "
               "shuffled)")
    result.sections[heading] = {column: {"importance": round(mean, 5), "spread": round(std, 5)}
                                for column, (mean, std) in finite.items()} if finite else \
        "not measured: the metric is undefined on these rows (one class only?)"
    shown = test.head(records)
    if not len(shown):
        return result
    try:
        explained = attributions(predictor, shown, profile=profile)
    except ModelError as exc:  # Captum missing, say: the importance above stays
        result.sections["Records explained"] = f"not made: {exc}"
        return result
    result.sections[f"{len(shown)} test records explained ({explained.method}; attributions to the "
                    f"{explained.explained[0].split(' of ')[0]}, from the baseline record)"] = [
        {"record": i, "explained": explained.explained[i], "output": round(float(explained.output[i]), 4),
         "baseline": round(float(explained.baseline[i]), 4),
         "columns that moved it most": " · ".join(f"{column} {value:+.3f}"
                                                   for column, value in explained.ranked(i)[:TOP_COLUMNS])}
        for i in range(len(shown))]
    pngs, texts = column_maps(predictor, shown)
    result.pngs.update(pngs)
    result.sections.update({heading: RawHtml(page) for heading, page in texts.items()})
    return result


def _sample(predictor: Predictor, test: pd.DataFrame, seed: int) -> pd.DataFrame:
    """At most ``IMPORTANCE_ROWS`` test rows; for classes, the same share of each class (a
    rare class kept in, or a metric such as ROC-AUC is undefined on the sample)."""
    if len(test) <= IMPORTANCE_ROWS:
        return test
    share = IMPORTANCE_ROWS / len(test)
    if predictor.target.task == "number":
        return test.sample(n=IMPORTANCE_ROWS, random_state=seed)
    labels = test[predictor.target.name].astype("string").fillna("")
    return test.groupby(labels, group_keys=False).sample(frac=share, random_state=seed)


def column_maps(predictor: Predictor, shown: pd.DataFrame) -> tuple[dict[str, bytes], dict[str, str]]:
    """Saliency maps of picture columns (PNG by file name) and highlighted tokens of text
    columns (HTML by heading), for the records of ``shown``: torch networks only (a column of
    another kind, or a model of another kind, has none)."""
    from modelmill.errors import ModelError
    from modelmill.explain.maps import highlighted_html, image_saliency, saliency_png, token_attributions

    result = ReportExplanations({})
    texts: dict[str, str] = {}
    for feature in predictor.features:
        try:
            pictures = image_saliency(predictor, shown, feature.name, max_steps=MAP_STEPS)
        except ModelError:
            pictures = None
        if pictures is not None:
            tensors = [t for f, t in zip(predictor.features, predictor.inputs(shown)) if f.name == feature.name][0]
            for i, values in enumerate(pictures.values):
                picture = tensors[i:i + 1][0].numpy()
                result.pngs[f"saliency_{_file_name(feature.name)}_{i}.png"] = saliency_png(
                    picture, values, title=f"record {i}: attribution")
            continue
        try:
            tokens = token_attributions(predictor, shown, feature.name, max_steps=MAP_STEPS)
        except ModelError:
            continue
        assert tokens.tokens is not None
        texts[f"Tokens of {feature.name!r} (green: towards the output explained, red: against)"] = \
            "".join(f"<p><b>record {i}</b>: {highlighted_html(words, values)}</p>"
                    for i, (words, values) in enumerate(zip(tokens.tokens, tokens.values)))
    return result.pngs, texts


def _file_name(column: str) -> str:
    """A column name as part of a file name (no separators, nothing hidden)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", column).strip(".") or "column"
