"""Delivery of a run's metrics: the node_exporter textfile, and a delivery problem as a warning
that never fails the run (the real Pushgateway: tests/integration/test_pushgateway.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bwsync.config import MetricsSettings
from bwsync.errors import ConfigError
from bwsync.metrics import METRIC_NAMES, build_registry
from bwsync.metrics_delivery import deliver, write_textfile
from bwsync.model import RunReport
from bwsync.settings import load_settings
from tests.fixtures.metrics import full_report


def test_textfile_parses_back(tmp_path: Path) -> None:
    (tmp_path / "collector").mkdir()
    path = tmp_path / "collector" / "bwsync.prom"
    assert deliver(full_report(), MetricsSettings(textfile_path=path)) == []
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert {f + ("_total" if families[f].type == "counter" else "") for f in families} == (
        METRIC_NAMES
    )
    [sample] = [
        s for s in families["bwsync_last_run_result"].samples if s.labels["result"] == "success"
    ]
    assert sample.value == 1
    assert sample.timestamp is None  # node_exporter refuses timestamps in textfiles
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["bwsync.prom"]  # no temporary file left behind


def test_textfile_is_replaced_not_appended(tmp_path: Path) -> None:
    path = tmp_path / "bwsync.prom"
    write_textfile(build_registry(full_report("success")), path)
    write_textfile(build_registry(full_report("failed")), path)
    text = path.read_text()
    assert text.count("# TYPE bwsync_last_run_result gauge") == 1
    assert 'bwsync_last_run_result{profile="corp",result="failed",source="ldap"} 1.0' in text


def test_textfile_in_a_missing_directory_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "bwsync.prom"
    [warning] = deliver(full_report(), MetricsSettings(textfile_path=path))
    assert str(path) in warning
    assert "not written" in warning


def test_textfile_over_a_directory_is_a_warning_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "collector" / "bwsync.prom"
    path.mkdir(parents=True)
    [warning] = deliver(full_report(), MetricsSettings(textfile_path=path))
    assert "not written" in warning
    assert os.listdir(path.parent) == ["bwsync.prom"]


def test_textfile_without_prom_suffix_is_written_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bwsync.txt"
    [warning] = deliver(full_report(), MetricsSettings(textfile_path=path))
    assert ".prom" in warning
    assert path.exists()


def test_nothing_configured_delivers_nothing() -> None:
    assert deliver(full_report(), MetricsSettings()) == []


def test_bad_pushgateway_scheme_is_a_settings_error_and_never_a_failed_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "ftp://u:pw@127.0.0.1/x"
    monkeypatch.setenv("BWSYNC_METRICS__PUSHGATEWAY_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert problem.startswith("BWSYNC_METRICS__PUSHGATEWAY_URL: must be an http")
    assert "pw" not in problem  # the URL's password is not echoed
    # Settings built without the models' checks: still a warning, never an exception.
    [warning] = deliver(full_report(), MetricsSettings.model_construct(pushgateway_url=url))
    assert "scheme" in warning
    assert "pw" not in warning


def test_a_config_error_keeps_the_textfile_last_success(tmp_path: Path) -> None:
    path = tmp_path / "bwsync.prom"
    settings = MetricsSettings(textfile_path=path)
    assert deliver(full_report("success"), settings) == []
    before = _textfile_value(path, "bwsync_last_success_timestamp_seconds")
    assert before == 130.0
    error = RunReport(profile="corp", source="ldap", result="config_error", exit_code=2,
                      started=200.0, finished=200.0, last_success_known=False)  # fmt: skip
    assert deliver(error, settings) == []
    assert _textfile_value(path, "bwsync_last_success_timestamp_seconds") == before
    assert _textfile_value(path, "bwsync_last_run_timestamp_seconds") == 200.0
    # Another profile's value is not taken for this one's.
    other = RunReport(profile="hr", source="ldap", result="config_error",
                      last_success_known=False)  # fmt: skip
    assert deliver(other, settings) == []
    assert _textfile_value(path, "bwsync_last_success_timestamp_seconds", profile="hr") is None


def _textfile_value(path: Path, name: str, profile: str = "corp") -> float | None:
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("profile") == profile:
                return float(sample.value)
    return None
