"""The evaluation report: one self-contained HTML file.

The file opens offline and from anywhere (an e-mail attachment, a bundle on a laptop):
images are embedded as base64 data URIs, the CSS is inline, and there is no JavaScript
and no external URL. Every piece of text that comes from data or config is escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelmill.evaluation.card import ModelCard
from modelmill.evaluation.card_html import card_section
from modelmill.files import atomic_open

import numpy as np
import pandas as pd

MAX_DEPTH = 4  # nesting rendered as tables; deeper values are shown as text
MAX_ROWS = 500  # rows of a table; the rest is summarised in one line

_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #1f2328; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.confusion td { text-align: right; min-width: 3rem; }
table.confusion td.diag { background: #ddf4ff; font-weight: 600; }
figure { display: inline-block; margin: .5rem 1rem 1rem 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: .85rem; color: #59636e; text-align: center; }
pre { background: #f6f8fa; padding: 1rem; overflow-x: auto; font-size: .85rem; }
p.note { color: #9a6700; }
section.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .2rem 1.2rem 1rem; background: #fbfcfd; }
section.card h2 { margin-top: .8rem; }
section.card h3 { margin: .8rem 0 .2rem; font-size: 1rem; }
section.card table { margin: .2rem 0 .4rem; font-size: .88rem; }
section.card div.card-grid th, section.card td.num { white-space: nowrap; }
p.lede { font-size: 1.02rem; margin: .4rem 0 .6rem; }
div.card-grid { display: grid; grid-template-columns: 1fr auto 1fr; gap: 0 1.5rem; }
@media (max-width: 900px) { div.card-grid { grid-template-columns: 1fr; } }
ul.limits li { color: #9a6700; }
span.bar { display: inline-block; height: .7rem; background: #54aeff; vertical-align: middle; }
td.small, p.small { font-size: .8rem; color: #59636e; }
"""


def write_report(
    path: Path,
    *,
    title: str,
    metrics: dict[str, Any],
    plots: dict[str, Path],
    sections: dict[str, Any] | None = None,
    config_yaml: str | None = None,
    card: ModelCard | None = None,
) -> Path:
    """Write the HTML report, atomically.

    Args:
        path: The HTML file to write; its folder is created if missing.
        title: The page title.
        metrics: What :func:`~modelmill.evaluation.metrics.compute_metrics` returned:
            scalars go in the metrics table, ``confusion_matrix`` becomes a table
            labelled with ``labels`` when present, anything else is rendered generically.
        plots: Plot name → image file (PNG, JPEG, GIF or SVG), embedded in the page.
        sections: Extra sections, heading → plain data (dicts, lists, scalars,
            dataclasses, pydantic models or data frames), rendered as tables.
        config_yaml: The resolved config, shown verbatim.
        card: The model card, which then opens the report.

    Returns:
        ``path``.
    """
    path = Path(path)
    _write_atomic(path, render_report(title=title, metrics=metrics, plots=plots, sections=sections,
                                      config_yaml=config_yaml, card=card))
    return path


def render_report(
    *,
    title: str,
    metrics: dict[str, Any],
    plots: Mapping[str, Path | bytes],
    sections: dict[str, Any] | None = None,
    config_yaml: str | None = None,
    card: ModelCard | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report`); a plot may also be given as
    PNG bytes, so a caller holding images in memory need not write them to files first. A
    model ``card`` opens the report, above the metrics."""
    parts = [f"<h1>{_esc(title)}</h1>"]
    if card is not None:
        parts.append(card_section(card))
    parts.append(_metrics_section(metrics))
    if plots:
        parts.append(_plots_section(plots))
    for heading, value in (sections or {}).items():
        parts.append(f"<h2>{_esc(heading)}</h2>\n{_render(value)}")
    if config_yaml is not None:
        parts.append(f"<h2>Configuration</h2>\n<pre>{_esc(config_yaml)}</pre>")
    return page(title, "\n".join(parts))


# ---------------------------------------------------------------- sections


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    scalars = {k: v for k, v in metrics.items() if _is_scalar(v)}
    rest = {
        k: v for k, v in metrics.items()
        if k not in scalars and k not in ("confusion_matrix", "labels")
    }
    parts = ["<h2>Metrics</h2>"]
    if scalars:
        parts.append(_key_value_table(scalars, head=("metric", "value")))
    else:
        parts.append('<p class="note">No metrics were computed.</p>')
    if "confusion_matrix" in metrics:
        parts.append("<h3>Confusion matrix</h3>")
        parts.append(_confusion_table(metrics["confusion_matrix"], metrics.get("labels")))
    for name, value in rest.items():
        parts.append(f"<h3>{_esc(name)}</h3>\n{_render(value)}")
    return "\n".join(parts)


_DIAG = ' class="diag"'


def _confusion_table(matrix: Any, labels: Any) -> str:
    rows = [list(row) for row in _plain(matrix)]
    k = len(rows)
    names = [str(n) for n in labels] if isinstance(labels, Sequence) else []
    if len(names) != k:
        names = [str(i) for i in range(k)]
    head = "".join(f"<th>{_esc(n)}</th>" for n in names)
    body = []
    for i, (name, row) in enumerate(zip(names, rows)):
        cells = "".join(
            f"<td{_DIAG if i == j else ''}>{_esc(_fmt(v))}</td>" for j, v in enumerate(row)
        )
        body.append(f"<tr><th>{_esc(name)}</th>{cells}</tr>")
    return (
        '<table class="confusion">\n'
        f"<tr><th>actual \\ predicted</th>{head}</tr>\n" + "\n".join(body) + "\n</table>"
    )


def _plots_section(plots: Mapping[str, Path | bytes]) -> str:
    parts = ["<h2>Plots</h2>"]
    for name, image in plots.items():
        if isinstance(image, bytes):
            mime: str | None = "image/png"
            content = image
        else:
            file = Path(image)
            mime = _IMAGE_TYPES.get(file.suffix.lower())
            if mime is None or not file.is_file():
                why = "not an image type we embed" if mime is None else "file not found"
                parts.append(f'<p class="note">Plot {_esc(name)} left out: {why} ({_esc(file.name)}).</p>')
                continue
            content = file.read_bytes()
        data = base64.b64encode(content).decode("ascii")
        caption = name.replace("_", " ")
        parts.append(
            f'<figure><img src="data:{mime};base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


# ---------------------------------------------------------------- generic rendering


class RawHtml(str):
    """A section that is HTML already (highlighted text), written as it is: only for HTML
    modelmill makes itself, every text in it escaped."""


def _render(value: Any, depth: int = 0) -> str:
    """Plain data → HTML: mappings and records become tables, scalars escaped text."""
    if isinstance(value, RawHtml):
        return str(value)
    value = _plain(value)
    if depth >= MAX_DEPTH:
        return _esc(_fmt(value))
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()):
            return _records_table([{"": k, **v} for k, v in value.items()], depth)
        return _key_value_table(value, depth=depth)
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            return _records_table(value, depth)
        if all(_is_scalar(v) for v in value):
            return "<ul>" + "".join(f"<li>{_esc(_fmt(v))}</li>" for v in value) + "</ul>"
        return "<ul>" + "".join(f"<li>{_render(v, depth + 1)}</li>" for v in value) + "</ul>"
    text = _fmt(value)
    return f"<pre>{_esc(text)}</pre>" if "\n" in text else f"<p>{_esc(text)}</p>"


def _key_value_table(
    mapping: Mapping[Any, Any], *, head: tuple[str, str] | None = None, depth: int = 0
) -> str:
    rows = []
    for key, value in _limited(list(mapping.items())):
        rows.append(f"<tr><th>{_esc(str(key))}</th>{_cell(value, depth)}</tr>")
    header = f"<tr><th>{_esc(head[0])}</th><th>{_esc(head[1])}</th></tr>\n" if head else ""
    return "<table>\n" + header + "\n".join(rows) + _more(len(mapping), 2) + "\n</table>"


def _records_table(records: Sequence[Mapping[Any, Any]], depth: int = 0) -> str:
    columns: dict[str, None] = {}  # ordered set: the order in which columns first appear
    for record in records:
        columns.update(dict.fromkeys(str(k) for k in record))
    header = "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for record in _limited(list(records)):
        by_name = {str(k): v for k, v in record.items()}
        cells = "".join(
            _cell(by_name[c], depth) if c in by_name else "<td></td>" for c in columns
        )
        rows.append(f"<tr>{cells}</tr>")
    return "<table>\n" + header + "\n" + "\n".join(rows) + _more(len(records), len(columns)) + "\n</table>"


def _cell(value: Any, depth: int) -> str:
    value = _plain(value)
    if _is_scalar(value):
        css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        return f"<td{css}>{_esc(_fmt(value))}</td>"
    return f"<td>{_render(value, depth + 1)}</td>"


def _limited(items: list[Any]) -> list[Any]:
    return items[:MAX_ROWS]


def _more(count: int, width: int) -> str:
    if count <= MAX_ROWS:
        return ""
    return f'\n<tr><td colspan="{width}">… and {count - MAX_ROWS} more rows</td></tr>'


# ---------------------------------------------------------------- values


def _plain(value: Any) -> Any:
    """Common rich objects → plain dicts, lists and scalars."""
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, pd.Series):
        return value.to_dict()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, np.generic))


def _fmt(value: Any) -> str:
    """Numbers shown to 4 decimals (or 4 significant digits when tiny or huge)."""
    value = _plain(value)
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value == 0.0:
            return str(value)
        if 1e-4 <= abs(value) < 1e6:
            return f"{value:.4f}"
        return f"{value:.4g}"
    return str(value)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _write_atomic(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
