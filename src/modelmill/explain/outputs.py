"""What ``modelmill explain`` writes: ``attributions.csv``, ``importance.csv`` and a small
``explanations.html`` (each record's columns ranked by attribution, as bars; no JavaScript),
into a new folder, atomically: a failure leaves nothing half-written. With a key (an
encrypted bundle's) every file is sealed as its name in the folder (``attributions.csv``,
``roc_map.png``), as an evaluation's are; ``modelmill decrypt`` opens them."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from modelmill.encryption import seal_if
from modelmill.errors import DataError
from modelmill.explain.attributions import Explanation
from modelmill.files import atomic_folder

ATTRIBUTIONS = "attributions.csv"
IMPORTANCE = "importance.csv"
PAGE = "explanations.html"
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
         "td{padding:2px 8px}.bar{height:12px}.plus{background:#c0392b}.minus{background:#2874a6}"
         "h2{font-size:1.1em;margin-top:1.5em}.note{color:#555}")


def _refuse(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"output folder {target} exists and is not empty. Fix: name a new folder with -o")


def write_explanations(folder: Path, explanation: Explanation, importance: dict[str, tuple[float, float]] | None,
                       *, title: str, records: pd.DataFrame | None = None, metric: str | None = None,
                       pictures: dict[str, bytes] | None = None, texts: dict[str, str] | None = None,
                       key: bytes | None = None) -> Path:
    """Write the three files into ``folder`` (which must not hold files yet); returns it.
    ``records``: the explained rows, whose values the page shows beside their attributions;
    ``metric``: the metric the importance was scored by, for the page; ``pictures``: saliency
    maps (PNG by file name), written beside the page and shown on it; ``texts``: highlighted
    tokens (HTML by heading); ``key``: seal every file with it (nothing is written in clear)."""
    _refuse(folder)
    files = {ATTRIBUTIONS: explanation.frame().to_csv(index_label="record").encode("utf-8")}
    if importance is not None:
        table = pd.DataFrame([(c, m, s) for c, (m, s) in importance.items()], columns=["column", "importance", "std"])
        files[IMPORTANCE] = table.to_csv(index=False).encode("utf-8")
    files.update(pictures or {})
    page = render_page(explanation, importance, title=title, records=records, metric=metric)
    extra = "".join(f"<h2>{html.escape(heading)}</h2>{body}" for heading, body in (texts or {}).items())
    extra += "".join(f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>" for name in (pictures or {}))
    files[PAGE] = (page + extra).encode("utf-8")
    with atomic_folder(folder, _refuse) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(seal_if(data, key, name))
    return folder


def render_page(explanation: Explanation, importance: dict[str, tuple[float, float]] | None, *,
                title: str, records: pd.DataFrame | None = None, metric: str | None = None) -> str:
    """The HTML page: the global importance, then each record's ranked columns."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>Method: {html.escape(explanation.method)}. Attributions are in the model's raw "
             "output space and add up to output − baseline (up to the gap shown). Red raises the output, "
             "blue lowers it.</p>"]
    if importance is not None:
        scored = f"{metric}'s" if metric else "the metric's"
        parts.append(f"<h2>Permutation importance: {html.escape(scored)} drop when the column is shuffled</h2>")
        parts.append(_bars([(c, m) for c, (m, _) in importance.items()]))
    for r in range(len(explanation.attributions)):
        head = (f"Record {html.escape(str(explanation.index[r]))}: {html.escape(explanation.explained[r])} "
                f"= {explanation.output[r]:.4f}, baseline {explanation.baseline[r]:.4f}, "
                f"gap {explanation.gap[r]:.2g}")
        parts.append(f"<h2>{head}</h2>")
        row = records.iloc[r] if records is not None and r < len(records) else None
        parts.append(_bars(explanation.ranked(r), row))
    return "\n".join(parts) + "\n"


def _bars(pairs: list[tuple[str, float]], values: pd.Series | None = None) -> str:
    largest = max((abs(v) for _, v in pairs), default=0.0) or 1.0
    rows = []
    for name, value in pairs:
        width = round(200 * abs(value) / largest)
        kind = "plus" if value >= 0 else "minus"
        shown = f" = {_short(values[name])}" if values is not None and name in values.index else ""
        rows.append(f"<tr><td>{html.escape(name + shown)}</td><td>{value:+.4f}</td>"
                    f"<td><div class='bar {kind}' style='width:{width}px'></div></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _short(value: object) -> str:
    """A cell as the page shows it: pictures and long texts cut short."""
    text = f"<{type(value).__name__}>" if hasattr(value, "shape") or isinstance(value, bytes) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
