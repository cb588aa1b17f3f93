"""Person names: the shipped list of given names, a value that looks like a name, and the
names in free text (an honorific and what follows, or a known given name and a surname)."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib import resources

# A capitalised word: José, O'Brien, McDonald, Jean-Luc (each branch unambiguous: no backtracking blow-up)
CAP = r"[A-ZÀ-ÖØ-Þ](?:[a-zß-öø-ÿ]+|['’](?=[A-Z]))(?:['’-][A-ZÀ-ÖØ-Þ]?[a-zß-öø-ÿ]+|[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+)*"
_HONORIFIC_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Sra|Srta|Shri|Smt)"
                             rf"\.?\s+((?:[A-Z]\.\s*)?{CAP}(?:\s+{CAP})?)")
# The look-behind starts a word only where no word goes on (not inside "Aa-Aa-Aa…"), so a
# chain of capitalised words joined by hyphens is read once, not from each of its parts.
_WORD = re.compile(rf"(?<![\w'’-])(?:{CAP}|[A-Z]\.)")
_NOT_SURNAMES = frozenset({"the", "a", "an", "and", "or", "but", "i", "it", "is", "was", "we", "you", "he", "she",
                           "they", "this", "that", "my", "our", "your", "his", "her", "in", "on", "at", "to",
                           "for", "of", "from", "with", "thanks", "thank", "hi", "hello", "dear",
                           # places and institutions named after people: Victoria Station, Jordan River
                           # (not Park, Hall, House or Lane: surnames as often)
                           "street", "st", "road", "rd", "avenue", "ave", "drive", "square", "station", "river",
                           "bridge", "hotel", "airport", "university", "college", "school", "hospital", "church",
                           "cathedral", "centre", "center", "place", "island", "county", "city", "mountain",
                           "valley", "beach", "gardens", "tower", "inc", "ltd"})
_NAME_VALUE = re.compile(rf"(?:{CAP}|[A-Z]{{2,}}),?(?:\s+(?:{CAP}|[A-Z]{{2,}}|[A-Z]\.),?){{0,2}}")


def fold(word: str) -> str:
    """Lower case without accents, so that José, JOSE and Jose are one name."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@cache
def first_names() -> frozenset[str]:
    """The given names of ``first_names.txt`` (read once), folded by :func:`fold`."""
    text = resources.files("modelmill.privacy").joinpath("first_names.txt").read_text(encoding="utf-8")
    return frozenset(fold(line.strip()) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def is_given_name(word: str) -> bool:
    """A known given name, or a hyphenated one whose first part is (Jean-Luc, Mary-Jane)."""
    folded = fold(word)
    return folded in first_names() or fold(folded.split("-")[0]) in first_names()


def looks_like_name(text: str) -> bool:
    """One to three capitalised words, one of them a known given name."""
    if len(text) > 80 or _NAME_VALUE.fullmatch(text) is None:
        return False
    return any(is_given_name(word) for word in re.split(r"[\s,.]+", text) if word)


def names_in(text: str) -> list[tuple[int, int]]:
    """Spans of person names in ``text``: an honorific and the capitalised words after it,
    or a known given name followed by a capitalised word (or an initial) that is not a
    common word. The capitalised words are walked in order, so that a name after another
    capitalised word ("Customer John Smith") is read as one."""
    spans = [(m.start(1), m.end(1)) for m in _HONORIFIC_NAME.finditer(text)]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    i = 0
    while i < len(words) - 1:
        end = _name_end(text, words, i)
        if end is None:
            i += 1
            continue
        spans.append((words[i][0], words[end][1]))
        i = end + 1
    return spans


def _name_end(text: str, words: list[tuple[int, int]], i: int) -> int | None:
    """The index of the last word of the name that starts at word ``i``, or None."""
    first = text[words[i][0]:words[i][1]]
    if first.endswith(".") or not is_given_name(first) or not _next_to(text, words, i):
        return None
    second = text[words[i + 1][0]:words[i + 1][1]]
    if fold(second.rstrip(".")) in _NOT_SURNAMES:
        return None
    if i + 2 < len(words) and _next_to(text, words, i + 1):
        third = text[words[i + 2][0]:words[i + 2][1]]
        if (second.endswith(".") or not third.endswith(".")) and fold(third.rstrip(".")) not in _NOT_SURNAMES:
            return i + 2  # John A. Smith, Maria Garcia Lopez
    return i + 1


def _next_to(text: str, words: list[tuple[int, int]], i: int) -> bool:
    """Word ``i + 1`` follows word ``i`` after white space only."""
    gap = text[words[i][1]:words[i + 1][0]]
    return bool(gap) and gap.isspace()
