"""Planted personal data, end to end with the real parts: a table full of e-mails, phone and
card numbers, names, postcodes, ages and customer ids is trained on with ``modelmill train``,
served by ``modelmill serve`` with its prediction log in SQLite, asked valid and invalid
requests and explanations, predicted with ``modelmill predict`` and explained with
``modelmill explain``. Then every file that the run, the bundle, the log and its spool and
the explanation pages hold, every response body, the predictions and the server's output
are read as bytes: none of the planted values may be there."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.monitoring.service import start_server, stop_server

KEY = "planted-test-key-0123456789abcdef"
FIRST = ["Priya", "Ingrid", "Beatriz", "Ximena", "Rohan", "Camila", "Fatima"]
LAST = ["Okonkwo", "Featherstonehaugh", "Quartermaine", "Villanueva", "Abernethy", "Lindqvist", "Trevelyan"]
SEGMENTS = ["retail", "business", "student"]
ROWS = 300


def planted_table(rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first = rng.choice(FIRST, rows)
    last = rng.choice(LAST, rows)
    age = rng.integers(18, 90, rows)
    segment = rng.choice(SEGMENTS, rows)
    happy = rng.random(rows) < 0.5
    churn = (age < 35) ^ (segment == "student") ^ ~happy
    reviews = []
    for i in range(rows):
        words = "great helpful quick" if happy[i] else "slow rude broken"
        if i % 4 == 0:  # planted in the free text: a name and an e-mail
            words += f", ask for {first[i]} {last[i]} at {first[i].lower()}.{last[i].lower()}{i}@example.org"
        reviews.append(words)
    return pd.DataFrame({
        "email": [f"{f.lower()}.{s.lower()}{i}@example.org" for i, (f, s) in enumerate(zip(first, last))],
        "phone": [f"+44 7700 9{i:05d}" for i in range(rows)],
        "name": [f"{f} {s}" for f, s in zip(first, last)],
        "customer_id": [f"CUST-{700_000 + 37 * i}" for i in range(rows)],
        "card": [f"4929 {1000 + i:04d} {2000 + 3 * i:04d} {i:04d}" for i in range(rows)],
        "postcode": [f"{['SW', 'EC', 'NW'][i % 3]}{1 + i % 9}{'ABCDE'[i % 5]} {i % 10}{'XYZ'[i % 3]}Q"
                     for i in range(rows)],
        "age": age,
        "joined": (pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1500, rows), unit="D"))
        .strftime("%Y-%m-%d"),
        "segment": segment,
        "review": reviews,
        "churn": np.where(churn, "yes", "no"),
    })


def planted_config() -> dict[str, Any]:
    return {
        "name": "planted",
        "data": {"source": "planted.csv", "split": {"method": "stratified", "test": 0.25, "seed": 0}},
        "features": [
            {"name": "customer_id", "type": "category"},
            {"name": "card", "type": "category"},
            {"name": "postcode", "type": "category"},
            {"name": "age", "type": "number"},
            {"name": "joined", "type": "date"},
            {"name": "segment", "type": "category"},
            {"name": "review", "type": "text", "tokenizer": {"min_frequency": 1}},
        ],
        "target": {"name": "churn", "type": "binary"},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"epochs": 2, "batch_size": 64, "progress": False},
        "evaluation": {"explain": 0},
        "privacy": {
            "columns": {
                "email": "drop", "phone": "drop", "name": "drop",
                "customer_id": "hash",
                "card": {"action": "mask", "keep_last": 4},
                "age": {"action": "generalise", "width": 10},
                "postcode": {"action": "generalise", "keep": 3},
                "joined": {"action": "generalise", "to": "month"},
            },
            "scrub": ["review"],
        },
    }


def planted_values(table: pd.DataFrame) -> list[str]:
    """Every value planted, as written, and each first and last name of four letters or more."""
    values: set[str] = set()
    for column in ["email", "phone", "name", "customer_id", "card", "postcode"]:
        values.update(str(v) for v in table[column])
    values.update(name for name in FIRST + LAST if len(name) >= 4)
    return sorted(values)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from modelmill.cli import main

    monkeypatch.setattr(sys, "argv", ["modelmill", *args])
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out + captured.err


def request_record(table: pd.DataFrame, i: int) -> dict[str, Any]:
    row = table.iloc[i]
    record = {column: row[column] for column in table.columns if column != "churn"}
    record["age"] = int(record["age"])
    return record


def test_no_planted_value_is_kept_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", KEY)
    table = planted_table()
    table.to_csv(tmp_path / "planted.csv", index=False)
    written = (tmp_path / "planted.csv").read_bytes().lower()
    assert all(value.lower().encode() in written for value in planted_values(table))  # the search finds them
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(planted_config()))
    seen: list[tuple[str, bytes]] = []  # (where, what) of everything the test got back

    code, output = run_main(monkeypatch, capsys, "train", str(tmp_path / "config.yaml"),
                            "--runs", str(tmp_path / "runs"))
    assert code == 0, output
    seen.append(("train output", output.encode()))
    run = (tmp_path / "runs" / "planted" / "latest").resolve()
    bundle = run / "bundle"
    assert (bundle / "manifest.json").is_file()

    db, spool = tmp_path / "log" / "monitor.db", tmp_path / "log" / "spool"
    db.parent.mkdir()
    server = start_server(bundle, "--log", f"sqlite:///{db}", "--log-spool", str(spool),
                          "--log-flush-interval", "0.2", env={"MODELMILL_PII_KEY": KEY})
    try:
        valid = [request_record(table, i) for i in range(8)]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answers = {
                "predict": client.post("/v1/predict", json={"instances": valid}),
                "predict one": client.post("/v1/predict", json={"instances": [valid[0]]}),
                "explain": client.post("/v1/explain", json={"instances": valid[:2]}),
                "wrong type in a policy column": client.post("/v1/predict", json={"instances": [
                    {**valid[1], "age": valid[1]["email"], "customer_id": {"id": valid[1]["customer_id"]}}]}),
                "unparseable date in a policy column": client.post("/v1/predict", json={"instances": [
                    {**valid[2], "joined": valid[2]["name"]}]}),
                "unknown category holding an e-mail": client.post("/v1/predict", json={"instances": [
                    {**valid[3], "segment": valid[3]["email"]}]}),
                "model": client.get("/v1/model"),
                "docs": client.get("/openapi.json"),
            }
        for name, answer in answers.items():
            seen.append((f"response: {name}", answer.content))
        assert answers["predict"].status_code == 200, answers["predict"].text
        assert len(answers["predict"].json()["predictions"]) == len(valid)
        assert answers["explain"].status_code == 200, answers["explain"].text
        assert answers["model"].status_code == 200 and answers["docs"].status_code == 200
        for name in ["wrong type in a policy column", "unparseable date in a policy column",
                     "unknown category holding an e-mail"]:
            assert answers[name].status_code == 422, (name, answers[name].text)
        details = answers["wrong type in a policy column"].json()["error"]["details"]
        assert {d["loc"][-1] for d in details} == {"age", "customer_id"}  # the fields named, their values not
    finally:
        assert stop_server(server) == 0, server.text()
    seen.append(("server output", server.text().encode()))

    code, output = run_main(monkeypatch, capsys, "predict", str(bundle), str(tmp_path / "planted.csv"),
                            "-o", str(tmp_path / "predicted.csv"))
    assert code == 0, output
    seen.append(("predict output", output.encode()))
    assert len(pd.read_csv(tmp_path / "predicted.csv")) == ROWS
    code, output = run_main(monkeypatch, capsys, "explain", str(bundle), str(tmp_path / "planted.csv"),
                            "-o", str(tmp_path / "explained"), "--records", "6", "--repeats", "1",
                            "--importance-rows", "60")
    assert code == 0, output
    seen.append(("explain output", output.encode()))

    # the prediction log holds the records, treated
    with sqlite3.connect(db) as connection:
        stored = [json.loads(row[0]) for row in connection.execute("SELECT inputs FROM modelmill_predictions")]
    assert len(stored) == len(valid) + 1 + 0  # the two predict requests (explain is not logged)
    for record in stored:
        assert not {"email", "phone", "name"} & set(record)
        assert record["customer_id"].startswith("hmac:") and record["card"].startswith("**** **** ****")
        assert record["age"] % 10 == 0 and len(record["postcode"]) == 3 and record["joined"].endswith("-01")

    files = [p for p in [*run.rglob("*"), *db.parent.rglob("*"), *(tmp_path / "explained").rglob("*"),
                         tmp_path / "predicted.csv"] if p.is_file()]
    assert any(p.name == "features.json" for p in files) and any(p.name.startswith("monitor.db") for p in files)
    seen += [(str(p.relative_to(tmp_path)), p.read_bytes()) for p in files]
    found = [(where, value) for value in planted_values(table) for where, data in seen
             if value.lower().encode() in data.lower()]
    assert not found, f"planted values kept: {found[:20]}"
