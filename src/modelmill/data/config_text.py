"""The text of the config ``modelmill init`` writes: a header that explains, then each
choice with a comment that says why, the comments lined up."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from modelmill.config.models import ModelConfig
from modelmill.config.schema import TrainingConfig
from modelmill.data.schema import ColumnInfo
from modelmill.privacy.detectors import Detection

COMMENT_COLUMN = 44  # where trailing comments start, so that they line up
SHOWN_COLUMNS = 30  # columns named in one message at most


@dataclass(frozen=True)
class Line:
    """One column as the config will show it (``options``: keys chosen from the data)."""

    name: str
    type: str
    comment: str
    options: tuple[tuple[str, str], ...] = ()


# Below the first line of every config init writes: what it holds, and how to see the rest.
RENDER_HINT = (
    "#",
    "# Only what was read from the data is written here; every other setting keeps its",
    "# default. To see the whole config, every default filled in:",
    "#",
    "#     modelmill render-config FILE      (FILE: this file)",
    "#",
)

def render(*, run_name: str, source: str, rows: int, goal: Line, split: tuple[str, str, str | None], features: list[Line],
           left_out: list[Line], privacy: Sequence[Detection] = (), suggested: Sequence[Detection] = ()) -> str:
    """The YAML text: a header that explains, then the config with a comment per choice
    (``split``: the method, why, and the column it splits by, if any)."""
    columns = len(features) + len(left_out) + 1
    lines = [
        f"# modelmill config inferred from {one_line(source)} ({rows:,} rows, {columns:,} columns).",
        *RENDER_HINT,
        "# Each comment says why a column got its type: change a type where it is wrong, delete",
        "# a line to drop a column, or uncomment a left-out column to use it.",
        "",
        f"name: {scalar(run_name)}",
        "",
        "data:",
        f"  source: {scalar(source)}",
        "  split:",
        commented(f"    method: {split[0]}", split[1]),
        *([f"    column: {scalar(split[2])}"] if split[2] else []),
        "",
        "features:",
        *[commented(f"  - {_flow(line)}", line.comment) for line in features],
    ]
    if left_out:
        lines.append("  # Left out (uncomment a line to use the column):")
        lines += [commented(f"  # - {_flow(line)}", line.comment) for line in left_out]
    lines += [
        "",
        commented(f"target: {_flow(goal)}", goal.comment),
        "",
        *_privacy_lines(privacy, suggested),
        "model:",
        commented("  type: auto", "fits the model types that suit these columns within a time budget and "
                   f"weighs them as an ensemble; or one type: {_other_models('auto')}"),
        "",
        "training:",
        commented(f"  epochs: {TrainingConfig.model_fields['epochs'].default}",
                   "passes over the training rows; early stopping may end sooner"),
    ]
    return "\n".join(lines) + "\n"


def _privacy_lines(found: Sequence[Detection], suggested: Sequence[Detection] = ()) -> list[str]:
    """The ``privacy:`` section: an action per personal column (shorthand when it has no
    options), the free-text columns to scrub, each with the detector's reason, and the
    quasi-identifiers only suggested as commented lines; nothing when nothing was found."""
    if not found and not suggested:
        return []
    actions = [d for d in found if d.action != "scrub"]
    # commented so that deleting the "# " gives the right indentation
    hint = [(f"{scalar(d.column)}: {_action(d.action, d.options)}", d.reason) for d in suggested]
    if not found:  # only suggestions: the whole section stays a comment, ready to uncomment
        return ["# privacy:", "#   columns:", *[commented(f"#     {code}", why) for code, why in hint], ""]
    lines = [commented("privacy:", "columns that look like personal data: check each line; a kept "
                        "feature has `pii: true`, so the prediction log never holds it in clear")]
    if actions or hint:
        lines.append("  columns:" if actions else "  # columns:")
        lines += [commented(f"    {scalar(d.column)}: {_action(d.action, d.options)}", d.reason) for d in actions]
        lines += [commented(f"    # {code}", why) for code, why in hint]
    scrubbed = [d for d in found if d.action == "scrub"]
    if scrubbed:
        lines.append(commented("  scrub:", "free-text columns whose e-mails, numbers and names are replaced "
                                "by placeholders before tokenising"))
        lines += [commented(f"    - {scalar(d.column)}", d.reason) for d in scrubbed]
    return [*lines, ""]


def _action(action: str, options: dict[str, Any]) -> str:
    if not options:
        return action
    written = "".join(f", {key}: {scalar(value) if isinstance(value, str) else value}"
                      for key, value in options.items())
    return f"{{action: {action}{written}}}"


def _other_models(chosen: str) -> str:
    """The model types of the config tree other than ``chosen`` (from the union, not a list)."""
    union = typing.get_args(ModelConfig)[0]
    names = [model.model_fields["type"].default for model in typing.get_args(union)]
    return ", ".join(str(n) for n in names if n != chosen)


def _flow(line: Line) -> str:
    options = "".join(f", {key}: {value}" for key, value in line.options)
    return f"{{name: {scalar(line.name)}, type: {line.type}{options}}}"


def commented(code: str, comment: str) -> str:
    return f"{code.ljust(COMMENT_COLUMN - 1)} # {one_line(comment)}"


def scalar(value: str) -> str:
    """``value`` as a YAML scalar, valid in block and flow context (quoted only if needed)."""
    style = None if value.isprintable() else '"'  # line breaks and controls as escapes, one line
    dumped = yaml.safe_dump([value], default_flow_style=True, default_style=style,
                            allow_unicode=True, width=2**31)
    return dumped.strip()[1:-1]


def missing_note(info: ColumnInfo, rows: int) -> str:
    if not info.n_missing:
        return "0 missing"
    return f"{info.n_missing:,} missing ({info.n_missing / rows:.1%})"


def one_line(text: str) -> str:
    return " ".join(text.split())


def listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_COLUMNS])
    more = len(names) - SHOWN_COLUMNS
    return f"{shown} and {more} more" if more > 0 else shown
