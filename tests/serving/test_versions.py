"""Versions: reload, rollback, a failing version, admin protection, path traversal, and
hot swaps under continuous load — over real HTTP."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import modelmill
from modelmill.errors import ServingError
from modelmill.serving.problem import Problem
from modelmill.serving.server import load_state
from tests.damage import flip_one_byte, unbuildable
from tests.serving.conftest import TOKEN, live_server, record

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_reload_and_rollback(versions: Path, admin_token: str) -> None:
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        assert http.get("/readyz").json()["version"] == "2"
        back = http.post("/v1/admin/rollback")  # no history yet: the next older version
        assert back.status_code == 200 and back.json()["version"] == "1" and back.json()["previous"] == "2"
        assert http.post("/v1/predict", json={"instances": [record()]}).json()["version"] == "1"
        newest = http.post("/v1/admin/reload")
        assert newest.json() == {**newest.json(), "version": "2", "previous": "1"}
        named = http.post("/v1/admin/reload", json={"version": "1"})
        assert named.status_code == 200 and named.json()["version"] == "1"
        assert http.post("/v1/admin/rollback").json()["version"] == "2"  # from the history
        assert http.post("/v1/admin/rollback").json()["version"] == "1"
        nothing = http.post("/v1/admin/rollback")
        assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_roll_back"
        assert 'modelmill_version_changes_total{outcome="rollback"} 3.0' in http.get("/metrics").text


def test_a_new_version_dropped_in_is_served_on_reload(versions: Path, admin_token: str) -> None:
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        (versions / "10").symlink_to(versions / "1", target_is_directory=True)  # 10 sorts after 2
        answer = http.post("/v1/admin/reload")
        assert answer.status_code == 200 and answer.json()["version"] == "10"
        assert http.get("/v1/model").json()["versions"] == ["1", "2", "10"]


@pytest.mark.parametrize("damage", ["flipped byte", "not a bundle", "pickle weights"])
def test_a_failing_version_leaves_the_old_one_serving(versions: Path, admin_token: str, damage: str) -> None:
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        shutil.copytree(versions / "1", versions / "3")
        if damage == "flipped byte":
            flip_one_byte(versions / "3" / "weights.safetensors")
        elif damage == "not a bundle":
            (versions / "3" / "config.yaml").write_text("name: [unclosed")
        else:
            (versions / "3" / "weights.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
        failed = http.post("/v1/admin/reload")  # the newest, 3
        assert failed.status_code == 409, failed.text
        error = failed.json()["error"]
        assert error["code"] == "load_failed" and "'3'" in error["message"]
        assert str(versions) not in failed.text and "Traceback" not in failed.text
        assert http.get("/readyz").json()["version"] == "2"
        assert http.post("/v1/predict", json={"instances": [record()]}).json()["version"] == "2"
        assert 'modelmill_version_changes_total{outcome="failed"} 1.0' in http.get("/metrics").text


def _damage(version: Path, damage: str) -> None:
    if damage == "flipped byte":
        flip_one_byte(version / "weights.safetensors")
    elif damage == "no manifest":  # a copy cut short
        (version / "manifest.json").unlink()
    else:
        unbuildable(version)


@pytest.mark.parametrize("damage", ["flipped byte", "no manifest", "fails to build"])
def test_a_broken_newest_version_at_start_serves_the_older_one(versions: Path, admin_token: str,
                                                               damage: str) -> None:
    good = versions.parent / "good-2"
    shutil.copytree(versions / "2", good)
    _damage(versions / "2", damage)
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        assert http.get("/readyz").json()["version"] == "1"
        model = http.get("/v1/model").json()
        assert model["version"] == "1" and model["versions"] == ["1", "2"] and model["version_folder"] is True
        [broken] = model["broken_versions"]
        assert broken["version"] == "2" and broken["error"].startswith("version '2' failed to load"), broken
        expected = {"flipped byte": "integrity check failed for 2/weights.safetensors",
                    "no manifest": "2 is not a modelmill bundle", "fails to build": "bogus"}[damage]
        assert expected in broken["error"] and str(versions) not in broken["error"], broken
        assert 'modelmill_version_broken{version="2"} 1.0' in http.get("/metrics").text

        again = http.post("/v1/admin/reload")  # the newest, still broken: still listed
        assert again.status_code == 409 and again.json()["error"]["message"] == broken["error"]
        assert http.get("/v1/model").json()["broken_versions"] == [broken]

        shutil.rmtree(versions / "2")  # fixed on disk, then reloaded
        shutil.copytree(good, versions / "2")
        fixed = http.post("/v1/admin/reload")
        assert fixed.status_code == 200 and fixed.json()["version"] == "2", fixed.text
        assert http.get("/v1/model").json()["broken_versions"] == []
        assert 'modelmill_version_broken{version="2"} 0.0' in http.get("/metrics").text


def test_a_failed_reload_marks_the_version_broken(versions: Path, admin_token: str) -> None:
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        model = http.get("/v1/model").json()
        assert model["broken_versions"] == [] and "modelmill_version_broken{" not in http.get("/metrics").text
        shutil.copytree(versions / "1", versions / "3")
        unbuildable(versions / "3")
        assert http.post("/v1/admin/reload").status_code == 409
        [broken] = http.get("/v1/model").json()["broken_versions"]
        assert broken["version"] == "3" and "bogus" in broken["error"]
        assert 'modelmill_version_broken{version="3"} 1.0' in http.get("/metrics").text
        assert http.get("/readyz").json()["version"] == "2"


def test_a_single_bundle_is_no_version_folder(versions: Path) -> None:
    with live_server(versions / "1") as live, httpx.Client(base_url=live.url) as http:
        model = http.get("/v1/model").json()
        assert model["version_folder"] is False and model["broken_versions"] == []


def test_when_every_version_fails_to_build_nothing_starts(versions: Path) -> None:
    unbuildable(versions / "1")
    unbuildable(versions / "2")
    with pytest.raises(ServingError) as refused:
        load_state(versions, {"port": 0})
    lines = str(refused.value).splitlines()
    assert lines[0] == f"no version of {versions.resolve()} can be served:" and len(lines) == 4, lines
    assert lines[1].startswith("- version '2' failed to load or warm up: RuntimeError") and "bogus" in lines[1]
    assert lines[2].startswith("- version '1' failed to load or warm up: RuntimeError") and "bogus" in lines[2]
    assert lines[3].startswith("Fix: repair or remove the broken versions")
    with pytest.raises(Problem, match="version '1' failed to load or warm up"):  # one bundle: its own error
        load_state(versions / "1", {"port": 0})


@pytest.mark.parametrize("name", ["..", "../1", "..%2f1", "%2e%2e", "%252e%252e%252f1", "/etc", "/etc/passwd",
                                  "1\x00", "..\\1", "1;rm", "1#x", "\\\\server\\share", "", ".hidden"])
def test_version_names_never_reach_the_filesystem_unchecked(versions: Path, admin_token: str, name: str) -> None:
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        answer = http.post("/v1/admin/reload", json={"version": name})
        assert answer.status_code == 400 or (name == "" and answer.status_code == 200), answer.text
        assert str(versions) not in answer.text
        assert http.get("/readyz").json()["version"] == "2"


def test_unknown_version_is_404(versions: Path, admin_token: str) -> None:
    with live_server(versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        answer = http.post("/v1/admin/reload", json={"version": "7"})
        assert answer.status_code == 404 and "known versions: 1, 2" in answer.json()["error"]["message"]


def test_admin_needs_the_token(versions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMILL_ADMIN_TOKEN", raising=False)
    with live_server(versions) as live, httpx.Client(base_url=live.url) as http:
        off = http.post("/v1/admin/reload", headers=AUTH)
        assert off.status_code == 403 and "MODELMILL_ADMIN_TOKEN" in off.json()["error"]["message"]
        monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
        assert http.post("/v1/admin/reload").status_code == 401
        wrong = http.post("/v1/admin/rollback", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert http.post("/v1/admin/reload", headers=AUTH).status_code == 200


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else str(address)


def test_admin_refuses_remote_callers_by_default(versions: Path, admin_token: str) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    with live_server(versions, host="0.0.0.0") as live:
        port = live.url.rsplit(":", 1)[1]
        with httpx.Client(base_url=f"http://{address}:{port}", headers=AUTH) as remote:
            refused = remote.post("/v1/admin/reload")
            assert refused.status_code == 403 and "admin_remote" in refused.json()["error"]["message"]
            assert remote.post("/v1/predict", json={"instances": [record()]}).status_code == 200


def _expected(versions: Path, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """What each version answers for ``records``, computed without the server."""
    return {v: modelmill.load(versions / v).predict(pd.DataFrame(records))["label_probability_good"].round(6)
            .tolist() for v in ("1", "2")}


def test_ten_hot_swaps_under_load_fail_no_request(versions: Path, admin_token: str) -> None:
    records = [record(x=x) for x in (-1.5, -0.2, 0.4, 1.7)]
    expected = _expected(versions, records)
    assert expected["1"] != expected["2"]  # so the answers tell the versions apart
    results: list[tuple[int, str, list[float]]] = []
    finished: list[float] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/v1/predict", json={"instances": records})
                body = response.json()
                results.append((response.status_code, body.get("version", ""),
                                [p.get("label_probability_good") for p in body.get("predictions", [])]))
                finished.append(time.monotonic())

    with live_server(versions, max_wait_ms=1.0) as live:
        threads = [threading.Thread(target=load, args=(live.url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        swaps = []
        swapped_at = [time.monotonic()]
        with httpx.Client(base_url=live.url, headers=AUTH, timeout=60) as admin:
            for i in range(10):
                while sum(t > swapped_at[-1] for t in finished) < 5:  # traffic between every two swaps
                    time.sleep(0.01)
                answer = admin.post("/v1/admin/reload", json={"version": "1" if i % 2 == 0 else "2"})
                swaps.append(answer.status_code)
                swapped_at.append(time.monotonic())
        stop.set()
        for thread in threads:
            thread.join(30)
    assert swaps == [200] * 10
    assert len(results) >= 50
    failed = [r for r in results if r[0] != 200]
    assert failed == []
    for _, version, probabilities in results:
        assert probabilities == pytest.approx(expected[version], abs=1e-5)  # the named version answered
    assert {version for _, version, _ in results} == {"1", "2"}
