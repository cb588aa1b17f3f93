"""Column verdicts: whether a column holds personal data, by its values and by its name, and
the action to suggest for it. A verdict's reason holds no value from the data, so it can
be written to a file or a log."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from modelmill.data.values import plain_string
from modelmill.privacy.kinds import BY_CONTENT, CONTENT_SHARE, KIND_TABLE, KINDS_BY_KEY, detect_value, year
from modelmill.privacy.names import fold, looks_like_name
from modelmill.privacy.text import find_entities
from modelmill.privacy.values import national_id_form, normalise

SAMPLE = 1000  # non-missing values a column verdict reads: enough for a share to ±3 points
NAME_SHARE = 0.3  # values with a known given name: the list covers about half of real names
TEXT_SHARE = 0.01  # free text with entities in this share of rows (at least one) is scrubbed
# Kinds init only suggests, as a commented line: quasi-identifiers that single out nobody alone.
SUGGESTED_ONLY = frozenset({"age"})


@dataclass(frozen=True)
class Detection:
    """One column's verdict.

    Attributes:
        column: The column's name.
        kind: One of :data:`~modelmill.privacy.detectors.KINDS`.
        share: Share of sampled non-missing values that matched (0 when flagged by name only).
        by_name: Whether the column's name says so.
        action: The suggested action: ``drop``, ``hash``, ``mask``, ``generalise`` or ``scrub``.
        options: The action's options, e.g. ``{"keep": 3}`` or ``{"to": "month"}``.
        reason: One line for the YAML comment, with no value from the data in it.
    """

    column: str
    kind: str
    share: float
    by_name: bool
    action: str
    options: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


_SPLIT_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_PERSON_NAMES = frozenset({"firstname", "lastname", "surname", "fullname", "givenname", "familyname",
                           "middlename", "maidenname", "forename", "forenames", "nickname", "displayname"})
_PEOPLE = frozenset({"customer", "client", "user", "member", "patient", "employee", "person", "subscriber",
                     "student", "buyer", "seller", "passenger", "guest", "visitor", "player", "driver",
                     "applicant", "borrower", "cust", "acct", "account", "contact", "holder", "owner",
                     "citizen", "voter", "donor", "tenant", "cardholder", "policyholder"})
# An account's name in a CRM is a company's: "account" says id, not name.
_NAME_QUALIFIERS = (_PEOPLE - {"account", "acct"}) | {"first", "last", "full", "given", "family", "middle",
                                                      "maiden", "legal", "real"}
_ID_WORDS = frozenset({"id", "no", "num", "number", "nr", "code", "key", "ref", "uuid", "guid", "identifier"})
_HANDLES = frozenset({"username", "userid", "login", "handle", "screenname", "customerid", "accountid"})
_VERSIONS = frozenset({"version", "ver", "build", "release", "firmware", "revision", "rev"})


def detect_column(name: str, values: Sequence[Any], *, free_text: bool = False) -> Detection | None:
    """Whether a column holds personal data, what kind, and what to do with it.

    Args:
        name: The column's name (``customer_email``, ``firstName``, ``Date of birth`` …).
        values: Its values (any types, a list or a pandas Series; missing ones are skipped);
            at most :data:`SAMPLE` non-missing values, spread over the column, are read.
        free_text: The column is a text feature: entities inside the texts get it scrubbed.

    Returns:
        The verdict, or None when nothing personal was found.
    """
    sample = _sample(values)
    if not sample:
        return None
    named = kind_by_name(name)
    counts = Counter(kind for kind in (_value_kind(text, name, named) for text in sample) if kind is not None)
    for kind, hits in counts.most_common():
        if hits >= KINDS_BY_KEY[kind].share * len(sample):
            return _verdict(name, kind, hits / len(sample), by_name=named == kind, sample=sample)
    if named is not None and _plausible(named, sample):
        kind = named.rstrip("?")
        rule = KINDS_BY_KEY[kind].content
        share = _share(sample, rule) if rule is not None else counts[kind] / len(sample)
        return _verdict(name, kind, share, by_name=True, sample=sample)
    for found in BY_CONTENT:
        share = _share(sample, found.content) if found.content is not None else 0.0
        if share >= CONTENT_SHARE and (found.key != "name" or _names_vary(sample)):
            return _verdict(name, found.key, share, by_name=False, sample=sample)
    return _text_verdict(name, sample) if free_text else None


def _sample(values: Sequence[Any]) -> list[str]:
    """Up to SAMPLE present values as stripped strings, evenly spread (deterministic), read
    by position; a whole float is read as the integer it is (4111111111111111.0, as a
    column of card numbers with a gap in it is read, is a card number)."""
    cells = values.iloc if isinstance(values, pd.Series) else values
    step = max(1, -(-len(values) // SAMPLE))
    present = (_plain(cells[i]) for i in range(0, len(values), step))
    return [text for text in present if text is not None][:SAMPLE]


_WHOLE = re.compile(r"([+-]?\d+)\.0*")


def _plain(value: object) -> str | None:
    if isinstance(value, float) and value == value and abs(value) < 2**63 and value.is_integer():
        return str(int(value))
    text = plain_string(value)
    if text is None:
        return None
    whole = _WHOLE.fullmatch(text)
    return whole.group(1) if whole else normalise(text)


def _share(sample: list[str], rule: Callable[[str], bool]) -> float:
    return sum(1 for text in sample if rule(text)) / len(sample)


def _value_kind(text: str, name: str, named: str | None) -> str | None:
    """A value's kind, with two that ordinary codes take unless the name says otherwise: a
    four-part version is no IP address, a code shaped like a UK NINO (``MZ763068D``) no
    national ID unless the name says national ID."""
    kind = detect_value(text)
    if kind == "ip" and set(_words(name)) & _VERSIONS:
        return None
    if kind == "national_id" and named != "national_id" and national_id_form(text) == "nino":
        return None
    return kind


def _words(name: str) -> list[str]:
    """``customerEmail`` → customer, email; adjacent pairs joined too (``e_mail`` → email)."""
    words = [w.lower() for w in _SPLIT_WORDS.findall(name)]
    return words + [a + b for a, b in zip(words, words[1:])] + ["".join(words)]


def kind_by_name(name: str) -> str | None:
    """The kind a column's name says, matched on whole words (``filename``, ``page`` and
    ``average`` say nothing); ``name?`` for a bare "name" (a product's, or a person's?).
    A user name or login is an account's id, so it is a ``person_id``."""
    words = _words(name)
    parts = set(words[: len(_SPLIT_WORDS.findall(name))])
    joined = set(words)
    if joined & _HANDLES or (parts & _PEOPLE and parts & _ID_WORDS and not joined & {"contactnumber", "contactno"}) \
            or parts in ({"account"}, {"acct"}):
        return "person_id"
    if joined & _PERSON_NAMES or ("name" in parts and parts & _NAME_QUALIFIERS):
        return "name"
    for kind in KIND_TABLE:
        if joined & kind.name_words and not joined & kind.not_words:
            return kind.key
    return "name?" if parts == {"name"} else None


def _plausible(kind: str, sample: list[str]) -> bool:
    """The values can be what the name says (``card_type`` holds no card numbers, ``is_mobile``
    no phone numbers, ``sin_angle`` no SIN): CONTENT_SHARE of them have the kind's shape."""
    if kind == "name?":  # a bare "name" column needs people's names in it
        return _share(sample, looks_like_name) >= NAME_SHARE and _names_vary(sample)
    return _share(sample, KINDS_BY_KEY[kind].shape) >= CONTENT_SHARE and len(set(sample)) > 2


def _names_vary(sample: list[str]) -> bool:
    """People's names repeat little; a category that happens to hold a few (cities, colours)
    does: 30% of the values distinct, and at least 20 of them in a large sample. And their
    surnames vary: a product line after a designer ("Michael Kors Tote", "Michael Kors Bag")
    has many values but few first two words."""
    distinct = set(sample)
    if len(distinct) < 0.3 * len(sample) or len(distinct) < min(20, len(sample) // 2):
        return False
    named = [text for text in distinct if looks_like_name(text)]
    heads = {tuple(fold(word) for word in text.split()[:2]) for text in named}
    return len(heads) >= 0.6 * len(named)


def _text_verdict(name: str, sample: list[str]) -> Detection | None:
    kinds = [{kind for _, _, kind in find_entities(text)} for text in sample]
    rows = sum(1 for found in kinds if found)
    if rows == 0 or rows < TEXT_SHARE * len(sample):
        return None
    seen = [kind for kind in KIND_TABLE if kind.key in set().union(*kinds)]
    what = ", ".join(kind.described for kind in seen)
    return Detection(column=name, kind=seen[0].key, share=rows / len(sample), by_name=False, action="scrub",
                     reason=f"free text with {what} in {rows / len(sample):.0%} of sampled rows: each one "
                            "is replaced by a placeholder before tokenising")


def _verdict(name: str, key: str, share: float, *, by_name: bool, sample: list[str]) -> Detection:
    kind = KINDS_BY_KEY[key]
    options, why = dict(kind.options), kind.why
    if key == "birth_date" and _share(sample, year) >= CONTENT_SHARE:
        options, why = {"width": 10}, "a quasi-identifier (Sweeney 2000): kept as its decade"
    found = [f"in {share:.0%} of sampled values" if share else "", "by the column's name" if by_name else ""]
    evidence = " and ".join(part for part in found if part)
    return Detection(column=name, kind=key, share=share, by_name=by_name, action=kind.action, options=options,
                     reason=f"{kind.described} ({evidence}): {why}")

