"""``modelmill init`` on data with personal columns: a ``privacy:`` section with an action per
column, dropped columns out of the features, free text scrubbed, and no personal value
anywhere in what init writes (the config on stdout, the warnings on stderr)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelmill.config import parse_config
from modelmill.data.infer_config import infer_config, infer_config_with_warnings
from tests.privacy.test_detectors import GIVEN, SURNAMES, emails, person_names, planted

ROWS = 400
STREETS = ["Baker Street", "Elm Rd", "Pennsylvania Avenue NW", "Station Road", "Oak Lane", "Park Drive"]
DROPPED = ["email", "phone", "card", "ssn", "iban", "ip", "full_name", "address",
           "credit_card_number", "phone_number", "social_security_number"]
DIGITS_ONLY = ["credit_card_number", "phone_number", "social_security_number"]  # read back as float64


def customers(seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """A table with a column of each kind of personal data and ordinary ones, and every
    personal value planted in it (those of the free-text column included)."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    values = planted(ROWS, seed=seed)
    postcodes = [f"{rng.choice(['SW', 'EC', 'M', 'B', 'LS'])}{rng.randint(1, 19)} {rng.randint(1, 9)}"
                 f"{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}" for _ in range(60)]
    births = [f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(ROWS)]
    births[:3] = ["1985-02-31", "1990-13-01", "1977-00-12"]  # not dates: a warning that must not show them
    in_text = emails(rng, 20) + person_names(rng, 20)
    words = ["good", "bad", "service", "price", "slow", "fast", "friendly", "support", "would", "again"]
    reviews = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(ROWS)]
    for i, planted_value in enumerate(in_text):
        reviews[i * 10] += f", contact {planted_value} please"
    frame = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(ROWS)],
        "user_id": [f"U{rng.randint(1, 50):04d}" for _ in range(ROWS)],
        "email": values["email"], "phone": values["phone"], "card": values["card"],
        "ssn": [v for v in values["national_id"]][:ROWS], "iban": values["iban"], "ip": values["ip"],
        "full_name": person_names(rng, ROWS),
        "address": [f"{rng.randint(1, 999)} {rng.choice(STREETS)}" for _ in range(ROWS)],
        "postcode": [rng.choice(postcodes) for _ in range(ROWS)],
        "birth_date": births,
        "age": np_rng.integers(18, 90, ROWS),
        "income": np_rng.lognormal(10, 0.5, ROWS).round(2),
        "plan": np_rng.choice(["basic", "plus", "premium"], ROWS),
        "tenure_months": np_rng.integers(1, 120, ROWS),
        "review": reviews,
        "churned": np_rng.choice(["yes", "no"], ROWS),
        # identifiers stored as digits, with empty cells: a CSV reader makes them float64
        "credit_card_number": [int(re.sub(r"\D", "", card)) for card in values["card"]],
        "phone_number": [int(f"{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(2, 9)}"
                             f"{rng.randint(0, 999999):06d}") for _ in range(ROWS)],
        "social_security_number": [int(f"{rng.randint(1, 665):03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}")
                                   for _ in range(ROWS)],
    })
    for column in DIGITS_ONLY:
        frame[column] = frame[column].astype("float64").where(np_rng.random(ROWS) > 0.1)
    personal = [str(v) for column in DROPPED + ["postcode"] if column not in DIGITS_ONLY for v in frame[column]] \
        + [str(int(v)) for column in DIGITS_ONLY for v in frame[column].dropna()] + births + in_text
    return frame, personal


@pytest.fixture(scope="module")
def init_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    folder = tmp_path_factory.mktemp("init_privacy")
    frame, personal = customers()
    frame.to_csv(folder / "customers.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "init", "customers.csv", "--target", "churned"],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done, personal


def test_init_flags_every_personal_column_with_its_action(init_run: Any) -> None:
    done, _ = init_run
    privacy = yaml.safe_load(done.stdout)["privacy"]
    assert set(privacy) == {"columns", "scrub"}
    assert privacy["columns"] == {
        **{column: "drop" for column in DROPPED},
        "user_id": "hash",
        "postcode": {"action": "generalise", "keep": 3},
        "birth_date": {"action": "generalise", "to": "month"},
    }
    assert privacy["scrub"] == ["review"]
    # an age alone identifies nobody: suggested as a commented line, not applied
    assert re.search(r"^    # age: \{action: generalise, width: 10\} +# .*uncomment", done.stdout, re.M)


def test_dropped_columns_are_no_features_and_kept_ones_are_marked_pii(init_run: Any) -> None:
    done, _ = init_run
    raw = yaml.safe_load(done.stdout)
    features = {f["name"]: f for f in raw["features"]}
    assert not set(features) & set(DROPPED) and "customer_id" not in features  # an identifier stays out
    assert re.search(r"^  # - \{name: customer_id, type: category\} +# .*looks like an identifier$", done.stdout, re.M)
    assert {name for name, f in features.items() if f.get("pii")} == {"user_id", "postcode", "birth_date", "review"}
    assert (features["user_id"]["type"], features["birth_date"]["type"], features["review"]["type"]) == \
        ("category", "date", "text")
    for column in DROPPED:
        assert f"  # - {{name: {column}, type: " in done.stdout  # left out, with the reason
    config = parse_config(raw)  # the policy's own checks: no dropped feature, treated types fit
    assert sorted(config.privacy.columns) == sorted([*DROPPED, "user_id", "postcode", "birth_date"])


def test_ordinary_columns_are_not_flagged(init_run: Any) -> None:
    done, _ = init_run
    raw = yaml.safe_load(done.stdout)
    ordinary = {"income", "plan", "tenure_months", "churned", "customer_id"}
    assert not ordinary & set(raw["privacy"]["columns"])
    assert not any(f.get("pii") for f in raw["features"] if f["name"] in ordinary)


def test_no_personal_value_appears_in_what_init_writes(init_run: Any) -> None:
    done, personal = init_run
    assert len(personal) > 4000
    written = done.stdout + done.stderr
    shown = sorted({value for value in personal if value in written})
    assert shown == []
    assert "birth_date" in done.stderr  # the warning about the bad dates is there, without them


# ------------------------------------------------------------------- in process


def test_the_section_comments_say_why() -> None:
    frame, _ = customers(seed=1)
    text = infer_config(frame, source="customers.csv", target="churned")
    assert "    email: drop" in text and "# e-mail addresses (in 100% of sampled values and by the column's name)" in text
    assert "a direct identifier: dropped, so never a feature" in text
    assert "    postcode: {action: generalise, keep: 3}" in text and "Sweeney 2000" in text
    assert "    ip: drop" in text and "CJEU C-582/14" in text
    assert "  scrub:" in text and "    - review" in text


def test_numeric_identifiers_with_gaps_are_dropped_and_never_shown() -> None:
    frame, _ = customers(seed=2)
    frame = frame[[*DIGITS_ONLY, "income", "churned"]]
    text = infer_config(frame, source="p.csv", target="churned")
    assert yaml.safe_load(text)["privacy"]["columns"] == {column: "drop" for column in DIGITS_ONLY}
    shown = [str(int(v)) for column in DIGITS_ONLY for v in frame[column].dropna() if str(int(v)) in text]
    assert shown == [] and ".0" not in text.split("privacy:")[0].split("income")[0]


def test_a_column_named_as_personal_shows_no_range_even_when_not_flagged() -> None:
    frame = pd.DataFrame({"phone": [100 + i for i in range(200)], "x": [i % 7 for i in range(200)],
                          "label": ["a", "b"] * 100})
    text = infer_config(frame, source="p.csv", target="label")
    assert "privacy" not in yaml.safe_load(text)  # 3-digit numbers are no phone numbers
    assert "100" not in text and "299" not in text and "not shown: personal data" in text


def test_no_section_without_personal_data() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=80), "colour": rng.choice(["red", "blue", "green"], 80),
                          "label": rng.choice(["a", "b"], 80)})
    text = infer_config(frame, source="p.csv", target="label")
    assert "privacy" not in text and "pii" not in text


def test_a_constant_or_category_personal_column_shows_none_of_its_values() -> None:
    rng = random.Random(3)
    names = [f"{rng.choice(GIVEN)} {rng.choice(SURNAMES)}" for _ in range(25)]
    frame = pd.DataFrame({
        "contact": ["only.one@example.com"] * 100,
        "customer_name": [rng.choice(names) for _ in range(100)],
        "x": np.arange(100) % 7, "label": ["a", "b"] * 50,
    })
    result = infer_config_with_warnings(frame, source="p.csv", target="label")
    assert "only.one@example.com" not in result.text and not any(n in result.text for n in names)
    assert yaml.safe_load(result.text)["privacy"]["columns"] == {"contact": "drop", "customer_name": "drop"}


def test_a_kept_person_id_of_numbers_becomes_a_hashed_category() -> None:
    frame = pd.DataFrame({"customer_id": [i % 30 for i in range(200)], "x": [i % 7 for i in range(200)],
                          "label": ["a", "b"] * 100})
    raw = yaml.safe_load(infer_config(frame, source="p.csv", target="label"))
    assert raw["privacy"]["columns"] == {"customer_id": "hash"}
    assert raw["features"][0] == {"name": "customer_id", "type": "category", "pii": True}  # hmac: text, no number
    parse_config(raw)


def test_an_age_alone_leaves_a_commented_suggestion_and_the_column_as_it_is() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 300), "income": rng.normal(3000, 500, 300).round(2),
                          "churned": rng.choice(["yes", "no"], 300)})
    text = infer_config(frame, source="people.csv", target="churned")
    assert "# privacy:\n#   columns:\n#     age: {action: generalise, width: 10}" in text
    raw = yaml.safe_load(text)
    assert "privacy" not in raw and not any(f.get("pii") for f in raw["features"])
    uncommented = text.replace("# privacy:", "privacy:").replace("#   columns:", "  columns:") \
        .replace("#     age:", "    age:")
    config = parse_config(yaml.safe_load(uncommented))  # deleting the "# " gives a valid section
    assert list(config.privacy.columns) == ["age"]
