"""The model card as the HTML section that opens a report: one sentence that says what the
model is, then small tables (data, training, test metrics with their intervals, the most
important columns, privacy, known limits) and one row per feature. Plain HTML styled by the
report's inline CSS: no JavaScript, no external asset; every text from data or config is
escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from modelmill.evaluation.card import FeatureCard, ModelCard

TOP_COLUMNS = 8  # columns shown in the importance table
_CELL_CHARS = 90  # a longer setting or cleaning summary is cut, with an ellipsis


def card_section(card: ModelCard) -> str:
    """The card as a ``<section class="card">`` (its first heading: "Model card")."""
    columns = [_column(("Data", _data(card)), ("Training", _training(card))),
               _column(("Test metrics", _metrics(card))),
               _column(("Most important columns", _importance(card)), ("Privacy", _privacy(card)),
                       ("Known limits", _limits(card)))]
    return ('<section class="card">\n<h2>Model card</h2>\n'
            f'<p class="lede">{_lede(card)}</p>\n'
            f'<div class="card-grid">\n{"".join(columns)}</div>\n'
            f"<h3>Features and their encodings</h3>\n{_features(card)}\n</section>")


def _lede(card: ModelCard) -> str:
    model, target = card.model, card.target
    size = f" with {model.parameters:,} trained parameters" if model.parameters is not None else ""
    balance = ", ".join(f"{c.name} {c.share:.0%}" for c in target.classes)
    what = f"{target.task}: {balance}" if balance else target.task
    split = card.data.split
    rows = f", trained on {split.train:,} rows" if split else ""
    return (f"The <b>{_esc(model.type)}</b> model{size} predicting <b>{_esc(target.name)}</b> ({_esc(what)}) "
            f"from {len(card.features)} columns of <code>{_esc(card.data.source)}</code>{rows}. "
            f"Card written {_esc(card.created_at)}.")


def _column(*boxes: tuple[str, str]) -> str:
    """One column of the card's grid: boxes, each a heading and its body, stacked."""
    return "<div>" + "".join(f"<h3>{_esc(heading)}</h3>\n{body}\n" for heading, body in boxes) + "</div>\n"


def _data(card: ModelCard) -> str:
    data = card.data
    rows: dict[str, str] = {"source": data.source}
    if data.rows_read is not None:
        kept = f" → {data.rows_kept:,} after cleaning" if data.rows_kept is not None else ""
        rows["rows"] = f"{data.rows_read:,} read{kept}"
    if data.split is not None:
        split = data.split
        rows["split"] = f"{split.train:,} train · {split.valid:,} valid · {split.test:,} test ({split.method})"
    rows["date range"] = (f"{data.date_range.first} … {data.date_range.last} ({data.date_range.column})"
                          if data.date_range else "no date column")
    cleaning = card.cleaning
    if cleaning is not None:
        rows["dropped"] = (f"{cleaning.duplicates_dropped or 0:,} duplicates, "
                           f"{cleaning.target_missing_dropped or 0:,} without a target")
    rows["sha256"] = data.sha256[:16] + "…" if data.sha256 else "unknown"
    return _table(rows.items())


def _training(card: ModelCard) -> str:
    training = card.training
    if training is None:
        return "<p>not recorded</p>"
    chosen = f"{training.monitored} = {_number(training.best_value)}" if training.best_value is not None else \
        training.monitored
    return _table([("epochs", f"{training.epochs_run} run, best {training.best_epoch}"),
                   ("time", f"{training.seconds:.1f} s"), ("stopped", training.stop_reason),
                   ("chosen by", chosen)])


def _metrics(card: ModelCard) -> str:
    metrics = card.metrics
    if metrics is None:
        return "<p>not evaluated</p>"
    head = f"<tr><th>metric</th><th>value</th><th>{metrics.confidence:.0%} interval</th></tr>"
    body = []
    for value in metrics.values:
        interval = f"{_number(value.low)} – {_number(value.high)}" if value.low is not None else "—"
        arrow = "↑" if value.better == "higher" else "↓"
        body.append(f"<tr><th>{_esc(value.name)} {arrow}</th><td class=\"num\">{_number(value.value)}</td>"
                    f"<td class=\"num\">{_esc(interval)}</td></tr>")
    note = (f"{metrics.rows:,} {metrics.split} rows; percentile bootstrap, {metrics.resamples} resamples"
            if metrics.resamples else f"{metrics.rows:,} {metrics.split} rows; no intervals")
    return f"<table>\n{head}\n" + "\n".join(body) + f"\n</table>\n<p class=\"small\">{_esc(note)}</p>"


def _importance(card: ModelCard) -> str:
    importance = card.importance
    if not importance.computed:
        return "<p>not computed</p>"
    top = importance.columns[:TOP_COLUMNS]
    largest = max((abs(c.importance) for c in top), default=0.0) or 1.0
    rows = [(c.column, f'<span class="bar" style="width:{round(80 * abs(c.importance) / largest)}px"></span> '
             f"{_number(c.importance)}") for c in top]
    body = "".join(f"<tr><th>{_esc(name)}</th><td>{bar}</td></tr>" for name, bar in rows)
    return f"<table>{body}</table>\n<p>{_esc(importance.method or '')}</p>"


def _privacy(card: ModelCard) -> str:
    if not card.privacy.measures:
        return "<p>none configured</p>"
    return _list(card.privacy.measures)


def _limits(card: ModelCard) -> str:
    if not card.limits:
        return "<p>none found by the card's rules (test rows, class balance, rows per column, leakage)</p>"
    return _list((limit.message for limit in card.limits), css="limits")


def _features(card: ModelCard) -> str:
    columns = card.cleaning.columns if card.cleaning is not None else {}
    head = "<tr><th>column</th><th>type</th><th>encoding</th><th>width</th><th>missing</th><th>cleaning</th></tr>"
    rows = [head]
    for feature in card.features:
        width = str(feature.width) if feature.width is not None else "raw"
        name = feature.name + (" (pii)" if feature.pii else "")
        rows.append(f"<tr><th>{_esc(name)}</th><td>{_esc(feature.type)}</td>"
                    f"<td class=\"small\">{_esc(_settings(feature))}</td><td class=\"num\">{_esc(width)}</td>"
                    f"<td>{_esc(feature.missing)}</td>"
                    f"<td class=\"small\">{_esc(_summary(columns.get(feature.name, {})))}</td></tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _settings(feature: FeatureCard) -> str:
    """Scalar settings as ``key=value``, a nested section by its type when it has one."""
    parts = []
    for key, value in feature.encoding.items():
        if isinstance(value, Mapping):
            if "type" in value:
                parts.append(f"{key}={value['type']}")
        elif isinstance(value, list):
            parts.append(f"{key}={','.join(str(v) for v in value)}")
        elif value is not None:
            parts.append(f"{key}={_short(value)}")
    return _cut(", ".join(parts)) or "—"


def _summary(entries: Mapping[str, Any]) -> str:
    """What cleaning did to a column, in a line (its strategy is in the missing column)."""
    parts = [f"{key.replace('_', ' ')}: {_short(value) if not isinstance(value, (list, dict)) else '…'}"
             for key, value in entries.items() if key != "strategy"]
    return _cut("; ".join(parts)) or "—"


# ------------------------------------------------------------------ small pieces


def _table(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_esc(key)}</th><td>{_esc(value)}</td></tr>" for key, value in rows)
    return f"<table>{body}</table>"


def _list(items: Iterable[str], css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<ul{attribute}>" + "".join(f"<li>{_esc(item)}</li>" for item in items) + "</ul>"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return f"{value:.4f}" if 1e-4 <= abs(value) < 1e5 else f"{value:.4g}"


def _short(value: Any) -> str:
    """A setting or a count as briefly as it reads: 37, 177802, 0.5, none."""
    if value is None:
        return "none"
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.6g}"
    return _number(value)


def _cut(text: str) -> str:
    return text if len(text) <= _CELL_CHARS else text[:_CELL_CHARS - 1] + "…"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
