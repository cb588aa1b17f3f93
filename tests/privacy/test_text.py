"""Entities in free text (``modelmill.privacy.text``): realistic sentences, names after other
capitalised words, a fuzz of planted entities among ordinary words, and hostile texts that
must be scanned in linear time (the policy scrubs request texts at serving time too)."""

from __future__ import annotations

import random
import time

import pytest

from modelmill.privacy.detectors import find_entities, redact, scrub_text
from tests.privacy.test_detectors import GIVEN, SURNAMES, planted


@pytest.mark.parametrize(("text", "expected"), [
    ("Tel 020 7946 0958. 020 7946 0959 is the fax", "Tel [PHONE]. [PHONE] is the fax"),
    ("Call 07911 123456 - 020 7946 0958 anytime", "Call [PHONE] - [PHONE] anytime"),
    ("4111 1111 1111 1111 (415) 555-0132", "[CARD] [PHONE]"),
    ("called 3 times (020 7946 0958) 2 days ago", "called 3 times ([PHONE]) 2 days ago"),
    ("Order 5 4111 1111 1111 1111 12/25", "Order 5 [CARD] 12/25"),
    ("items 1 2 3 4 5 6 020 7946 0958", "items 1 2 3 4 5 6 [PHONE]"),
    ("login failed from 10.0.0.1: bad password", "login failed from [IP]: bad password"),
    ("192.168.1.1:51544 refused", "[IP] refused"),
    ("reach me at 415-555-0132 x12 or (415) 555-0133 ext. 12", "reach me at [PHONE] or [PHONE]"),
    ("from ::1, [2001:db8::1] and fe80::1%eth0", "from [IP], [IP] and [IP]"),
    ("card 4111  1111  1111  1111 or 4111.1111.1111.1111", "card [CARD] or [CARD]"),
    ("John Smith <john@x.com> wrote", "[NAME] <[EMAIL]> wrote"),
    ("mail josé@example.com now", "mail [EMAIL] now"),
    ("fullwidth ０２０ ７９４６ ０９５８", "fullwidth [PHONE]"),
])
def test_realistic_sentences_are_scrubbed(text: str, expected: str) -> None:
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Customer John Smith called", "Customer [NAME] called"), ("Thanks John Smith", "Thanks [NAME]"),
    ("Yesterday Maria Garcia wrote", "Yesterday [NAME] wrote"),
    ("Agent Priya Patel was great", "Agent [NAME] was great"),
    ("Jean-Luc Picard met Mary-Jane Watson", "[NAME] met [NAME]"), ("Ask Mohammed Ali", "Ask [NAME]"),
    ("Björn Borg and Zoë Kravitz", "[NAME] and [NAME]"),
])
def test_names_after_other_capitalised_words_are_found(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


@pytest.mark.parametrize("text", ["The Jordan River", "Victoria Station and Charlotte Street", "Dear Customer Service",
                                  "Tracking 9400 1000 0000 0000 0000 00", "Opening hours 09:00-17:00 Mon-Fri",
                                  "Scores 100 200 300 400 500 600 700", "ISBN 978-3-16-148410-0", "ratio 1:2:3:4"])
def test_ordinary_sentences_with_numbers_and_place_names_have_no_entities(text: str) -> None:
    assert find_entities(text) == []


@pytest.mark.parametrize("text", ["version 4.6.1.66 is out", "upgrade to v 4.6.1.66 today", "Build: 10.2.0.1"])
def test_versions_in_text_are_no_ip_addresses(text: str) -> None:
    assert find_entities(text) == []


ORDINARY_WORDS = ["the", "order", "arrived", "late", "and", "support", "was", "slow", "but", "friendly", "price",
                  "Tuesday", "London", "refund", "Premium", "box", "room", "v2", "item", "OK"]
SEPARATORS = [" ", ", ", ". ", " - ", " (", ") ", "; ", ": "]


def _fuzz_text(rng: random.Random, entities: list[str]) -> str:
    pieces: list[str] = []
    for entity in entities:
        pieces += [rng.choice(ORDINARY_WORDS) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.3:
            pieces.append(str(rng.randint(0, 99)))  # a number next to it
        pieces.append(entity)
        if rng.random() < 0.3:
            pieces.append(str(rng.randint(0, 99)))
    return "".join(piece + rng.choice(SEPARATORS) for piece in pieces).strip()


def test_fuzz_no_planted_entity_survives_and_scrubbing_is_idempotent() -> None:
    rng = random.Random(7)
    values = planted(80, seed=8)
    names = [f"{rng.choice(GIVEN)} {rng.choice(SURNAMES)}" for _ in range(80)]
    pool = [value for kind in values.values() for value in kind] + names
    survived, changed = [], []
    for _ in range(500):
        entities = rng.sample(pool, rng.randint(1, 4))
        text = _fuzz_text(rng, entities)
        once = scrub_text(text)
        survived += [(e, once) for e in entities if e in once]
        if scrub_text(once) != once:
            changed.append(once)
    assert survived == [] and changed == []


HOSTILE = ["1-" * 50_000, "1 " * 50_000, "a." * 50_000, "Aa" * 50_000, "John Smith " * 9_000,
           "Mr Jones rang 020 7946 0958, mail j@x.com. " * 2_200,  # 100 kB each, the request limit
           "Aa-" * 33_000, "Jean-" * 20_000, "Jo'" * 33_000, "Ab’" * 33_000, "(1) " * 25_000, "AB12 " * 20_000,
           "1.1.1.1." * 12_500, "a:" * 50_000, "x@" * 50_000, "Customer " * 11_000, "(" * 100_000, "0 0" * 33_000,
           "a@" + "a." * 50_000, "ext. 1 " * 14_000]


def test_long_and_hostile_texts_are_scanned_in_linear_time() -> None:
    started = time.perf_counter()
    for text in HOSTILE:
        find_entities(text)
    assert time.perf_counter() - started < 20.0  # ~4 s on two busy cores; "Aa-" * 33000 alone took 145 s before


def test_redact_hides_what_the_detectors_see() -> None:
    assert redact("blue") == "blue"
    assert redact("John Smith <john@x.com>") == "<redacted e-mail>"
    assert redact("Jean-Luc Picard") == "<redacted name>"
