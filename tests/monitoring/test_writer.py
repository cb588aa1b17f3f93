"""The writer of one process: sampling by hash, personal data never in clear, the spool
(whole segments, a bound, segments of an ended process shipped once), and the identity
served = logged + sampled_out + dropped + pending."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from modelmill.bundle import read_bundle
from modelmill.config.serving import LogConfig
from modelmill.errors import ServingError
from modelmill.monitoring import identity_of, open_prediction_log
from modelmill.monitoring.records import RecordEncoder, hash_personal, parse_line, pii_key, sampled_in
from modelmill.monitoring.spool import Spool
from modelmill.monitoring.store import PREDICTION_COLUMNS
from modelmill.monitoring.writer import PredictionLog
from modelmill.predictor import Predictor
from tests.monitoring.conftest import PII_KEY

RECORD = {"x": 0.5, "colour": "red", "flag": "yes", "when": "2021-03-04", "review": "jane.doe@example.com"}
OUTPUT = {"label_predicted": "good", "label_probability_bad": 0.2, "label_probability_good": 0.8}


@pytest.fixture
def predictor(pii_models: Path) -> Any:
    return Predictor.from_bundle(read_bundle(pii_models / "1"))


def start(predictor: Any, tmp_path: Path, **changes: Any) -> PredictionLog:
    settings = LogConfig(url=f"sqlite:///{tmp_path / 'monitor.db'}", flush_interval_s=0.05, **changes)
    return open_prediction_log(settings, "tiny", predictor.features, predictor.input_schema(), lambda o, n: None)


def wait_settled(log: PredictionLog, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while log.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.pending == 0, log.totals


def test_sampling_is_a_hash_of_the_key_with_the_asked_share() -> None:
    kept = sum(sampled_in(f"{i:08x}", 0, 0.1) for i in range(100_000))
    assert abs(kept / 100_000 - 0.1) < 0.005
    assert sampled_in("abc", 3, 0.5) == sampled_in("abc", 3, 0.5)
    assert sampled_in("abc", 0, 1.0) and not sampled_in("abc", 0, 0.0)


def test_every_record_is_counted_once_and_personal_data_is_hashed(predictor: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    log = start(predictor, tmp_path, sample=0.5)
    for i in range(200):
        log.submit(f"req{i}", [RECORD, RECORD], [OUTPUT, OUTPUT], "tiny", "1", 2.0)
    wait_settled(log)
    totals = log.totals
    assert totals["served"] == 400 == totals["logged"] + totals["sampled_out"] + totals["dropped"]
    assert totals["dropped"] == 0 and 150 < totals["logged"] < 250
    expected = sum(sampled_in(f"req{i}", r, 0.5) for i in range(200) for r in range(2))
    assert log.store.count() == totals["logged"] == expected
    log.close(5)
    data = (tmp_path / "monitor.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("monitor.db*")
                                                               if p.is_file())
    assert b"jane.doe" not in data
    assert hash_personal(PII_KEY.encode(), "jane.doe@example.com").encode() in data


def test_pii_needs_a_key_unless_dropped(predictor: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMILL_PII_KEY", raising=False)
    with pytest.raises(ServingError, match="MODELMILL_PII_KEY is not set.*serving.log.pii: drop"):
        start(predictor, tmp_path)
    log = start(predictor, tmp_path, pii="drop")
    log.submit("r", [RECORD], [OUTPUT], "tiny", "1", 1.0)
    wait_settled(log)
    stored = [r for chunk in log.store.read() for r in chunk][0]
    assert "review" not in stored["inputs"] and '"colour":"red"' in stored["inputs"]
    log.close(5)
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    first = start(predictor, tmp_path / "other")
    first.close(1)
    monkeypatch.setenv("MODELMILL_PII_KEY", "another-key-of-sixteen-or-more")
    with pytest.raises(ServingError, match="PII key does not match"):
        start(predictor, tmp_path / "other")


@pytest.mark.parametrize(("mode", "expected"), [("hash", "sha256:"), ("bytes", "iVBOR"), ("none", None)])
def test_images_are_stored_as_configured(mode: str, expected: str | None) -> None:
    class ImageLike:
        name = "image"
        modality = "image"

        class config:  # noqa: N801
            pii = False

    encoder = RecordEncoder([ImageLike()], LogConfig(url="sqlite:///x.db", images=mode), None)
    picture = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(64)).decode()
    line = encoder.lines("r", [{"image": picture}], [{"label_predicted": 1}], "m", "1", 1.0, 1.25, [0])[0]
    row = parse_line(line)
    assert row is not None and row[:7] == ("r", 0, 1.0, "m", "1", 1.25, None)
    inputs = row[PREDICTION_COLUMNS.index("inputs")]
    if mode == "hash":
        digest = hashlib.sha256(base64.b64decode(picture)).hexdigest()
        assert inputs == f'{{"image":"sha256:{digest}"}}'
    elif mode == "bytes":
        assert inputs == f'{{"image":"{picture}"}}'
    else:
        assert inputs == '{"image":null}'


def test_a_full_spool_drops_and_counts_never_blocks(predictor: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    log = start(predictor, tmp_path, spool_max_mb=0.0001)  # ~100 bytes: not one record fits
    started = time.perf_counter()
    for i in range(50):
        log.submit(f"r{i}", [RECORD], [OUTPUT], "tiny", "1", 1.0)
    assert time.perf_counter() - started < 0.5
    wait_settled(log)
    assert log.totals["dropped"] == 50 and log.totals["logged"] == 0 and log.store.count() == 0
    log.close(5)


def test_a_full_memory_queue_drops_and_counts(predictor: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.monitoring.store import LogStore

    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    settings = LogConfig(url=f"sqlite:///{tmp_path / 'monitor.db'}", flush_interval_s=30, queue_size=10)
    store = LogStore(str(settings.url))
    store.open(identity_of("tiny", predictor.input_schema()))
    log = PredictionLog(store, settings, RecordEncoder(predictor.features, settings, PII_KEY.encode()),
                        Spool(tmp_path / "spool", 2**20))  # not started: nothing takes from memory yet
    for i in range(15):
        log.submit(f"r{i}", [RECORD], [OUTPUT], "tiny", "1", 1.0)
    assert log.totals["dropped"] == 5 and log.pending == 10
    log.start()
    log.close(10)  # closing spools and ships what memory held
    assert log.totals["logged"] == 10 and log.pending == 0


def test_segments_of_an_ended_process_are_shipped_once(predictor: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    folder = tmp_path / "monitor.db-spool"
    encoder = RecordEncoder(predictor.features, LogConfig(url="sqlite:///x.db"), PII_KEY.encode())
    ended = Spool(folder, 2**20)  # a process that spooled and then died (its lock goes with it)
    ended.append(encoder.lines("dead", [RECORD] * 3, [OUTPUT] * 3, "tiny", "1", time.time(), 1.0, [0, 1, 2]))
    ended.append(["a damaged line cut off mid-write"])
    (folder / f".{ended.owner}-000000000009.tsv.tmp").write_text("half a segment")
    os.close(ended._lock)
    log = start(predictor, tmp_path)
    deadline = time.monotonic() + 20
    while log.totals["replayed"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.totals["replayed"] == 3 and log.store.find([("dead", 0), ("dead", 1), ("dead", 2)]) \
        == {("dead", 0), ("dead", 1), ("dead", 2)}
    assert not list(folder.glob(f"*{ended.owner}*")) and not list(folder.glob(f".{ended.owner}*"))
    log.close(5)
    again = start(predictor, tmp_path)  # nothing left to replay; nothing stored twice
    time.sleep(0.3)
    again.close(5)
    assert again.totals["replayed"] == 0 and stored_count(tmp_path) == 3


def stored_count(tmp_path: Path) -> int:
    from modelmill.monitoring.store import LogStore

    store = LogStore(f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        return store.count()
    finally:
        store.close()


def test_a_key_column_that_is_no_input_is_refused(predictor: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    with pytest.raises(ServingError, match="key_column: 'customer' is not an input"):
        start(predictor, tmp_path, key_column="customer")


def test_identity_is_the_inputs_and_target(predictor: Any) -> None:
    identity = identity_of("tiny", predictor.input_schema())
    assert identity.inputs == {"x": "number", "colour": "category", "flag": "binary", "when": "date",
                               "review": "text"}
    assert identity.target["name"] == "label"
    assert pii_key(LogConfig(pii="drop"), True) is None


def test_line_separators_inside_values_do_not_split_a_record(tmp_path: Path) -> None:
    """JSON leaves U+2028, U+0085 and friends unescaped; the spool splits on newlines only."""
    from modelmill.monitoring.identity import ModelIdentity
    from modelmill.monitoring.store import LogStore

    class TextLike:
        name = "note"
        modality = "text"

        class config:  # noqa: N801
            pii = False

    settings = LogConfig(url=f"sqlite:///{tmp_path / 'monitor.db'}", flush_interval_s=0.05)
    store = LogStore(str(settings.url))
    store.open(ModelIdentity("notes", {"note": "text"}, {"name": "y", "type": "number", "classes": []}))
    log = PredictionLog(store, settings, RecordEncoder([TextLike()], settings, None),
                        Spool(tmp_path / "spool", 2**20))
    log.start()
    note = "one\u2028two\x85three\x1cfour\r\nfive\tsix"
    log.submit("r", [{"note": note}], [{"y_predicted": 1.0}], "notes", "1", 1.0)
    wait_settled(log)
    assert log.totals["logged"] == 1 and log.totals["dropped"] == 0
    stored = [r for chunk in log.store.read() for r in chunk]
    log.close(5)
    import json

    assert json.loads(stored[0]["inputs"]) == {"note": note}


def test_a_shipper_that_dies_is_replaced_and_nothing_is_lost(predictor: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    log = start(predictor, tmp_path)
    first = log._shipper
    assert first is not None
    first.send_signal(signal.SIGKILL)
    for i in range(30):
        log.submit(f"r{i}", [RECORD], [OUTPUT], "tiny", "1", 1.0)
        time.sleep(0.01)
    wait_settled(log)
    assert log._shipper is not first and log.totals["logged"] == 30 == stored_count(tmp_path)
    log.close(5)
