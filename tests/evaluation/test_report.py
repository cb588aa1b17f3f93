"""The HTML report: self-contained, escaped, with metrics, tables, plots and config."""

from __future__ import annotations

import base64
import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.evaluation.metrics import compute_metrics
from modelmill.evaluation.plots import make_plots
from modelmill.evaluation.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    """Tags, attributes and text of a page, to assert on structure rather than strings."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Path]]:
    """One report shared by the read-only tests below (drawing plots takes a moment)."""
    tmp_path = tmp_path_factory.mktemp("report")
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p1 = np.array([0.1, 0.8, 0.7, 0.9, 0.2, 0.6, 0.4, 0.3])
    pred = (p1 > 0.5).astype(int)
    metrics = compute_metrics("binary", y, pred, p1, ["bad", "good"])
    history = [{"epoch": 1, "train_loss": 0.7, "valid_loss": 0.69},
               {"epoch": 2, "train_loss": 0.6, "valid_loss": 0.65}]
    plots = make_plots("binary", y, pred, p1, ["bad", "good"], history, tmp_path / "plots")
    sections = {
        "Cleaning": {"rows_in": 10, "rows_out": 8, "duplicates_dropped": 2},
        "Cleaning per column": {
            "age": {"missing": 3, "filled_with": 41.5},
            "colour": {"missing": 0, "unseen": ["mauve"]},
        },
        "Warnings": ["column 'id' looks like an identifier"],
    }
    path = write_report(tmp_path / "out" / "report.html", title="credit: test-set report",
                        metrics=metrics, plots=plots, sections=sections,
                        config_yaml="name: credit\ntraining:\n  epochs: 2\n")
    return path, metrics, plots


def test_report_is_written_atomically_where_asked(binary_report: Any) -> None:
    path, _, _ = binary_report
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"], "no temporary file left"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html


def test_report_holds_the_metric_values(binary_report: Any) -> None:
    path, metrics, _ = binary_report
    html = path.read_text(encoding="utf-8")
    for name in ("accuracy", "roc_auc", "pr_auc", "f1", "log_loss"):
        assert f"<th>{name}</th><td class=\"num\">{metrics[name]:.4f}</td>" in html, name
    assert f"{metrics['accuracy']:.4f}" == "0.7500"


def test_report_has_the_confusion_matrix_as_a_labelled_table(binary_report: Any) -> None:
    path, metrics, _ = binary_report
    html = path.read_text(encoding="utf-8")
    table = re.search(r'<table class="confusion">(.*?)</table>', html, re.S)
    assert table is not None
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", table.group(1))
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert cells == ["actual \\ predicted", "bad", "good",
                     "bad", str(tn), str(fp), "good", str(fn), str(tp)]


def test_report_embeds_every_plot_as_a_png_data_uri(binary_report: Any) -> None:
    path, _, plots = binary_report
    page = parse(path.read_text(encoding="utf-8"))
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == len(plots) == 5
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE


def test_report_is_self_contained(binary_report: Any) -> None:
    path, _, _ = binary_report
    html = path.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    page = parse(html)
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object")]
    for tag, attrs in page.tags:
        assert "href" not in attrs, tag
        assert (attrs.get("src") or "data:").startswith("data:"), tag
    assert "url(" not in html, "no external resources in the CSS"


def test_report_renders_sections_as_tables(binary_report: Any) -> None:
    path, _, _ = binary_report
    html = path.read_text(encoding="utf-8")
    assert "<h2>Cleaning per column</h2>" in html
    # A dict of dicts: one row per key, one column per inner key (union, first-seen order).
    per_column = html.split("<h2>Cleaning per column</h2>", 1)[1].split("</table>", 1)[0]
    assert "<tr><th></th><th>missing</th><th>filled_with</th><th>unseen</th></tr>" in per_column
    assert '<td>age</td><td class="num">3</td><td class="num">41.5000</td><td></td>' in per_column
    assert "<li>mauve</li>" in per_column
    assert '<tr><th>duplicates_dropped</th><td class="num">2</td></tr>' in html
    assert "<li>column &#x27;id&#x27; looks like an identifier</li>" in html


def test_report_shows_the_config_in_pre(binary_report: Any) -> None:
    path, _, _ = binary_report
    assert "<pre>name: credit\ntraining:\n  epochs: 2\n</pre>" in path.read_text(encoding="utf-8")


def test_everything_is_escaped(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    path = write_report(
        tmp_path / "report.html",
        title=evil,
        metrics={"accuracy": 0.5, evil: 1.0, "confusion_matrix": [[1, 0], [0, 1]], "labels": [evil, "b&c"]},
        plots={},
        sections={evil: {evil: evil}, "rows": [{evil: evil}]},
        config_yaml=f"name: {evil}",
    )
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<title>&lt;script&gt;" in html
    assert "b&amp;c" in html


def test_missing_or_unknown_plot_files_are_noted_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    path = write_report(tmp_path / "report.html", title="t", metrics={"rmse": 1.0},
                        plots={"gone": tmp_path / "gone.png", "notes": tmp_path / "notes.txt"})
    html = path.read_text(encoding="utf-8")
    assert "Plot gone left out: file not found (gone.png)" in html
    assert "Plot notes left out: not an image type we embed (notes.txt)" in html
    assert "<img" not in html


def test_rich_values_are_rendered_as_plain_data(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Summary:
        epochs: int
        stopped: str

    frame = pd.DataFrame({"column": ["a", "b"], "missing": [1, 2]})
    path = write_report(
        tmp_path / "report.html", title="t",
        metrics={"rmse": np.float32(0.25), "per_split": {"valid": {"rmse": 0.3}, "test": {"rmse": 0.25}}},
        plots={},
        sections={"Training": Summary(epochs=3, stopped="patience"), "Frame": frame,
                  "Array": np.array([1, 2]), "Note": "line one\nline two", "Tiny": 1.5e-7},
    )
    html = path.read_text(encoding="utf-8")
    assert '<tr><th>rmse</th><td class="num">0.2500</td></tr>' in html
    assert "<h3>per_split</h3>" in html and "<td>valid</td>" in html
    assert '<tr><th>stopped</th><td>patience</td></tr>' in html
    assert '<tr><td>b</td><td class="num">2</td></tr>' in html
    assert "<li>1</li><li>2</li>" in html
    assert "<pre>line one\nline two</pre>" in html
    assert "<p>1.5e-07</p>" in html


def test_rewriting_replaces_the_old_report(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_report(target, title="first", metrics={}, plots={})
    write_report(target, title="second", metrics={"mae": 2.0}, plots={})
    html = target.read_text(encoding="utf-8")
    assert "second" in html and "first" not in html
    assert "No metrics were computed" not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
