"""``modelmill init``: a commented starting config inferred from the data.

Only what was read from the data is written (the name, the source, the split method, each
column's type and the target); every other setting keeps the default defined once in
:mod:`modelmill.config.schema`, and ``modelmill render-config FILE`` shows them all. Each
line says why it was written so, and the columns left out are listed as comments with the
reason, ready to be uncommented. Columns that look like personal data get a ``privacy:``
section with a suggested action each (:mod:`modelmill.privacy.detectors`), and no value of
theirs is written anywhere in the file or the warnings.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import pandas as pd

from modelmill.config.text import PretrainedEncoderConfig
from modelmill.config.schema import NAME_PATTERN, SplitConfig
from modelmill.data.config_text import SHOWN_COLUMNS, Line, listing, missing_note, render
from modelmill.data.schema import MAJORITY, ColumnInfo, infer_schema
from modelmill.data.time_layout import TimeLayout, find_time_layout
from modelmill.errors import ConfigError, DataError, did_you_mean
from modelmill.privacy.detectors import SAMPLE, SUGGESTED_ONLY, Detection, detect_column, kind_by_name

_NAME = re.compile(NAME_PATTERN)
# Kinds whose column names alone keep a column's values out of what init writes.
_PRIVATE_BY_NAME = frozenset({"email", "phone", "card", "national_id", "iban", "ip", "name", "address", "postcode",
                              "birth_date"})
_DATA_SUFFIXES = frozenset({
    ".csv", ".tsv", ".txt", ".data", ".parquet", ".pq", ".json", ".jsonl", ".ndjson",
    ".xlsx", ".xls", ".db", ".sqlite", ".gz", ".bz2", ".xz", ".zip", ".zst",
})
_FEW_CLASSES = 20  # a number target with at most this many distinct integers may be classes


@dataclass(frozen=True)
class InferResult:
    """What :func:`infer_config_with_warnings` found.

    Attributes:
        text: The commented YAML config.
        warnings: Things the user should look at before training (leakage, unparseable
            values, missing targets), one sentence each.
        columns: The inferred schema, one entry per column of the frame.
    """

    text: str
    warnings: tuple[str, ...]
    columns: tuple[ColumnInfo, ...]


SKEWED = 1.0  # skewness past which a number column gets log1p (|skew| > 1: "highly skewed")
RARE = 5  # a category value seen fewer times than this is rare …
RARE_VALUES = 5  # … and a column with at least this many rare values pools them
PRETRAINED_ROWS = 20_000  # text columns of tables up to this size get the pretrained encoder, if installed


def infer_config(frame: pd.DataFrame, *, source: str, target: str, name: str | None = None) -> str:
    """A commented YAML config for learning ``target`` from the other columns of ``frame``.

    Args:
        frame: The data, as read from ``source``.
        source: The data source as the config should name it (path, URL, ``dataset:NAME``).
        target: The column to predict.
        name: The pipeline's name; by default the source file's stem.

    Returns:
        YAML text that :func:`modelmill.config.parse_config` accepts once loaded.

    Raises:
        DataError: No rows, the target is missing, empty, constant or a date, or no column
            can be a feature.
        ConfigError: ``name`` does not fit the name pattern.
    """
    return infer_config_with_warnings(frame, source=source, target=target, name=name).text


def infer_config_with_warnings(
    frame: pd.DataFrame, *, source: str, target: str, name: str | None = None
) -> InferResult:
    """Like :func:`infer_config`, and also the warnings and the inferred schema.

    Args:
        frame: The data, as read from ``source``.
        source: The data source as the config should name it.
        target: The column to predict.
        name: The pipeline's name; by default the source file's stem.

    Returns:
        The config text, the warnings and the schema.

    Raises:
        DataError: As for :func:`infer_config`.
        ConfigError: As for :func:`infer_config`.
    """
    run_name = checked_name(name) if name is not None else default_name(source)
    position = target_position(frame, target, source)
    columns = infer_schema(frame)
    goal = columns[position]
    target_type, warnings = _target_type(frame.iloc[:, position], goal, source)
    found = _personal_data(frame, columns, position)
    personal = {name: d for name, d in found.items() if d.kind not in SUGGESTED_ONLY}
    suggested = [d for d in found.values() if d.kind in SUGGESTED_ONLY]
    features, left_out, feature_warnings = _feature_lines(frame, columns, position, personal)
    if not features:
        raise DataError(_no_features_message(left_out), source=source)
    goal_line = _target_line(goal, target_type, frame.iloc[:, position])
    kept = {line.name for line in features}
    # Dropped columns are listed even when left out anyway, so that uncommenting one is refused
    # by the policy; a hash or generalisation only means something for a feature.
    privacy = [d for d in personal.values() if d.action == "drop" or d.column in kept]
    layout = find_time_layout(frame, columns, skip=goal.name)
    split: tuple[str, str, str | None] = _time_split(layout) if layout else (_split_method(goal_line.type), _split_comment(goal_line), None)
    text = render(run_name=run_name, source=source, rows=len(frame), goal=goal_line, split=split,
                  features=features, left_out=left_out, privacy=privacy,
                  suggested=[d for d in suggested if d.column in kept])
    return InferResult(text=text, warnings=tuple(warnings + feature_warnings), columns=tuple(columns))


def default_name(source: str) -> str:
    """The run name a source gives: its file stem, sanitised (``data/adult.csv.gz`` → ``adult``).

    Args:
        source: A path, URL, SQL URL or ``dataset:NAME``.

    Returns:
        A name matching ``PipelineConfig.name``'s pattern (``model`` if nothing is left).
    """
    base = re.split(r"[?#]", source)[0] if "://" in source else source  # a URL's query
    base = base.rstrip("/\\")
    stem = re.split(r"[/\\:]", base)[-1]
    while PurePath(stem).suffix.lower() in _DATA_SUFFIXES:
        stem = PurePath(stem).stem
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-_.")
    return cleaned or "model"


# ------------------------------------------------------------------------- checks


def checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a valid name: use letters, digits, '_', '.' and '-', starting "
            f"with a letter or digit. Fix: e.g. {default_name(name)!r}",
            path="name",
        )
    return name


def target_position(frame: pd.DataFrame, target: str, source: str) -> int:
    """The target's column position; DataError for no rows, a missing or doubled column."""
    names = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise DataError("0 rows: there is nothing to infer a config from", source=source)
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise DataError(f"column names appear more than once: {', '.join(doubled)}. "
                        "Fix: give every column its own name", source=source)
    if target not in names:
        raise DataError(
            f"target column {target!r} not found{did_you_mean(target, names)}. "
            f"The data has: {listing(names)}. Fix: pass one of these as the target",
            source=source,
        )
    return names.index(target)


def _target_type(series: pd.Series, goal: ColumnInfo, source: str) -> tuple[str, list[str]]:
    """binary, category or number for the target, and warnings; DataError if unlearnable."""
    if goal.kind in ("empty", "constant"):
        raise DataError(f"cannot be the target: {goal.reason}, so there is nothing to learn. "
                        "Fix: choose another target column", source=source, column=goal.name)
    if goal.kind == "date":
        raise DataError("cannot be the target: it holds dates, and modelmill predicts numbers and "
                        "classes. Fix: turn it into a number (e.g. days since a start date) or "
                        "choose another target", source=source, column=goal.name)
    warnings: list[str] = []
    if goal.n_missing:
        warnings.append(f"target {goal.name!r} is missing in {goal.n_missing:,} rows "
                        f"({goal.n_missing / len(series):.1%}); those rows are dropped when training")
    kind = goal.kind
    if kind in ("identifier", "text"):
        present = len(series) - goal.n_missing
        numeric = pd.to_numeric(series, errors="coerce").notna().sum() >= MAJORITY * present
        kind = "number" if numeric else "category"
        warnings.append(f"target {goal.name!r}: {goal.reason}; predicting it as a {kind} "
                        "is unlikely to generalise. Check that it is the column you mean")
    return kind, warnings


# ----------------------------------------------------------------------- features


def _feature_lines(
    frame: pd.DataFrame, columns: list[ColumnInfo], position: int, personal: dict[str, Detection]
) -> tuple[list[Line], list[Line], list[str]]:
    """(features, columns left out, warnings) for every column but the target; a column that
    looks personal is described without its values, and left out when it is to be dropped."""
    features: list[Line] = []
    left_out: list[Line] = []
    warnings: list[str] = []
    target, goal = frame.iloc[:, position], columns[position]
    for index, info in enumerate(columns):
        if index == position:
            continue
        found = personal.get(info.name)
        # Whatever the values say, a column named as personal data is described without them.
        private = found is not None or kind_by_name(info.name) in _PRIVATE_BY_NAME
        reason = _private_reason(info) if private else info.reason
        if found is not None and found.action == "drop":
            left_out.append(Line(info.name, info.kind if info.usable else "category",
                                 f"personal data, dropped (see privacy): {reason}"))
            continue
        if not info.usable:
            why = reason if info.kind in reason else f"{info.kind}: {reason}"
            left_out.append(Line(info.name, "category", why))
            continue
        leak = None if info.kind == "image" else _leak(frame.iloc[:, index], target, info, goal)
        if leak:
            left_out.append(Line(info.name, info.kind, f"leakage: {leak}"))
            warnings.append(f"feature {info.name!r} is {leak} (leakage): left out of the features")
            continue
        line = Line(info.name, info.kind, f"{reason}; {missing_note(info, len(frame))}", ())
        features.append(_with_encoding(line, *_encoding(frame.iloc[:, index], info), found))
        if info.n_invalid:
            about = "about " if info.kind == "date" else ""  # dates are checked on a sample
            warnings.append(
                f"feature {info.name!r} is inferred as {info.kind}, but {about}{info.n_invalid:,} of its "
                f"values are not {info.kind}s ({reason}): training stops on such values. "
                "Fix: clean them, or make it `type: category`"
            )
    return features, left_out, warnings


def _personal_data(frame: pd.DataFrame, columns: list[ColumnInfo], position: int) -> dict[str, Detection]:
    """The detectors' verdict on every column but the target, read on a sample of values
    drawn from the whole column (a file sorted by signup date may start with test rows)."""
    found: dict[str, Detection] = {}
    for index, info in enumerate(columns):
        if index == position or info.kind in ("image", "empty"):
            continue
        present = _as_integers(frame.iloc[:, index].dropna())
        sample = present.sample(n=min(len(present), SAMPLE), random_state=0) if len(present) > SAMPLE else present
        detection = detect_column(info.name, sample.tolist(), free_text=info.kind == "text")
        # A person's id left out as an identifier is already no feature: nothing to hash.
        if detection is not None and (info.usable or detection.action == "drop"):
            found[info.name] = detection
    return found


def _as_integers(series: pd.Series) -> pd.Series:
    """Whole floats as integers: a column of card numbers with a gap in it is read as float64,
    and 4111111111111111.0 is no card number to a pattern."""
    if pd.api.types.is_float_dtype(series.dtype) and len(series) and bool((np.mod(series, 1) == 0).all()) \
            and float(series.abs().max()) < 2**63:
        return series.astype("int64")
    return series


def _with_encoding(line: Line, options: tuple[tuple[str, str], ...], why: str, found: Detection | None) -> Line:
    """The feature line with its encoding; a personal column also gets ``pii: true``, and
    becomes a category where its own type cannot read the treated values."""
    if found is None:
        return Line(line.name, line.type, line.comment + why, options)
    kind = _treated_type(line.type, found)
    why += f"; personal data ({found.kind}), {found.action} (see privacy)"
    if kind != line.type:
        options, why = (), why + f"; a category, since the {found.action} values are no {line.type}"
    return Line(line.name, kind, line.comment + why, options + (("pii", "true"),))


# The feature types that read what a kept column's treatment leaves (as PipelineConfig's
# privacy check has them): text from hash, mask and truncation; numbers; dates.
_READERS = {"text": ("category", "text"), "width": ("number", "category"), "to": ("date", "category")}


def _treated_type(kind: str, found: Detection) -> str:
    """The column's type once treated: its own when that reads the treated values, else category."""
    option = "text" if found.action != "generalise" else next(iter(found.options), "text")
    return kind if kind in _READERS.get(option, _READERS["text"]) else "category"


def _private_reason(info: ColumnInfo) -> str:
    """A column's description without any of its values (no examples, no range)."""
    if info.kind == "text":
        return info.reason  # counts and word lengths only
    noun = {"number": "numbers", "date": "dates"}.get(info.kind, "values")
    return f"{info.kind}, {info.n_unique:,} distinct {noun} (not shown: personal data)"


def _encoding(series: pd.Series, info: ColumnInfo) -> tuple[tuple[tuple[str, str], ...], str]:
    """What a careful user would set after looking at the column, and why. A number column
    whose values pile up at one end with a long tail (money, counts, sizes: skewness above
    1) gets log1p, so the bulk of the values is not squeezed into one bin of the encoding
    and the tail does not dominate the scale. A category column with a tail of values seen
    only a few times pools them in the unknown bucket (``min_frequency``): a weight learned
    from two rows is noise, and at prediction time such a value is as good as unseen."""
    if info.kind == "category":
        counts = series.astype("string").str.strip().value_counts()
        rare = int((counts < RARE).sum())
        if rare >= RARE_VALUES:
            return ((("min_frequency", str(RARE)),),
                    f"; {rare:,} values seen fewer than {RARE} times share the unknown bucket")
        return (), ""
    if info.kind == "text":
        return _text_encoding(len(series))
    if info.kind != "number" or info.n_unique < 3:
        return (), ""
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype="float64")
    if values.size < 3 or float(values.std()) == 0.0:
        return (), ""
    skew = float(np.mean(((values - values.mean()) / values.std()) ** 3))
    if skew <= SKEWED:
        return (), ""
    return (("normalization", "log1p"),), f"; right-skewed (skewness {skew:.1f}): log1p"


def _text_encoding(rows: int) -> tuple[tuple[tuple[str, str], ...], str]:
    """A pretrained sentence encoder, frozen, where one is installed and the table is small
    enough for it on a CPU: it knows the language, where a bag of the table's own words
    knows only those seen here. Its one pass over the texts costs ~20 ms a text on two
    cores, so above ``PRETRAINED_ROWS`` rows (~7 minutes) the bag of words stays."""
    model = PretrainedEncoderConfig.model_fields["model"].default
    if rows > PRETRAINED_ROWS or importlib.util.find_spec(str(model).replace("-", "_")) is None:
        return (), ""
    return ((("encoder", f"{{type: pretrained, model: {model}, pool_layers: 4}}"),),
            f"; read by the pretrained sentence encoder {model} (frozen)")


def _leak(feature: pd.Series, target: pd.Series, info: ColumnInfo, goal: ColumnInfo) -> str | None:
    """How ``feature`` gives the target away (identical, or a one-to-one recoding), or None."""
    if info.n_unique != goal.n_unique or info.n_missing != goal.n_missing:
        return None
    left, right = _canonical(feature), _canonical(target)
    if left.equals(right):
        return f"identical to the target {goal.name!r}"
    if goal.n_unique >= len(target) - goal.n_missing:
        return None  # every value distinct: any distinct column maps one-to-one; not evidence
    left_codes, right_codes = pd.factorize(left)[0], pd.factorize(right)[0]
    pairs = left_codes.astype(np.int64) * (int(right_codes.max()) + 1) + right_codes
    if len(np.unique(pairs)) == int(left_codes.max()) + 1 == int(right_codes.max()) + 1:
        return f"a one-to-one recoding of the target {goal.name!r}"
    return None


def _canonical(series: pd.Series) -> pd.Series:
    """Values as stripped strings with missing as "", so that 1 and " 1" compare equal."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        if np.all(np.isnan(values) | (np.mod(values, 1) == 0)):
            series = pd.Series(values).astype("Int64")  # 1.0 (float for the NaN) is 1
    text = series.astype("string").str.strip().fillna("")
    return text.reset_index(drop=True)


def _no_features_message(left_out: list[Line]) -> str:
    why = "; ".join(f"{line.name} ({line.comment})" for line in left_out[:SHOWN_COLUMNS])
    return (f"no column can be a feature: {why or 'the target is the only column'}. "
            "Fix: add columns to predict from")


def _target_line(goal: ColumnInfo, target_type: str, series: pd.Series) -> Line:
    comment = f"{goal.reason}; {missing_note(goal, len(series))}"
    if target_type == "number" and goal.n_unique <= _FEW_CLASSES and _whole_numbers(series):
        comment += "; if these are classes, make it `type: category`"
    return Line(goal.name, target_type, comment)


def _whole_numbers(series: pd.Series) -> bool:
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype="float64")
    return bool(np.all(np.mod(values, 1) == 0))


def _split_method(target_type: str) -> str:
    return "random" if target_type == "number" else "stratified"


def _time_split(layout: TimeLayout) -> tuple[str, str, str]:
    """A split along time for time-ordered rows: a random one would train on rows later than
    those it is tested on, and so score a model better than it will do on the next rows."""
    fields = SplitConfig.model_fields
    test, valid = fields["test"].default, fields["valid"].default
    return "time", (f"time-ordered data ({layout.reason}): the newest {test:.0%} of rows are the test set, "
                    f"the newest {valid:.0%} of the rest validate, so the model is judged on times after those it "
                    "learned from (a random split would let it learn from the future)"), layout.time


def _split_comment(goal: Line) -> str:
    fields = SplitConfig.model_fields
    test, valid = fields["test"].default, fields["valid"].default
    parts = f"test {test:.0%} of rows, validation {valid:.0%} of the rest"
    if goal.type == "number":
        return f"{parts}, drawn at random"
    return f"{parts}, each keeping the class shares of {goal.name}"
