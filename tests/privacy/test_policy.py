"""The privacy policy: each action's treatment and its idempotence, the config's checks, the
key (missing, wrong at load), the request contract of a policy, and the CLI's exit codes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.api import Pipeline, load
from modelmill.config import parse_config
from modelmill.errors import BundleError, ConfigError, DataError
from modelmill.privacy.keys import key_fingerprint
from modelmill.privacy.policy import PrivacyPolicy
from tests.conftest import base_config, make_frame

KEY = "policy-test-key-0123456789"
OTHER_KEY = "another-key-of-the-tests-987654"
POLICY: dict[str, Any] = {
    "columns": {
        "email": "drop",
        "customer": "hash",
        "card": {"action": "mask", "keep_last": 4},
        "x": {"action": "generalise", "width": 0.5},
        "when": {"action": "generalise", "to": "month"},
        "colour": {"action": "generalise", "keep": 3},
    },
    "scrub": ["review"],
}


def policy_config(**overrides: Any) -> dict[str, Any]:
    config = base_config(training={"epochs": 1, "batch_size": 64, "progress": False, "seed": 0},
                         privacy=json.loads(json.dumps(POLICY)), **overrides)
    config["features"] += [{"name": "customer", "type": "category"}, {"name": "card", "type": "category"}]
    return config


def policy_frame(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    frame = make_frame(rows=rows, seed=seed)
    rng = np.random.default_rng(seed)
    frame["email"] = [f"person{i}@example.com" for i in range(rows)]
    frame["customer"] = rng.integers(10_000, 10_030, rows)
    frame["card"] = [f"4111 1111 1111 {1000 + i % 7}" for i in range(rows)]
    frame["review"] = [f"{text} mail james.whitfield@example.com" if i % 5 == 0 else text
                       for i, text in enumerate(frame["review"])]
    return frame


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", KEY)


@pytest.fixture
def policy(keyed: None) -> PrivacyPolicy:
    return PrivacyPolicy.from_config(parse_config(policy_config()))


# ------------------------------------------------------------------ each action


def test_drop_removes_the_column_from_frames_and_records(policy: PrivacyPolicy) -> None:
    frame = policy_frame(rows=5)
    assert "email" not in policy.frame(frame).columns
    assert "email" not in policy.record({"email": "jane@example.com", "x": 1.0})
    assert "email" in frame.columns  # the given frame is left as it was


def test_hash_is_keyed_short_and_the_same_whichever_way_the_value_came(policy: PrivacyPolicy) -> None:
    hashed = policy.value("customer", 10234)
    assert re.fullmatch(r"hmac:[0-9a-f]{16}", hashed)
    assert policy.value("customer", "10234") == policy.value("customer", 10234.0) == hashed
    assert policy.value("customer", "10235") != hashed
    assert policy.value("customer", None) is None
    other = PrivacyPolicy(parse_config(policy_config()), OTHER_KEY.encode())
    assert other.value("customer", 10234) != hashed  # keyed: another key, another hash


def test_mask_keeps_the_last_characters_and_an_emails_domain(policy: PrivacyPolicy) -> None:
    assert policy.value("card", "4111 1111 1111 1234") == "**** **** **** 1234"
    assert policy.value("card", "jane.doe@example.com") == "****.***@example.com"
    assert policy.value("card", 12345678) == "****5678"


def test_mask_never_shows_more_than_half_of_a_short_value(policy: PrivacyPolicy) -> None:
    # keep_last 4 would leave "1", "12" and "1234" in clear
    assert [policy.value("card", v) for v in ["1", "12", "123", "1234", "123456"]] == \
        ["*", "*2", "**3", "**34", "***456"]


def test_values_are_read_as_the_reader_and_the_features_read_them(policy: PrivacyPolicy) -> None:
    # padded values treat like the stripped ones; missing markers stay missing (never a pseudonym)
    assert policy.value("customer", " 10234 ") == policy.value("customer", "10234")
    assert [policy.value("customer", m) for m in ["", "NA", "null", " NA "]] == [None] * 4
    assert policy.value("colour", " SW1A 1AA") == "SW1" and policy.value("card", " 1234 5678 ") == "**** 5678"
    assert policy.value("x", "NA") is None and policy.value("when", "null") is None
    frame = policy.frame(pd.DataFrame({"customer": [" 7", "7", "NA", None], "colour": [" SW1A", "", "N/A", "EC1"]}))
    assert frame["customer"].iloc[0] == frame["customer"].iloc[1] == policy.value("customer", 7)
    assert frame["customer"].iloc[2:].isna().all() and frame["colour"].tolist() == ["SW1", None, None, "EC1"]


def test_a_hash_shaped_value_is_hashed_too(policy: PrivacyPolicy) -> None:
    # else a client could query as any training pseudonym
    pseudonym = policy.value("customer", 10234)
    assert policy.value("customer", pseudonym) != pseudonym
    assert policy.value("customer", "hmac:0123456789abcdef") != "hmac:0123456789abcdef"


def test_generalise_bands_months_and_prefixes(policy: PrivacyPolicy) -> None:
    assert policy.value("x", 1.74) == 1.5 and policy.value("x", -0.2) == -0.5 and policy.value("x", "3.1") == 3.0
    assert policy.value("when", "2024-03-17") == "2024-03-01"
    assert policy.value("when", "2024-03-17T10:42:00") == "2024-03-01"
    assert policy.value("colour", "SW1A 1AA") == "SW1"
    frame = policy.frame(pd.DataFrame({"x": [0.26, 0.74, np.nan], "when": ["2021-02-28", None, "2020-12-31"]}))
    assert frame["x"].tolist()[:2] == [0.0, 0.5] and np.isnan(frame["x"].iloc[2])
    assert frame["when"].tolist()[::2] == ["2021-02-01", "2020-12-01"] and pd.isna(frame["when"].iloc[1])


def test_generalise_to_year_and_day_and_a_dates_own_format(keyed: None) -> None:
    config = policy_config()
    config["privacy"]["columns"]["when"] = {"action": "generalise", "to": "year"}
    assert PrivacyPolicy.from_config(parse_config(config)).value("when", "2024-03-17") == "2024-01-01"
    config["features"][3]["format"] = "%d/%m/%Y"
    config["privacy"]["columns"]["when"] = {"action": "generalise", "to": "month"}
    assert PrivacyPolicy.from_config(parse_config(config)).value("when", "17/03/2024") == "01/03/2024"


def test_an_unreadable_value_is_an_error_that_does_not_show_it(policy: PrivacyPolicy) -> None:
    with pytest.raises(DataError) as raised:
        policy.frame(pd.DataFrame({"when": ["2024-01-02", "jane.doe@example.com"]}))
    assert "jane" not in str(raised.value) and "'when'" in str(raised.value) and "rows 1" in str(raised.value)
    with pytest.raises(DataError, match="not shown") as single:
        policy.value("x", "Jane Doe")
    assert "Jane" not in str(single.value)


def test_scrub_replaces_entities_in_free_text(policy: PrivacyPolicy) -> None:
    scrubbed = policy.value("review", "great, ask James Whitfield at james.whitfield@example.com")
    assert "Whitfield" not in scrubbed and "@" not in scrubbed and scrubbed.startswith("great, ask ")


def test_a_frame_is_treated_once_and_marked(policy: PrivacyPolicy) -> None:
    frame = policy_frame(rows=60)
    once = policy.frame(frame)
    assert policy.is_treated(once) and not policy.is_treated(frame)
    assert policy.once(once) is once  # marked: never treated again
    assert policy.is_treated(once.iloc[:10].reset_index(drop=True))  # slices keep the mark
    twice = policy.frame(once)  # a door treats all it is given: a hash of a hash
    assert (twice["customer"] != once["customer"]).all()


@pytest.mark.parametrize(("column", "value"), [
    ("card", "jane.doe@example.com"), ("card", "4111111111111111"), ("card", "1"), ("card", "12"), ("card", " 1234"),
    ("x", 37.3), ("x", 2307702229.6), ("x", -1e15 - 0.5), ("x", " 3.1"), ("when", "2024-03-17"),
    ("when", "2024-03-17T10:42:00"), ("colour", "postcode"), ("colour", " SW1A 1AA"), ("colour", "NA"),
    ("review", "call Mary Johnson on +44 20 7946 0958"), ("review", "null")])
def test_every_treatment_but_hash_is_idempotent(policy: PrivacyPolicy, column: str, value: Any) -> None:
    treated = policy.value(column, value)
    assert policy.value(column, treated) == treated
    assert policy.frame(pd.DataFrame({column: [value]}))[column].iloc[0] == treated or treated is None


def test_bands_of_large_values_are_idempotent_and_the_same_on_both_paths(keyed: None) -> None:
    config = policy_config()
    config["privacy"]["columns"]["x"] = {"action": "generalise", "width": 0.1}
    policy = PrivacyPolicy.from_config(parse_config(config))
    assert policy.value("x", 2307702229.6) == 2307702229.6 == policy.value("x", policy.value("x", 2307702229.6))
    assert policy.value("x", 0.3) == 0.3 and policy.value("x", 0.29) == 0.2 and policy.value("x", -0.05) == -0.1
    values = [2307702229.6, 0.3, 12.34, -7.77, np.inf, -np.inf, np.nan]
    frame = policy.frame(pd.DataFrame({"x": values}))["x"]
    records = [policy.value("x", v) for v in values]
    assert frame.tolist()[:4] == records[:4] == [2307702229.6, 0.3, 12.3, -7.8]
    assert frame.iloc[4:].isna().all() and records[4:6] == [None, None]  # infinity: missing on both paths


def test_a_number_too_large_for_its_bands_is_a_data_error_naming_the_column(policy: PrivacyPolicy) -> None:
    with pytest.raises(DataError, match="column 'x'.*not shown"):
        policy.value("x", 1e308)  # 1e308 / 0.5 overflows
    with pytest.raises(DataError, match="column 'x' rows 1"):
        policy.frame(pd.DataFrame({"x": [1.0, 1e308]}))


def test_dates_of_a_format_are_read_once_per_column_and_alike_per_value(keyed: None) -> None:
    config = policy_config()
    config["features"][3]["format"] = "%d/%m/%Y"
    policy = PrivacyPolicy.from_config(parse_config(config))
    values = ["17/03/2024", " 01/12/2023", "NA", None, "31/01/2024"]
    frame = policy.frame(pd.DataFrame({"when": values}))["when"]
    assert frame.tolist() == ["01/03/2024", "01/12/2023", None, None, "01/01/2024"]
    assert [policy.value("when", v) for v in values] == frame.tolist()
    assert policy.value("when", "01/03/2024") == "01/03/2024"  # idempotent in its own format
    with pytest.raises(DataError, match="rows 1"):
        policy.frame(pd.DataFrame({"when": ["17/03/2024", "2024-03-17"]}))  # not the feature's format


# ------------------------------------------------------------------ config


def config_error(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(config)
    return str(raised.value)


def test_an_unknown_action_names_the_path_and_lists_the_actions() -> None:
    config = policy_config()
    config["privacy"]["columns"]["email"] = "encrypt"
    message = config_error(config)
    assert "privacy.columns.email" in message and "'encrypt'" in message
    assert "valid: drop, generalise, hash, mask" in message
    config["privacy"]["columns"]["email"] = {"action": "generalize", "to": "month"}
    assert "did you mean 'generalise'" in config_error(config)


def test_generalise_needs_exactly_one_option() -> None:
    config = policy_config()
    config["privacy"]["columns"]["x"] = {"action": "generalise"}
    message = config_error(config)
    assert "privacy.columns.x" in message and "exactly one of width, to, keep (got none)" in message
    config["privacy"]["columns"]["x"] = {"action": "generalise", "width": 10, "keep": 2}
    assert "(got width and keep)" in config_error(config)
    config["privacy"]["columns"]["x"] = {"action": "mask", "keep_lst": 2}
    assert "unknown key 'keep_lst' (did you mean 'keep_last'?)" in config_error(config)


def test_a_dropped_feature_and_a_treated_target_are_refused() -> None:
    config = policy_config()
    config["privacy"]["columns"]["colour"] = "drop"
    assert "privacy.columns.colour: a dropped column cannot be a feature" in config_error(config)
    config = policy_config()
    config["privacy"]["columns"]["label"] = "hash"
    assert "privacy.columns.label: 'label' is the target" in config_error(config)
    config = policy_config()
    config["privacy"]["columns"]["nowhere"] = "mask"
    assert "privacy.columns.nowhere: mask keeps a column for the model" in config_error(config)


def test_a_treatment_the_feature_cannot_read_and_scrub_of_no_text_are_refused() -> None:
    config = policy_config()
    config["privacy"]["columns"]["x"] = "hash"
    message = config_error(config)
    assert "privacy.columns.x: hash gives text values, which a feature of type number cannot read" in message
    config = policy_config()
    config["privacy"]["scrub"] = ["flag"]
    assert "privacy.scrub[0]: 'flag' is not a text feature" in config_error(config)
    config["privacy"]["scrub"] = ["colour"]
    assert "privacy: scrub: colour also under columns; a column takes one treatment" in config_error(config)


def test_hash_without_a_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(policy_config())
    monkeypatch.delenv("MODELMILL_PII_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"MODELMILL_PII_KEY is not set\. Fix: set MODELMILL_PII_KEY"):
        PrivacyPolicy.from_config(config)
    monkeypatch.setenv("MODELMILL_PII_KEY", "short")
    with pytest.raises(ConfigError, match="is shorter than 16 bytes"):
        Pipeline(config).fit(policy_frame())
    no_hash = policy_config()
    del no_hash["privacy"]["columns"]["customer"]
    assert PrivacyPolicy.from_config(parse_config(no_hash)).fingerprint is None  # no key needed


# ------------------------------------------------------------ fitted and loaded


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELMILL_PII_KEY", KEY)
        pipeline = Pipeline(policy_config()).fit(policy_frame())
        return pipeline.save(tmp_path_factory.mktemp("policy") / "bundle")


def test_the_bundle_keeps_the_policy_and_the_keys_fingerprint_never_the_key(bundle: Path, keyed: None) -> None:
    state = json.loads((bundle / "features.json").read_text())["privacy"]
    assert state["key_fingerprint"] == key_fingerprint(KEY.encode())
    assert state["columns"]["email"] == {"action": "drop"} and state["scrub"] == ["review"]
    vocabulary = state_of(bundle, "customer")["vocabulary"]
    assert all(re.fullmatch(r"hmac:[0-9a-f]{16}", str(v)) for v in vocabulary if v != "<unknown>")
    card = json.loads((bundle / "model_card.json").read_text())["privacy"]["measures"]
    assert any("customer: hashed" in m for m in card) and any("email: dropped" in m for m in card)
    assert any(key_fingerprint(KEY.encode()) in m for m in card)
    for path in bundle.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def state_of(bundle: Path, column: str) -> dict[str, Any]:
    return dict(json.loads((bundle / "features.json").read_text())["features"][column])


def test_predictions_are_the_same_for_raw_and_treated_values(bundle: Path, keyed: None) -> None:
    pipeline = load(bundle)
    raw = policy_frame(rows=30, seed=3)
    treated = pipeline.parts.privacy.frame(raw)
    pd.testing.assert_frame_equal(pipeline.predict(raw), pipeline.predict(treated))
    records = raw.drop(columns=["label", "kind", "amount"]).head(3).to_dict("records")
    fast = pipeline.parts.predict_records(records)
    assert np.array_equal(fast.codes, pipeline.parts.predict(treated.head(3)).codes)


def test_loading_with_another_key_names_both_fingerprints(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", OTHER_KEY)
    with pytest.raises(BundleError) as raised:
        load(bundle)
    message = str(raised.value)
    assert key_fingerprint(KEY.encode()) in message and key_fingerprint(OTHER_KEY.encode()) in message
    assert "Fix: set MODELMILL_PII_KEY" in message and OTHER_KEY not in message
    monkeypatch.delenv("MODELMILL_PII_KEY")
    with pytest.raises(ConfigError, match="MODELMILL_PII_KEY is not set"):
        load(bundle)


def test_the_request_contract_takes_raw_values_and_treats_them_on_arrival(bundle: Path, keyed: None) -> None:
    from pydantic import ValidationError

    from modelmill.bundle import read_bundle
    from modelmill.config.serving import ServingConfig
    from modelmill.serving.models import ServedModel

    model = ServedModel.load(read_bundle(bundle), "1", ServingConfig(unknown_categories="reject"))
    record = {"x": 1.74, "colour": "SW1A 1AA", "flag": "yes", "when": "2024-03-17", "review": "call James Whitfield",
              "customer": 10234, "card": "4111 1111 1111 1234", "email": "jane.doe@example.com"}
    [got] = model.contract.adapter.validate_python({"instances": [record]})["instances"]
    assert "email" not in got and got["customer"].startswith("hmac:") and got["card"] == "**** **** **** 1234"
    assert got["x"] == 1.5 and got["when"] == "2024-03-01" and got["colour"] == "SW1"
    assert "Whitfield" not in got["review"]
    schema = json.dumps(model.contract.json_schema)
    assert "hmac:" not in schema and "****" not in schema and "email" in schema
    example = model.contract.example["instances"][0]
    assert example["customer"] == "an example value" and "email" not in example
    assert len(model.predict([record])) == 1
    with pytest.raises(ValidationError) as raised:
        model.contract.adapter.validate_python({"instances": [{**record, "when": "jane.doe@example.com"}]})
    assert "jane" not in json.dumps(raised.value.errors(include_input=False, include_url=False), default=str)
    with pytest.raises(ValidationError, match="x"):  # 1e308 in bands of 0.5: a 422 naming the field
        model.contract.adapter.validate_python({"instances": [{**record, "x": 1e308}]})


def test_a_date_of_its_own_format_is_served(tmp_path: Path, keyed: None) -> None:
    from modelmill.bundle import read_bundle
    from modelmill.config.serving import ServingConfig
    from modelmill.serving.models import ServedModel

    config = policy_config()
    config["features"][3]["format"] = "%d/%m/%Y"
    frame = policy_frame(rows=120)
    frame["when"] = pd.to_datetime(frame["when"]).dt.strftime("%d/%m/%Y")
    path = Pipeline(config).fit(frame).save(tmp_path / "bundle")
    model = ServedModel.load(read_bundle(path), "1", ServingConfig())
    assert model.contract.example["instances"][0]["when"] == "31/01/2024"
    model.warm_up(4)  # the example is read in the feature's format
    record = {**model.contract.example["instances"][0], "when": "17/03/2024"}
    [got] = model.contract.adapter.validate_python({"instances": [record]})["instances"]
    assert got["when"] == "01/03/2024"


# ------------------------------------------------------------------ the CLI


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from modelmill.cli import main

    monkeypatch.setattr(sys, "argv", ["modelmill", *args])
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), " ".join((captured.out + captured.err).split())


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    import yaml

    policy_frame().to_csv(folder / "data.csv", index=False)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_exits_2_on_an_unknown_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = policy_config()
    config["privacy"]["columns"]["email"] = "encrypt"
    code, output = run_main(monkeypatch, capsys, "train", str(write_config(tmp_path, config)),
                            "--runs", str(tmp_path / "runs"))
    assert code == 2 and "privacy.columns.email" in output and "valid: drop, generalise, hash, mask" in output
    assert "Traceback" not in output


def test_cli_exits_2_on_hash_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MODELMILL_PII_KEY", raising=False)
    code, output = run_main(monkeypatch, capsys, "train", str(write_config(tmp_path, policy_config())),
                            "--runs", str(tmp_path / "runs"))
    assert code == 2 and "MODELMILL_PII_KEY is not set" in output and "Fix:" in output
    assert "Traceback" not in output
    assert not any(p.is_dir() for p in (tmp_path / "runs" / "tiny").glob("*")), "a failed run leaves nothing"


def test_the_prediction_log_stores_treated_values_and_finds_labels_by_the_treated_key(
        bundle: Path, keyed: None) -> None:
    from modelmill.config.serving import LogConfig
    from modelmill.monitoring.records import RecordEncoder

    predictor = load(bundle).parts
    settings = LogConfig(url="sqlite:///x.db", key_column="customer")
    encoder = RecordEncoder(predictor.features, settings, None, predictor.privacy)
    record = {"x": 1.74, "colour": "SW1A 1AA", "flag": "yes", "when": "2024-03-17", "review": "ask Priya Okonkwo",
              "customer": "CUST-1", "card": "4111 1111 1111 1234", "email": "jane.doe@example.com"}
    treated = predictor.privacy.record(record)  # as the request contract hands it on
    [line] = encoder.lines("r1", [treated], [{"label": "yes"}], "tiny", "1", 0.0, 1.0, [0])
    for planted in ["jane.doe", "CUST-1", "4111", "SW1A", "Okonkwo", "2024-03-17"]:
        assert planted not in line
    hashed = predictor.privacy.value("customer", "CUST-1")
    assert f"\t{json.dumps(hashed)}\t" in line  # stored once treated, never treated again
    assert encoder.lookup_key("CUST-1") == hashed == encoder.lookup_key(" CUST-1 ")


def test_training_treats_each_value_exactly_once(bundle: Path, keyed: None) -> None:
    policy = load(bundle).parts.privacy
    vocabulary = set(state_of(bundle, "customer")["vocabulary"])
    raw = set(policy_frame()["customer"])
    assert {policy.value("customer", v) for v in raw} & vocabulary  # the hashes of the raw values, not of hashes
    assert not {policy.value("customer", policy.value("customer", v)) for v in raw} & vocabulary


def test_the_public_schema_lists_no_treated_values(bundle: Path, keyed: None) -> None:
    from modelmill.bundle import read_bundle
    from modelmill.config.serving import ServingConfig
    from modelmill.serving.models import ServedModel

    schema = json.loads((bundle / "schema.json").read_text())
    inputs = {entry["name"]: entry for entry in schema["inputs"]}
    assert "values" not in inputs["customer"] and "values" not in inputs["card"] and "values" in inputs["flag"]
    described = json.dumps(ServedModel.load(read_bundle(bundle), "1", ServingConfig()).describe())
    assert "hmac:" not in described and "****" not in described
    assert schema["privacy"]["key_fingerprint"] == key_fingerprint(KEY.encode())


def test_a_raw_frame_is_treated_once_by_predict_explain_and_records(bundle: Path, keyed: None) -> None:
    pipeline = load(bundle)
    raw = policy_frame(rows=6, seed=5)
    read = pipeline.read(raw)
    assert pipeline.parts.privacy.is_treated(read)
    pd.testing.assert_frame_equal(pipeline.predict(raw), pipeline.predict(read))  # read's mark: not again
    records = raw.drop(columns=["label"]).to_dict("records")
    treated = pipeline.parts.privacy.records(records)
    assert np.array_equal(pipeline.parts.predict_records(records).codes,
                          pipeline.parts.predict_records(treated, treated=True).codes)
    assert np.allclose(pipeline.explain(raw.head(2)).attributions, pipeline.explain(read.head(2)).attributions)


# ------------------------------------------------------------------ the key, read-only loads


def test_a_bundle_without_hash_loads_with_the_key_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = policy_config()
    del config["privacy"]["columns"]["customer"]
    monkeypatch.delenv("MODELMILL_PII_KEY", raising=False)
    path = Pipeline(config).fit(policy_frame(rows=120)).save(tmp_path / "bundle")
    assert len(load(path).predict(policy_frame(rows=5, seed=2))) == 5


def test_a_read_only_load_needs_no_key_and_refuses_to_hash(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.bundle import read_bundle
    from modelmill.monitoring import identity_of
    from modelmill.monitoring.watch import Reference
    from modelmill.predictor import Predictor
    from modelmill.privacy.policy import MissingKeyError

    monkeypatch.setenv("MODELMILL_PII_KEY", KEY)
    keyed_identity = identity_of("tiny", load(bundle).parts.input_schema())
    for key in (None, OTHER_KEY):  # unset, or another one: no matter to a reader of treated values
        if key is None:
            monkeypatch.delenv("MODELMILL_PII_KEY")
        else:
            monkeypatch.setenv("MODELMILL_PII_KEY", key)
        predictor = Predictor.from_bundle(read_bundle(bundle), hash_key=False)
        assert identity_of("tiny", predictor.input_schema()) == keyed_identity  # the bundle's fingerprint
        with pytest.raises(MissingKeyError, match="loaded without its hash key"):
            predictor.privacy.value("customer", "CUST-1")
        assert Reference.load(bundle).predictor.privacy.keyless


def test_serving_with_a_missing_or_wrong_key_fails_instead_of_serving_an_older_version(
        bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.config.serving import ServingConfig
    from modelmill.privacy.policy import MissingKeyError, WrongKeyError
    from modelmill.serving.models import load_version
    from modelmill.serving.versions import ModelRoot

    root = ModelRoot(bundle)
    monkeypatch.delenv("MODELMILL_PII_KEY", raising=False)
    with pytest.raises(MissingKeyError):  # raised as it is: not a 409 "version broken"
        load_version(root, root.versions()[-1], ServingConfig())
    monkeypatch.setenv("MODELMILL_PII_KEY", OTHER_KEY)
    with pytest.raises(WrongKeyError):
        load_version(root, root.versions()[-1], ServingConfig())


# ------------------------------------------------------------------ the policy is part of the model


def test_another_policy_is_another_model_to_the_log_and_to_retraining(bundle: Path, keyed: None) -> None:
    from modelmill.bundle import read_bundle
    from modelmill.monitoring import identity_of
    from modelmill.retraining.retrain import check_config

    champion = read_bundle(bundle)
    ours = identity_of("tiny", champion.input_schema())
    assert ours.differences(identity_of("tiny", load(bundle).parts.input_schema())) == []
    check_config(parse_config(policy_config()), champion, "1")  # the same policy: accepted
    config = policy_config()
    config["privacy"]["columns"]["card"] = {"action": "mask", "keep_last": 2}
    with pytest.raises(ConfigError, match=r"privacy policy of 'card': mask \(keep_last 4\) in the store, "
                                          r"mask \(keep_last 2\) in the config"):
        check_config(parse_config(config), champion, "1")
    schema = champion.input_schema()
    schema["privacy"] = {**schema["privacy"], "key_fingerprint": key_fingerprint(OTHER_KEY.encode())}
    assert any("hash key fingerprint" in d for d in ours.differences(identity_of("tiny", schema)))


def test_a_split_or_log_key_on_a_dropped_column_is_refused() -> None:
    config = policy_config()
    config["data"]["split"] = {"method": "group", "column": "email", "test": 0.2}
    message = config_error(config)
    assert "privacy.columns.email: 'email' is dropped right after reading, and data.split.column" in message
    assert "Fix: hash it instead" in message
    config = policy_config()
    config["serving"] = {"log": {"url": "sqlite:///x.db", "key_column": "email"}}
    assert "serving.log.key_column (the column labels name records by) needs it" in config_error(config)


def test_cli_log_labels_finds_records_by_the_treated_key(bundle: Path, tmp_path: Path, keyed: None,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from modelmill.config.serving import LogConfig
    from modelmill.monitoring import open_prediction_log

    predictor = load(bundle).parts
    url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = LogConfig(url=url, key_column="customer", flush_interval_s=0.05)
    log = open_prediction_log(settings, "tiny", predictor.features, predictor.input_schema(), lambda o, n: None,
                              policy=predictor.privacy)
    records = predictor.privacy.records([{"customer": "CUST-1", "x": 1.0}, {"customer": "CUST-2", "x": 2.0}])
    log.submit("r1", records, [{"label": "yes"}, {"label": "no"}], "tiny", "1", 1.0)
    log.close(5.0)
    pd.DataFrame({"customer": ["CUST-1", " CUST-2", "CUST-3"], "label": ["good", "bad", "good"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    code, output = run_main(monkeypatch, capsys, "log", "labels", str(tmp_path / "labels.csv"), "--log", url,
                            "--key", "customer")
    assert code == 0 and "2 labels stored, 1 unknown" in output, output
    monkeypatch.setenv("MODELMILL_PII_KEY", OTHER_KEY)
    code, output = run_main(monkeypatch, capsys, "log", "labels", str(tmp_path / "labels.csv"), "--log", url,
                            "--key", "customer")
    assert code != 0 and "holds another key than the model's" in output and "Traceback" not in output
