"""The server's drift gauges: with ``--workers N`` one worker judges (a lock file in the
shared metrics folder decides which; the kernel frees it when that worker ends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelmill.serving.drift import _Leader
from modelmill.serving.metrics import MULTIPROCESS_ENVIRONMENT


def test_one_worker_leads_and_another_takes_over_when_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENVIRONMENT, str(tmp_path))
    first, second = _Leader(), _Leader()  # two open files: the lock works between them as between processes
    assert first.held() and first.held()  # and it stays held
    assert not second.held()
    first.release()  # the leading worker ends
    assert second.held()
    second.release()


def test_a_single_process_always_leads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENVIRONMENT, raising=False)
    assert _Leader().held() and _Leader().held()


def test_a_store_that_is_down_is_one_warning_line_and_no_dead_thread(trained_versions: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from modelmill.bundle import read_bundle
    from modelmill.config.serving import ServingConfig
    from modelmill.monitoring import LogStore
    from modelmill.serving.drift import DriftGauges
    from modelmill.serving.metrics import ServerMetrics
    from modelmill.serving.models import ServedModel

    monkeypatch.delenv(MULTIPROCESS_ENVIRONMENT, raising=False)
    model = ServedModel.load(read_bundle(trained_versions / "2"), "2", ServingConfig())
    store = LogStore("postgresql://modelmill@127.0.0.1:1/nothing")  # no server listens on port 1
    gauges = DriftGauges(store, ServerMetrics(), lambda: model, trained_versions)
    with caplog.at_level("WARNING", logger="modelmill.serving"):
        assert gauges.tick(_Leader()) == model.predictor.config.monitoring.refresh_s
        assert gauges.tick(_Leader()) == model.predictor.config.monitoring.refresh_s
    warnings = [r for r in caplog.records if "drift gauges" in r.getMessage()]
    assert len(warnings) == 1 and "cannot be judged" in warnings[0].getMessage(), warnings
    assert warnings[0].exc_info is None  # a line, not a traceback
    store.close()
