"""Column verdicts (``modelmill.privacy.columns``): columns that only look personal keep
their place, columns that mix personal values with words are flagged, and the verdict
reads any sequence of values by position."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from modelmill.privacy.detectors import detect_column
from tests.privacy.test_detectors import emails, person_names


def _versions(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 200)}" for _ in range(n)]


def _skus(rng: random.Random, n: int) -> list[str]:
    """Product codes that happen to have the shape of a UK National Insurance number."""
    return [f"{rng.choice('ABCEGHJKLMNPRSTWXYZ')}{rng.choice('ABCEGHJKLMNPRSTWXYZ')}{rng.randint(0, 999999):06d}"
            f"{rng.choice('ABCD')}" for _ in range(n)]


BRANDS = ["Michael Kors", "Calvin Klein", "Tommy Hilfiger", "Ralph Lauren", "Kate Spade", "Tory Burch"]
ITEMS = ["Tote", "Wallet", "Belt", "Jeans", "Shirt", "Bag", "Scarf", "Watch", "Jacket", "Sneakers", "Cap", "Dress"]
COMPANIES = ["Acme Ltd", "Globex Corporation", "Initech", "Umbrella plc", "Stark Industries", "Wayne Enterprises",
             "Hooli", "Vandelay Industries", "Soylent Corp", "Tyrell Corporation", "Cyberdyne Systems", "Wonka GmbH"]


def _products(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.choice(BRANDS)} {rng.choice(ITEMS)}" if i % 3 else f"Widget {rng.randint(1, 99)}" for i in range(n)]


@pytest.mark.parametrize(("column", "make"), [
    ("address_country", lambda rng, n: [rng.choice(["US", "GB", "FR", "DE"]) for _ in range(n)]),
    ("billing_address_state", lambda rng, n: [rng.choice(["CA", "NY", "TX", "Ohio", "New York"]) for _ in range(n)]),
    ("address_city", lambda rng, n: [rng.choice(["Paris", "New York", "San Jose", "Leeds"]) for _ in range(n)]),
    ("address_type", lambda rng, n: [rng.choice(["home", "work", "billing"]) for _ in range(n)]),
    ("address_verified", lambda rng, n: [rng.choice(["yes", "no"]) for _ in range(n)]),
    ("street_type", lambda rng, n: [rng.choice(["Road", "Street", "Avenue", "Lane"]) for _ in range(n)]),
    ("app_version", _versions), ("build", _versions), ("sku", _skus), ("name", _products),
    ("account_name", lambda rng, n: [rng.choice(COMPANIES) for _ in range(n)]),
])
def test_columns_that_only_look_personal_are_not_flagged(column: str, make: object) -> None:
    values = make(random.Random(0), 300)  # type: ignore[operator]
    assert detect_column(column, values) is None


def test_a_nino_shaped_column_named_as_one_is_flagged() -> None:
    found = detect_column("ni_number", _skus(random.Random(0), 300))
    assert found is not None and found.kind == "national_id"
    found = detect_column("national_insurance", _skus(random.Random(0), 300))
    assert found is not None and found.kind == "national_id"


@pytest.mark.parametrize(("column", "values", "kind"), [
    ("contact_number", [f"{4150000000 + 7919 * i}" for i in range(300)], "phone"),
    ("phone_number", [float(4150000000 + 7919 * i) for i in range(300)], "phone"),  # read as float64
    ("mobile", [f"０７９１１ {123456 + i}" for i in range(300)], "phone"),  # fullwidth digits
])
def test_phones_as_plain_digits_under_a_phone_name_are_dropped(column: str, values: list[object], kind: str) -> None:
    found = detect_column(column, values)
    assert found is not None and (found.kind, found.action) == (kind, "drop")


def test_a_column_with_40_percent_emails_is_flagged() -> None:
    rng = random.Random(1)
    values = [rng.choice(["direct", "organic", "ads"]) for _ in range(180)] + emails(rng, 120)
    rng.shuffle(values)
    found = detect_column("referred_by", values)
    assert found is not None and (found.kind, found.action) == ("email", "drop")


def test_a_column_with_40_percent_phone_shapes_is_not() -> None:
    rng = random.Random(1)
    values = [rng.choice(["direct", "organic", "ads"]) for _ in range(180)] + \
        [f"020 7946 {rng.randint(1000, 9999)}" for _ in range(120)]
    assert detect_column("source", values) is None


def test_a_filtered_series_is_read_by_position() -> None:
    frame = pd.DataFrame({"email": emails(random.Random(2), 300), "keep": [i % 3 == 0 for i in range(300)]})
    found = detect_column("email", frame.loc[frame["keep"], "email"])  # index 0, 3, 6 …: no label 1
    assert found is not None and found.kind == "email"


def test_a_bare_name_column_of_people_is_still_flagged() -> None:
    found = detect_column("name", person_names(random.Random(3), 300))
    assert found is not None and found.kind == "name"
