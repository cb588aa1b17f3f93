"""One self-contained HTML report per run: metrics, confusion matrix, plots embedded as
base64 PNGs, extra sections (cleaning, training) and the resolved config. Inline CSS, no
scripts and no external URLs, so it opens offline and from an e-mail attachment."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3}td.k,th.k{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}.plots img{max-width:520px;border:1px solid #eee}
pre{background:#f7f7f7;padding:1rem;overflow:auto;font-size:.85rem}.muted{color:#777}
"""


def write_report(
    path: Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    plots: Mapping[str, Path],
    sections: Mapping[str, Any] | None = None,
    config_yaml: str | None = None,
) -> Path:
    """Write the report atomically (temp file in the same folder, then rename)."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">written {_e(datetime.now().isoformat(timespec="seconds"))}</p>',
        "<h2>Metrics</h2>", _metrics_table(metrics),
    ]
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        labels = metrics.get("labels") if isinstance(metrics.get("labels"), list) else None
        parts += ["<h2>Confusion matrix</h2>", _confusion_table(matrix, labels)]
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for name, plot in plots.items():
            data = base64.b64encode(Path(plot).read_bytes()).decode("ascii")
            parts.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{_e(name)}</figcaption></figure>")
        parts.append("</div>")
    for heading, content in (sections or {}).items():
        parts += [f"<h2>{_e(heading)}</h2>", render(content)]
    if config_yaml:
        parts += ["<h2>Config (every default filled in)</h2>", f"<pre>{_e(config_yaml)}</pre>"]
    parts.append("</body></html>")
    _write_atomic(path, "\n".join(parts))
    return path


def render(content: Any) -> str:
    """Generic rendering: a mapping of mappings is a table with a row per key; a mapping is a
    two-column table; a list is a bullet list; anything else is text."""
    if isinstance(content, Mapping):
        if content and all(isinstance(v, Mapping) for v in content.values()):
            return _nested_table(content)
        rows = "".join(f'<tr><td class="k">{_e(k)}</td><td>{_cell(v)}</td></tr>' for k, v in content.items())
        return f"<table>{rows}</table>"
    if isinstance(content, Sequence) and not isinstance(content, str):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in content) + "</ul>"
    return f"<p>{_e(content)}</p>"


def _nested_table(content: Mapping[str, Any]) -> str:
    columns: list[str] = []
    for row in content.values():
        columns += [str(k) for k in row if str(k) not in columns]
    head = '<tr><th class="k"></th>' + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    body = "".join(
        f'<tr><td class="k">{_e(key)}</td>' + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for key, row in content.items()
    )
    return f"<table>{head}{body}</table>"


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><td class="k">{_e(k)}</td><td>{_cell(v)}</td></tr>'
        for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    return f'<table><tr><th class="k">metric</th><th>value</th></tr>{rows}</table>'


def _confusion_table(matrix: list[list[Any]], labels: list[Any] | None) -> str:
    names = [str(x) for x in labels] if labels and len(labels) == len(matrix) else [str(i) for i in range(len(matrix))]
    head = '<tr><th class="k">true \\ predicted</th>' + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"
    body = "".join(
        f'<tr><th class="k">{_e(names[i])}</th>' + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
        for i, row in enumerate(matrix)
    )
    return f"<table>{head}{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _e(f"{value:.4g}")
    return _e(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
