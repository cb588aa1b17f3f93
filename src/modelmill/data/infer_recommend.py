"""``modelmill init --task recommend``: a commented ``task: recommend`` config inferred from the data.

What is read from the data: the user and item columns (given, or the one column named like each
whose ids repeat), the time column (times :func:`~modelmill.data.times.parse_times` reads, or
whole numbers named like a timestamp: Unix seconds), a rating (a small scale of numbers named
like one), a weight (numbers ≥ 0 named like a quantity), and the columns constant within each
item or each user: their features. The holdout and the model keep their defaults, written as
comments; ``modelmill render-config`` shows every setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from modelmill.config.recommend import HoldoutConfig, RecommendConfig
from modelmill.data.config_text import RENDER_HINT, commented, listing, missing_note, scalar
from modelmill.data.infer_config import InferResult, checked_name, default_name, target_position
from modelmill.data.schema import ColumnInfo, infer_schema
from modelmill.data.time_layout import time_columns
from modelmill.errors import DataError, did_you_mean
from modelmill.privacy.columns import kind_by_name

__all__ = ["infer_recommend_config"]

USER_WORDS = ("user", "customer", "client", "member", "visitor", "account", "buyer", "shopper", "subscriber",
              "reader", "listener", "viewer", "player", "person", "patron", "guest", "student", "uid")
ITEM_WORDS = ("item", "movie", "product", "sku", "article", "song", "track", "book", "film", "artist", "album",
              "video", "show", "episode", "post", "news", "story", "recipe", "game", "course", "app", "offer",
              "listing", "restaurant", "business", "hotel", "venue", "asin", "isbn", "anime", "beer", "document",
              "page", "podcast", "iid")
_ID_WORDS = frozenset({"id", "ids", "key", "no", "num", "number", "code", "uuid", "guid"})
_TIME_CORE = frozenset({"time", "timestamp", "ts", "date", "datetime", "created", "epoch", "unix", "when"})
_TIME_WORDS = _TIME_CORE | {"event", "at", "on", "utc", "updated", "stamp"}  # every word of a number time's name
RATING_WORDS = frozenset({"rating", "ratings", "rated", "score", "stars", "star", "rate", "grade", "vote"})
WEIGHT_WORDS = frozenset({"quantity", "qty", "count", "plays", "playcount", "amount", "duration", "seconds",
                          "minutes", "clicks", "views", "weight", "units", "listens", "visits", "purchases"})
_PERSONAL = frozenset({"email", "phone", "card", "national_id", "iban", "ip", "name", "address", "postcode",
                       "birth_date", "person_id"})  # kinds a column's name says: left out, values unwritten
SCALE_VALUES = 21  # distinct ratings a scale has at most (0 to 10 in halves)
TOP_OF_SCALE = 0.75  # min_rating: the first rating in the top quarter of the scale (4 of 1–5, 8 of 1–10)
NAMES_EACH = 0.9  # distinct values per item (or user) past which a column names them, as a title does
SHARED = 0.5  # a category or list feature has fewer distinct values than this share of items (or users)
VARYING = 0.01  # share of items (or users) a feature may vary within (the reader keeps the first value)
_SPLIT_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True)
class _Column:
    name: str
    comment: str


@dataclass(frozen=True)
class _Found:
    """What was read from the data, each column with why (the rating with its min_rating)."""

    user: str
    item: str
    time: _Column | None
    rating: tuple[_Column, _Column] | None
    weight: _Column | None
    item_features: list[_Column]
    user_features: list[_Column]
    unused: list[_Column]


def infer_recommend_config(frame: pd.DataFrame, *, source: str, user: str | None = None, item: str | None = None,
                           name: str | None = None) -> InferResult:
    """A commented ``task: recommend`` config for the interactions in ``frame``.

    Args:
        frame: The data, as read from ``source``: one row per interaction of a user with an item.
        source: The data source as the config should name it.
        user: The user-id column; by default the one named like it (user, customer_id, userId …).
        item: The item-id column; by default the one named like it (item, sku, movieId …).
        name: The pipeline's name; by default the source file's stem.

    Returns:
        The config text (which :func:`modelmill.config.parse_task_config` accepts once loaded),
        the warnings and the inferred schema.

    Raises:
        DataError: No rows, a doubled column name, a given column missing or holding one id, or
            no single column that can be the user (or the item) column.
        ConfigError: ``name`` does not fit the name pattern.
    """
    run_name = checked_name(name) if name is not None else default_name(source)
    target_position(frame, str(frame.columns[0]) if len(frame.columns) else "", source)  # no rows, doubled names
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1).reset_index(drop=True)
    columns = infer_schema(frame)
    info = {c.name: c for c in columns}
    user = _id_column(frame, info, "user", user, USER_WORDS, skip=item, source=source)
    item = _id_column(frame, info, "item", item, ITEM_WORDS, skip=user, source=source)
    users, items = _ids(frame[user]), _ids(frame[item])
    others = [c for c in columns if c.name not in (user, item)]
    time, warnings = _time(frame, columns, others, users, items)
    rating, weight = _rating_and_weight(frame, [c for c in others if not time or c.name != time.name])
    taken = {c.name for c in (time, rating[0] if rating else None, weight) if c}
    item_features, user_features, unused = _features(frame, [c for c in others if c.name not in taken],
                                                     {"item": (item, items), "user": (user, users)})
    pairs = pd.DataFrame({"user": users, "item": items}).dropna()
    warnings += [f"{n:,} rows have no {role} id (column {c!r}): every interaction needs one. Fix: fill or drop them"
                 for role, c, n in (("user", user, users.isna().sum()), ("item", item, items.isna().sum())) if n]
    if time is None:
        warnings.append("no time column was found: the holdout is a seeded random draw per user, which flatters "
                        "every model. Fix: set interactions.time to the column holding when each interaction "
                        "happened (a date or a Unix time)")
    found = _Found(user, item, time, rating, weight, item_features, user_features, unused)
    text = _text(found, pairs, run_name=run_name, source=source, shape=frame.shape)
    return InferResult(text=text, warnings=tuple(warnings), columns=tuple(columns))


# ------------------------------------------------------------------------- reading


def words(name: str) -> list[str]:
    """A column name's words, lower case: ``userId`` → user, id; ``CUSTOMER_NO`` → customer, no."""
    return [w.lower() for w in _SPLIT_WORDS.findall(name)]


def _id_rank(name: str, role_words: tuple[str, ...]) -> int | None:
    """0 for a role word with an id word (user_id, movieId, userid), 1 for the bare word (user),
    None for any other name (user_name, account_type)."""
    found = words(name)
    if len(found) == 1 and found[0].endswith("id") and found[0][:-2] in role_words:
        return 0
    rest = [w for w in found if w not in _ID_WORDS]
    return None if len(rest) != 1 or rest[0] not in role_words else 0 if len(rest) < len(found) else 1


def _id_problem(info: ColumnInfo, column: pd.Series) -> str | None:
    """Why a column cannot hold the user (or item) of each interaction, or None."""
    if info.kind in ("empty", "constant", "text", "image", "date") or info.n_unique < 2:
        return f"{info.kind}: {info.reason}"
    numbers = pd.to_numeric(column, errors="coerce").dropna()
    if len(numbers) == column.notna().sum() and not np.all(np.mod(numbers.to_numpy(dtype="float64"), 1) == 0):
        return "numbers with fractions, not ids"
    if info.n_unique == column.notna().sum():
        return "every value is distinct, where ids of interactions repeat"
    return None


def _id_column(frame: pd.DataFrame, info: dict[str, ColumnInfo], role: str, given: str | None,
               role_words: tuple[str, ...], *, skip: str | None, source: str) -> str:
    """The given column, checked, or the one column named like a ``role`` id whose values repeat
    (an id word wins over the bare word: user_id over user)."""
    names = list(info)
    fix = f"Fix: pass --{role} COLUMN (the column naming the {role} of each interaction)"
    if given is not None:
        if given not in info:
            raise DataError(f"{role} column {given!r} not found{did_you_mean(given, names)}. The data has: "
                            f"{listing(names)}. {fix}", source=source)
        if given == skip:
            raise DataError(f"{given!r} cannot be both the user and the item column. {fix}", source=source)
        if info[given].n_unique < 2:
            raise DataError(f"holds one {role} only ({info[given].reason}): a recommender needs several. {fix}",
                            source=source, column=given)
        return given
    ranked: dict[int, list[str]] = {}
    unfit: list[str] = []
    for name in names:
        rank = _id_rank(name, role_words) if name != skip else None
        problem = _id_problem(info[name], frame[name]) if rank is not None else None
        if problem:
            unfit.append(f"{name} ({problem})")
        elif rank is not None:
            ranked.setdefault(rank, []).append(name)
    if not ranked:
        also = f"; named like one but unfit: {', '.join(unfit)}" if unfit else ""
        raise DataError(f"no {role} column: no column is named like a {role} id ({', '.join(role_words[:8])}, … "
                        f"with or without _id/Id){also}. The data has: {listing(names)}. {fix}", source=source)
    best = ranked[min(ranked)]
    if len(best) > 1:
        raise DataError(f"several columns could be the {role} column: {', '.join(best)} (each named like a {role} "
                        f"id, with repeated values). {fix}", source=source)
    return best[0]


def _ids(column: pd.Series) -> pd.Series:
    """Ids as strings, as the reader compares them (42, 42.0 and "42" one id); NA where missing."""
    if pd.api.types.is_float_dtype(column):
        column = column.map(lambda v: str(int(v)) if np.isfinite(v) and float(v).is_integer() else v)
    text = column.astype("string").str.strip()
    return text.mask(text == "")


def _varying(values: pd.Series, keys: pd.Series) -> int:
    """How many ids (users or items) the column holds more than one value within; with ids
    seen in fewer than 2 rows on average, all of them (one row per item says nothing)."""
    if keys.notna().sum() < 2 * keys.nunique():
        return int(keys.nunique())
    return int((values.groupby(keys.to_numpy(), dropna=True).nunique(dropna=True) > 1).sum())


def _numbers(column: pd.Series) -> pd.Series | None:
    values = pd.to_numeric(column, errors="coerce")
    return values.astype("float64") if values.notna().sum() == column.notna().sum() > 0 else None


def _time(frame: pd.DataFrame, columns: list[ColumnInfo], others: list[ColumnInfo], users: pd.Series,
          items: pd.Series) -> tuple[_Column | None, list[str]]:
    """The time column, one named like a time first; never one constant within each item or user
    (a release date, a sign-up date: an attribute, not when the interaction was)."""
    found: list[tuple[int, str, str, pd.Series]] = []
    for name, parsed in time_columns(frame, columns, skip=""):
        if any(c.name == name for c in others):
            found.append((0 if set(words(name)) & _TIME_CORE else 1, name, f"{parsed.form}s", parsed.values))
    for info in others:
        values = _numbers(frame[info.name]) if info.kind == "number" else None
        named = set(words(info.name))
        if values is not None and named & _TIME_CORE and named <= _TIME_WORDS and np.all(np.mod(values, 1) == 0):
            seconds = bool(values.between(1e8, 4e9).all())  # 1973 to 2096
            found.append((0, info.name, "Unix seconds" if seconds else "numbers read as Unix seconds (only their "
                          "order matters)", pd.to_datetime(values, unit="s") if seconds else values))
    for _, name, form, values in sorted(found, key=lambda f: f[0]):
        if values.nunique() < 2 or min(_varying(values, items), _varying(values, users)) == 0:
            continue
        present = values.dropna()
        first, last = (f"{v:%Y-%m-%d}" if isinstance(v, pd.Timestamp) else f"{v:g}" for v in (present.min(),
                                                                                            present.max()))
        missing = len(values) - len(present)
        warnings = [f"time column {name!r}: {missing:,} values are missing or not times; reading the interactions "
                    "stops on them. Fix: correct or drop those rows"] if missing else []
        return _Column(name, f"{form}: {present.nunique():,} distinct times from {first} to {last}; the holdout "
                       "keeps each user's latest interactions"), warnings
    return None, []


def _rating_and_weight(frame: pd.DataFrame, others: list[ColumnInfo]
                       ) -> tuple[tuple[_Column, _Column] | None, _Column | None]:
    """The first rating (with the min_rating suggested) and the first weight among ``others``."""
    rating = weight = None
    for info in others:
        values = _numbers(frame[info.name]) if info.kind in ("number", "binary") else None
        named = set(words(info.name))
        if values is None:
            continue
        if rating is None and named & RATING_WORDS and 2 <= info.n_unique <= SCALE_VALUES:
            rating = _rating(info, values)
        elif weight is None and named & WEIGHT_WORDS and values.min() >= 0 and not info.n_missing:
            weight = _Column(info.name, f"numbers ≥ 0: {info.reason}; an interaction counts as much as its weight "
                             "(repeated rows add up)")
    return rating, weight


def _rating(info: ColumnInfo, values: pd.Series) -> tuple[_Column, _Column]:
    """The rating, and the min_rating suggested: the first rating in the top quarter of the scale
    (4 of 1–5 and of 0.5–5, 8 of 1–10, 1 of 0/1). What a rating means is set by its scale, not by
    how generous these raters were; the share of rows it keeps, which depends on them, is said."""
    scale = np.sort(values.dropna().unique())
    low, high = float(scale[0]), float(scale[-1])
    threshold = float(scale[scale >= low + TOP_OF_SCALE * (high - low)][0])
    keep = _Column(f"{threshold:g}", f"uncomment to keep only ratings ≥ {threshold:g} as the positives (the top "
                   f"quarter of the {low:g}–{high:g} scale: {float((values >= threshold).mean()):.0%} of the rows); "
                   "as written, every rated interaction is a positive")
    return _Column(info.name, f"{info.reason}: a scale of ratings"), keep


def _features(frame: pd.DataFrame, others: list[ColumnInfo], ids: dict[str, tuple[str, pd.Series]]
              ) -> tuple[list[_Column], list[_Column], list[_Column]]:
    """(item features, user features, columns not used), each with why: a feature is constant
    within each item (or user), and neither names each one nor is free text."""
    found: dict[str, list[_Column]] = {"item": [], "user": []}
    unused: list[_Column] = []
    for info in others:
        personal = kind_by_name(info.name)
        if info.kind in ("empty", "constant", "identifier", "image"):
            unused.append(_Column(info.name, f"{info.kind}: {info.reason}"))
        elif personal in _PERSONAL:
            unused.append(_Column(info.name, f"looks like personal data ({personal}): left out"))
        elif info.kind in ("text", "date"):
            what = "free text" if info.kind == "text" else "dates"
            unused.append(_Column(info.name, f"{what} ({info.n_unique:,} distinct values): the recommenders read "
                                  "categories, numbers and lists"))
        else:
            side = next((s for s, (_, keys) in ids.items()
                         if _varying(frame[info.name], keys) <= VARYING * keys.nunique()), None)
            if side is None:
                unused.append(_Column(info.name, f"{info.kind}; varies within items and within users: a value of "
                                      "each interaction (its context), not a feature of a user or an item"))
                continue
            id_column, keys = ids[side]
            why, use = _feature_why(frame[info.name], info, side, id_column, int(keys.nunique()), len(frame))
            varies = _varying(frame[info.name], keys)
            note = f"; varies within {varies:,} {side}s (the first value is kept)" if varies and use else ""
            (found[side] if use else unused).append(_Column(info.name, why + note))
    return found["item"], found["user"], unused


def _feature_why(column: pd.Series, info: ColumnInfo, side: str, id_column: str, n_ids: int,
                 rows: int) -> tuple[str, bool]:
    """Why a column constant per ``side`` is a feature of it, or not (``False``); a user column's
    values are never written (they may be personal)."""
    reason = info.reason if side == "item" else f"{info.n_unique:,} distinct values"
    constant = f"constant per {id_column}; {missing_note(info, rows)}"
    separator = _separator(column, n_ids) if info.kind == "category" else None
    if info.kind in ("number", "binary"):
        return f"{info.kind}: {reason}; {constant}", True
    if separator:
        return f"lists separated by {separator}: {_parts(column, separator):,} distinct values; {constant}", True
    if info.n_unique >= NAMES_EACH * n_ids:
        return (f"names each {side} ({info.n_unique:,} distinct values for {n_ids:,} {side}s, like a title): it "
                f"says nothing the {side} id does not"), False
    if info.n_unique > SHARED * n_ids:
        return f"{info.n_unique:,} distinct values for {n_ids:,} {side}s: too few shared to learn from", False
    return f"category: {reason}; {constant}", True


def _parts(column: pd.Series, separator: str) -> int:
    parts = column.dropna().astype("string").str.split(separator, regex=False).explode().str.strip()
    return int(parts[parts != ""].nunique())


def _separator(column: pd.Series, n_ids: int) -> str | None:
    """``|`` or ``,`` when the column holds lists (genres): values that contain it, and far
    fewer distinct parts than distinct values (a title with a comma has as many parts)."""
    text = column.dropna().astype("string")
    for separator in ("|", ","):
        if text.str.contains(separator, regex=False).mean() >= 0.05 and \
                _parts(column, separator) <= min(text.nunique() / 2, SHARED * n_ids):
            return separator
    return None


# ------------------------------------------------------------------------- writing


def _text(found: _Found, pairs: pd.DataFrame, *, run_name: str, source: str, shape: tuple[int, int]) -> str:
    n_users, n_items = pairs["user"].nunique(), pairs["item"].nunique()
    repeated = int(pairs.duplicated().sum())
    density = (len(pairs) - repeated) / max(n_users * n_items, 1)
    lines = [
        f"# modelmill recommend config inferred from {source} ({shape[0]:,} rows, {shape[1]:,} columns: "
        f"{n_users:,} users, {n_items:,} items, {density:.2%} of their pairs known).",
        *RENDER_HINT,
        "# A recommender is judged on each user's latest interactions held out (holdout:): it ranks the",
        "# whole catalogue for each user, the items they already have left out, and is scored on the",
        "# held-out items it places in the top k (recall, NDCG, MAP, catalogue coverage).",
        "", "task: recommend", f"name: {scalar(run_name)}", "", "data:", f"  source: {scalar(source)}", "",
        "interactions:", _id_line("user", found.user, pairs), _id_line("item", found.item, pairs),
        _role_line("time", found.time, "none found: the holdout is then a seeded random draw per user, which "
                   "flatters every model (it tests on interactions from before some it trained on)"),
        *_rating_lines(found.rating),
        _role_line("weight", found.weight, "none found (numbers ≥ 0 named like a quantity, plays or seconds): "
                   "each interaction weighs 1"),
        commented("  duplicates: sum", f"{repeated:,} rows repeat a (user, item) pair: each pair is one interaction, "
                  "weights summed, the latest time kept; refuse: an error naming them") if repeated else
        commented("  # duplicates: sum", "no row repeats a (user, item) pair"),
        *_feature_lines("item", found.item_features), *_feature_lines("user", found.user_features),
        *(["  # Not used:", *[commented(f"  #   {scalar(c.name)}", c.comment) for c in found.unused]]
          if found.unused else []),
        "", *_holdout_lines(found.time is not None, pairs), "", *_model_lines()]
    return "\n".join(lines) + "\n"


def _id_line(role: str, column: str, pairs: pd.DataFrame) -> str:
    per = pairs.drop_duplicates().groupby(role).size()
    median = int(per.median())
    return commented(f"  {role}: {scalar(column)}", f"{len(per):,} {role}{'' if len(per) == 1 else 's'}, with "
                     f"{median:,} interaction{'' if median == 1 else 's'} each (median; {int(per.min()):,} to "
                     f"{int(per.max()):,})")


def _role_line(key: str, found: _Column | None, none: str) -> str:
    return commented(f"  {key}: {scalar(found.name)}", found.comment) if found else commented(f"  # {key}:", none)


def _rating_lines(rating: tuple[_Column, _Column] | None) -> list[str]:
    if rating is None:
        return [commented("  # rating:", "none found (a small scale of numbers named like a rating)")]
    return [_role_line("rating", rating[0], ""), commented(f"  # min_rating: {rating[1].name}", rating[1].comment)]


def _feature_lines(side: str, found: list[_Column]) -> list[str]:
    """Written commented: item features make model: auto pick the two-tower over EASE, which ranks
    items with interactions better but cannot rank those with none (docs/benchmarks.md); no model
    uses user features yet."""
    if not found:
        return []
    why = ("uncomment to rank items no one has interacted with yet by them (model: auto then picks the two-tower "
           "instead of EASE)" if side == "item" else "read and checked, but no model uses user features yet")
    return [commented(f"  # {side}_features:", f"columns constant within each {side}: {why}"),
            *[commented(f"  #   - {scalar(c.name)}", c.comment) for c in found]]


def _holdout_lines(timed: bool, pairs: pd.DataFrame) -> list[str]:
    defaults = HoldoutConfig()
    per_user = pairs.drop_duplicates().groupby("user").size()
    few = int((per_user < defaults.min_interactions).sum())
    how = "each user's latest interactions" if timed else "a seeded random draw of each user's interactions"
    return [commented("# holdout:", f"the defaults: {how} held out (modelmill render-config shows all)"),
            commented(f"#   test: {defaults.test:g}", "share of each user's interactions held out for the test"),
            commented(f"#   valid: {defaults.valid:g}", "the share before it, to choose the model's settings"),
            commented(f"#   min_interactions: {defaults.min_interactions}",
                      f"users with fewer keep them all for training ({few:,} of {len(per_user):,} users here)")]


def _model_lines() -> list[str]:
    model = RecommendConfig.model_fields["model"].default_factory()  # type: ignore[call-arg, misc]
    return [commented("# model:", "the default, auto: EASE, or the two-tower when item features are set or "
                      "more items than max_items have interactions; type: popularity is the floor every model must "
                      "beat"),
            *[f"#   {key}: {str(value).lower() if isinstance(value, bool) else value}"
              for key, value in model.model_dump().items()]]
