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
