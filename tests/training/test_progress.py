"""The per-epoch progress line where the console is not a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from modelmill.training.callbacks import LoopState, ProgressBar


def line_for(metric: str, row: dict[str, float]) -> str:
    out = io.StringIO()
    bar = ProgressBar(metric, console=Console(file=out, force_terminal=False, width=200))
    bar.on_train_start(LoopState(), 5)
    bar.on_epoch_end(LoopState(epoch=1), row)
    return out.getvalue().strip()


def test_each_figure_is_printed_once_even_when_the_monitored_metric_is_the_loss() -> None:
    assert line_for("loss", {"train_loss": 0.5, "valid_loss": 0.25}) == "epoch 1/5  train_loss=0.5  valid_loss=0.25"
    assert line_for("accuracy", {"train_loss": 0.5, "valid_loss": 0.25, "valid_accuracy": 0.9}) == \
        "epoch 1/5  train_loss=0.5  valid_loss=0.25  valid_accuracy=0.9"
