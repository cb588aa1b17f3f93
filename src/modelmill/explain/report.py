"""What a run's report shows of why the model decides: the columns' global importance
(permutation on the test split, which also goes on the model card), a few test records
explained column by column, and for picture and text columns their saliency maps and
highlighted tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from modelmill.evaluation.report import RawHtml
from modelmill.predictor import Predictor

IMPORTANCE_ROWS = 2000  # test rows the permutation importance is measured on, at most
IMPORTANCE_REPEATS = 3
TOP_COLUMNS = 5  # columns shown per explained record


@dataclass
class ReportExplanations:
    importance: dict[str, float]
    sections: dict[str, Any] = field(default_factory=dict)
    pngs: dict[str, bytes] = field(default_factory=dict)


def explain_for_report(predictor: Predictor, test: pd.DataFrame, profile: dict[str, Any], *,
                       records: int, seed: int = 0) -> ReportExplanations:
    """Importance on (up to 2,000 of) the test rows, and the first ``records`` test rows
    explained; maps for each picture and text column the model reads through a network."""
    from modelmill.explain.attributions import attributions
    from modelmill.explain.importance import importance

    rows = test.sample(n=min(len(test), IMPORTANCE_ROWS), random_state=seed) if len(test) > IMPORTANCE_ROWS else test
    ranked = importance(predictor, rows, repeats=IMPORTANCE_REPEATS, seed=seed)
    result = ReportExplanations({column: float(mean) for column, (mean, _) in ranked.items()})
    result.sections["Global importance (permutation on the test split: how much the metric drops when a column "
                    "is shuffled)"] = {column: {"importance": round(mean, 5), "spread": round(std, 5)}
                                        for column, (mean, std) in ranked.items()}
    shown = test.head(records)
    if not len(shown):
        return result
    explained = attributions(predictor, shown, profile=profile)
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
            pictures = image_saliency(predictor, shown, feature.name)
        except ModelError:
            pictures = None
        if pictures is not None:
            tensors = [t for f, t in zip(predictor.features, predictor.inputs(shown)) if f.name == feature.name][0]
            for i, values in enumerate(pictures.values):
                picture = tensors[i:i + 1][0].numpy()
                result.pngs[f"saliency_{feature.name}_{i}.png"] = saliency_png(
                    picture, values, title=f"record {i}: attribution")
            continue
        try:
            tokens = token_attributions(predictor, shown, feature.name)
        except ModelError:
            continue
        assert tokens.tokens is not None
        texts[f"Tokens of {feature.name!r} (green: towards the output explained, red: against)"] = \
            "".join(f"<p><b>record {i}</b>: {highlighted_html(words, values)}</p>"
                    for i, (words, values) in enumerate(zip(tokens.tokens, tokens.values)))
    return result.pngs, texts
