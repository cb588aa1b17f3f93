"""The monitoring report: ``report.html`` of ``modelmill monitor``, one self-contained file
(the evaluation report's page: inline CSS, images as data URIs, no JavaScript): the alarms,
the columns ranked by how far they moved, drift per column over the windows, the prediction
drift, and the metric over time with its label-free estimate beside it."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from modelmill.evaluation.plots import new_figure, png_bytes
from modelmill.evaluation.report import page
from modelmill.files import atomic_open
from modelmill.monitoring.summary import Summary, Window
from modelmill.predictor.output import PREDICTION

TOP_COLUMNS = 8  # lines in the drift chart; the table lists every column


def write_monitor_report(summary: Summary, path: Path) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as stream:
        stream.write(render_monitor_report(summary))
    return path


def render_monitor_report(summary: Summary) -> str:
    model, log = summary.model, summary.log
    parts = [
        f"<h1>Monitoring: {_e(model.name)} (version {_e(model.version)})</h1>",
        f"<p>{log.rows} records ({log.labelled} labelled) from {_e(log.first or '?')} to {_e(log.last or '?')} "
        f"in {_e(log.url)}; windows of {_e(str(summary.settings.window))}; metric {_e(summary.settings.metric)}. "
        f"Written {_e(summary.created_at)}.</p>",
        _alarms(summary),
        "<h2>Columns ranked by how far they moved</h2>",
        "<p>Score: the Jensen–Shannon distance between the binned distributions of the reference (training) "
        "and of each window (missing values a bin of their own); the largest over the windows.</p>",
        _ranking(summary),
        _figure(_drift_chart(summary), "Drift score per column over the windows"),
        _figure(_performance_chart(summary), f"{summary.settings.metric} per window"),
        "<h2>Latest window</h2>",
        _window_table(summary.windows[-1]) if summary.windows else "<p>No window.</p>",
        "<h2>Windows</h2>",
        _windows_table(summary),
    ]
    return page(f"Monitoring {model.name}", "\n".join(parts))


def _alarms(summary: Summary) -> str:
    if not summary.alarms:
        return '<p class="ok">No alarm.</p>'
    items = "".join(f"<li>window {a.window}: <b>{_e(a.kind)}</b> — {_e(a.message)}</li>" for a in summary.alarms)
    return f'<h2>Alarms ({len(summary.alarms)})</h2>\n<ul class="alarms">{items}</ul>'


def _ranking(summary: Summary) -> str:
    rows = "".join(f"<tr><td>{_e(r.column)}</td><td class=num>{r.score:.3f}</td><td class=num>{r.windows_drifted}"
                   "</td></tr>" for r in summary.ranking)
    return f"<table><tr><th>column</th><th>score</th><th>windows drifted</th></tr>{rows}</table>"


def _window_table(window: Window) -> str:
    rows = []
    for c in window.drift:
        value = "–" if c.value is None else f"{c.value:.3f}"
        p = "–" if c.p_value is None else f"{c.p_value:.2g}"
        rows.append(f"<tr><td>{_e(c.column)}</td><td>{_e(c.statistic)}</td><td class=num>{value}</td>"
                    f"<td class=num>{c.threshold:g}</td><td class=num>{p}</td><td class=num>{c.score:.3f}</td>"
                    f"<td>{_e(', '.join(c.alarms)) or '–'}</td></tr>")
    skipped = "".join(f"<li>{_e(s.column)}: {_e(s.reason)}</li>" for s in window.skipped)
    return (f"<p>{window.rows} records from {_e(window.start)} to {_e(window.end)}.</p>"
            "<table><tr><th>column</th><th>statistic</th><th>value</th><th>threshold</th><th>p-value</th>"
            f"<th>score</th><th>alarms</th></tr>{''.join(rows)}</table>"
            + (f"<p>Not compared:</p><ul>{skipped}</ul>" if skipped else ""))


def _windows_table(summary: Summary) -> str:
    rows = []
    for w in summary.windows:
        perf = w.performance
        realised = "–" if perf.realised is None else (
            f"{perf.realised.value:.3f}" + ("" if perf.realised.low is None else
                                           f" [{perf.realised.low:.3f}, {perf.realised.high:.3f}]"))
        estimated = "–" if perf.estimated is None else f"{perf.estimated:.3f}" + (" (extrapolating)"
                                                                                   if perf.extrapolating else "")
        top = next((c for c in w.drift if c.column != PREDICTION), None)
        rows.append(f"<tr><td class=num>{w.index}</td><td>{_e(w.start)}</td><td class=num>{w.rows}</td>"
                    f"<td class=num>{w.labelled}</td><td>{_e(top.column) if top else '–'}</td>"
                    f"<td>{realised}</td><td>{estimated}</td><td class=num>{len(w.alarms)}</td></tr>")
    return ("<table><tr><th>window</th><th>from</th><th>rows</th><th>labelled</th><th>moved most</th>"
            f"<th>{_e(summary.settings.metric)} ({summary.settings.confidence:.0%} interval)</th><th>estimated</th>"
            "<th>alarms</th></tr>"
            f"{''.join(rows)}</table>")


def _drift_chart(summary: Summary) -> bytes:
    fig, ax = new_figure((7.5, 3.6))
    x = [w.index for w in summary.windows]
    columns = [r.column for r in summary.ranking[:TOP_COLUMNS]] + [PREDICTION]
    for name in columns:
        values = [next((c.score for c in w.drift if c.column == name), float("nan")) for w in summary.windows]
        ax.plot(x, values, marker="o", markersize=3, label=name, linestyle="--" if name == PREDICTION else "-")
    ax.set_xlabel("window")
    ax.set_ylabel("drift score")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, alpha=0.3)
    return png_bytes(fig)


def _performance_chart(summary: Summary) -> bytes:
    fig, ax = new_figure((7.5, 3.2))
    x = [w.index for w in summary.windows]
    realised = [w.performance.realised for w in summary.windows]
    ax.plot(x, [r.value if r else float("nan") for r in realised], marker="o", markersize=3, label="realised")
    ax.fill_between(x, [r.low if r and r.low is not None else float("nan") for r in realised],
                    [r.high if r and r.high is not None else float("nan") for r in realised], alpha=0.2,
                    label=f"{summary.settings.confidence:.0%} interval")
    ax.plot(x, [w.performance.estimated if w.performance.estimated is not None else float("nan")
                for w in summary.windows], marker="s", markersize=3, linestyle="--", label="estimated (no labels)")
    reference = summary.windows[0].performance.reference if summary.windows else None
    if reference is not None:
        ax.axhline(reference, color="#59636e", linewidth=1, label="test split")
    expected = summary.windows[0].performance.reference_estimated if summary.windows else None
    if expected is not None and any(w.performance.estimated is not None for w in summary.windows):
        ax.axhline(expected, color="#d97706", linewidth=1, linestyle=":", label="estimated at training")
    ax.set_xlabel("window")
    ax.set_ylabel(summary.settings.metric)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return png_bytes(fig)


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}"><figcaption>{_e(caption)}' \
           "</figcaption></figure>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
