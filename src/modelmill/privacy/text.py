"""Personal data in free text: the spans of e-mails, phone and card numbers, national IDs,
IBANs, IP addresses and person names, their replacement by placeholders, and redaction of
a value for an error message. Every scan is linear in the text, whatever it holds: 100 kB,
the request limit, takes 0.1 to 0.5 s on one core (a text of repeated digit pairs is the slowest)."""

from __future__ import annotations

import bisect
import re

from modelmill.privacy.kinds import KINDS_BY_KEY, STRUCTURED, Kind, detect_value
from modelmill.privacy.names import looks_like_name, names_in
from modelmill.privacy.values import normalise

_WORDS = re.compile(r"\S+")
_DIGIT = re.compile(r"\d")
_OPENERS, _CLOSERS = "([{<\"'“‘", ")]}>\"'”’"
_MAX_TRIM = 6


def find_entities(text: str) -> list[tuple[int, int, str]]:
    """Spans of e-mails, phone numbers, card numbers, national IDs, IBANs, IP addresses and
    person names in free text.

    Args:
        text: Any text.

    Returns:
        ``(start, end, kind)`` spans, sorted and non-overlapping. Kinds are searched in the
        order of :data:`~modelmill.privacy.kinds.KIND_TABLE`, each outside the spans the
        ones before it found (an e-mail's digits are no phone number).
    """
    scan = _Scan(normalise(text))
    kept: list[tuple[int, int, str]] = []  # sorted by start, non-overlapping
    for kind in STRUCTURED:
        for start, end in scan.spans_of(kind, kept):
            bisect.insort(kept, (start, end, kind.key))
    for start, end in names_in(scan.text):
        _claim(kept, (start, end, "name"))
    return kept


def _claim(kept: list[tuple[int, int, str]], claim: tuple[int, int, str]) -> None:
    """Adds ``claim`` unless it overlaps a span already kept."""
    at = bisect.bisect_left(kept, claim)
    if (at == 0 or kept[at - 1][1] <= claim[0]) and (at == len(kept) or claim[1] <= kept[at][0]):
        kept.insert(at, claim)


class _Scan:
    """One text's words, with running counts of their digits and of one-character words,
    and the checks already made (a text that repeats itself, "00 00 00 …", asks the same
    question at each word)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = [(m.start(), m.end()) for m in _WORDS.finditer(text)]
        self.trimmed = [_trimmed(text, start, end) for start, end in self.words]  # without punctuation
        self.digits, self.singles = [0], [0]
        for start, end in self.words:
            self.digits.append(self.digits[-1] + len(_DIGIT.findall(text, start, end)))
            self.singles.append(self.singles[-1] + (end - start == 1))
        self.checked: dict[tuple[str, str], bool] = {}

    def spans_of(self, kind: Kind, kept: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
        """The spans of one kind outside ``kept``: the matches of its pattern, or runs of up to
        ``in_text.words`` candidate words, the longest that passes the kind's check first, from
        each word on (so that a number next to another, "items 1 2 020 7946 0958", is found)."""
        how = kind.in_text
        if how is None:
            return []
        if how.pattern is not None:
            return [span for span in ((m.start(), m.end()) for m in how.pattern.finditer(self.text))
                    if _outside(span, kept)]
        run_end = self._runs(kind, kept)
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(self.words):
            last = min(run_end[i], i + how.words)
            span = self._longest(kind, i, last) if self._may_start(kind, i, last) else None
            if span is None:
                i += 1
            else:
                spans.append(span[:2])
                i = span[2]
        return spans

    def _runs(self, kind: Kind, kept: list[tuple[int, int, str]]) -> list[int]:
        """For each word, the first word from it on that cannot be part of the kind."""
        assert kind.in_text is not None and kind.in_text.token is not None  # a token or a pattern
        token, free = kind.in_text.token, _free(self.words, kept)
        run_end = list(range(len(self.words) + 1))
        for i in range(len(self.words) - 1, -1, -1):
            if free[i] and token.fullmatch(self.text, *self.trimmed[i]) is not None:
                run_end[i] = run_end[i + 1]
        return run_end

    def _may_start(self, kind: Kind, i: int, last: int) -> bool:
        """Words ``i`` to ``last`` hold enough digits, start as the kind does, follow no word
        that makes them something else ("version 4.6.1.66")."""
        assert kind.in_text is not None
        how = kind.in_text
        return (last > i and self.digits[last] - self.digits[i] >= how.digits[0]
                and (how.first is None or how.first.match(self.text, self.trimmed[i][0]) is not None)
                and not _after(self.text, self.words, i, how.not_after))

    def _longest(self, kind: Kind, i: int, last: int) -> tuple[int, int, int] | None:
        """The longest run of words ``i`` to at most ``last`` (exclusive) that passes the kind's
        check, as (start, end, next word), or None; only runs with the kind's count of digits
        and of one-character words are checked (found by bisection: the counts only grow)."""
        assert kind.in_text is not None
        (low, high), digits, singles = kind.in_text.digits, self.digits, self.singles
        last = bisect.bisect_right(singles, singles[i] + kind.in_text.singles, i + 1, last + 1) - 1
        shortest = bisect.bisect_left(digits, digits[i] + low, i + 1, last + 1)
        longest = bisect.bisect_right(digits, digits[i] + high, i + 1, last + 1) - 1
        for end in range(longest, shortest - 1, -1):
            left, right = _trimmed(self.text, self.words[i][0], self.words[end - 1][1])
            if right > left and self._check(kind, self.text[left:right]):
                return left, right, end
        return None

    def _check(self, kind: Kind, candidate: str) -> bool:
        key = (kind.key, candidate)
        if key not in self.checked:
            self.checked[key] = kind.check is not None and kind.check(candidate)
        return self.checked[key]


def _free(words: list[tuple[int, int]], kept: list[tuple[int, int, str]]) -> list[bool]:
    """Whether each word is outside every kept span (both sorted: one merge)."""
    free, k = [], 0
    for start, end in words:
        while k < len(kept) and kept[k][1] <= start:
            k += 1
        free.append(k == len(kept) or end <= kept[k][0])
    return free


def _outside(span: tuple[int, int], kept: list[tuple[int, int, str]]) -> bool:
    at = bisect.bisect_left(kept, (span[0], span[1], ""))
    return (at == 0 or kept[at - 1][1] <= span[0]) and (at == len(kept) or span[1] <= kept[at][0])


def _after(text: str, words: list[tuple[int, int]], i: int, previous: frozenset[str]) -> bool:
    """Word ``i`` follows one of ``previous`` (``version 4.6.1.66`` is no IP address)."""
    return bool(previous) and i > 0 and text[words[i - 1][0]:words[i - 1][1]].rstrip(":").lower() in previous


def _trimmed(text: str, left: int, right: int) -> tuple[int, int]:
    """Without the sentence's punctuation around it, nor a bracket or quote that is not its own
    (at most a few characters each side: a run of a thousand brackets is trimmed in linear time)."""
    for _ in range(_MAX_TRIM):
        if right <= left:
            break
        part = text[left:right]
        if part[-1] in ".,;!?" or (part[-1] == ":" and part[-2:] != "::"):
            right -= 1
        elif part[-1] in _CLOSERS and (part.count(part[-1]) > part.count(_OPENERS[_CLOSERS.index(part[-1])])
                                       or part[-1] in "\"'”’>"):
            right -= 1
        elif part[0] in _OPENERS and (part.count(part[0]) > part.count(_CLOSERS[_OPENERS.index(part[0])])
                                      or part[0] in "\"'“‘<"):
            left += 1
        elif part[0] == "(" and _closing(part) == len(part) - 1:  # "(020 7946 0958)": not its own
            left, right = left + 1, right - 1
        else:
            break
    return left, right


def _closing(part: str) -> int:
    """Where the bracket that opens ``part`` closes (-1: nowhere)."""
    depth = 0
    for at, char in enumerate(part):
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return at
    return -1


def scrub_text(text: str) -> str:
    """``text`` with each entity :func:`find_entities` finds replaced by a placeholder such
    as ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` or ``[NAME]``; scrubbing twice changes nothing."""
    pieces: list[str] = []
    last = 0
    for start, end, kind in find_entities(text):
        pieces += [text[last:start], KINDS_BY_KEY[kind].placeholder]
        last = end
    return "".join(pieces) + text[last:]


def redact(value: str) -> str:
    """A value fit for an error message: itself when it looks like no personal data, else
    ``<redacted e-mail>``, ``<redacted name>`` … (text holding some: scrubbed)."""
    kind = detect_value(value)
    if kind is None and looks_like_name(value.strip()):
        kind = "name"
    if kind is not None:
        return f"<redacted {KINDS_BY_KEY[kind].label}>"
    return scrub_text(value)
