"""The alerting rules: valid for promtool, unit-tested with promtool, and about our metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bwsync.metrics import METRIC_NAMES

FILES = Path(__file__).resolve().parents[2] / "helm" / "bwsync" / "files"
RULES = FILES / "bwsync-rules.yaml"
RULE_TESTS = FILES / "bwsync-rules.test.yaml"
ALERTS = {
    "BwsyncSyncFailing",
    "BwsyncNoRecentSuccess",
    "BwsyncSafetyStop",
    "BwsyncAppliedDiffersFromPlanned",
}
#: The chart replaces this text: N missed runs * schedule interval (see the rules file header).
THRESHOLD = "3 * 3600"


def promtool(*args: str, cwd: Path = FILES) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not found: apt-get install prometheus (./dev setup)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_are_the_ones_we_document() -> None:
    assert {r["alert"] for r in rules()} == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]  # fmt: skip
    for alert in ALERTS:
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert} needs a firing and a quiet case"


def test_rules_only_use_metrics_bwsync_exports() -> None:
    for rule in rules():
        used = set(re.findall(r"\bbwsync_[a-z_]+", rule["expr"]))
        assert used, rule["alert"]
        assert used <= METRIC_NAMES, (rule["alert"], used - METRIC_NAMES)


def test_threshold_is_marked_once_and_can_be_substituted(tmp_path: Path) -> None:
    text = RULES.read_text()
    [no_success] = [r for r in rules() if r["alert"] == "BwsyncNoRecentSuccess"]
    assert THRESHOLD in no_success["expr"]
    assert sum(THRESHOLD in r["expr"] for r in rules()) == 1
    # What the chart does for a daily schedule that may miss two runs.
    (tmp_path / "rules.yaml").write_text(text.replace(THRESHOLD, "2 * 86400"))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    [changed] = [
        r["expr"]
        for g in yaml.safe_load((tmp_path / "rules.yaml").read_text())["groups"]
        for r in g["rules"]
        if r["alert"] == "BwsyncNoRecentSuccess"
    ]
    assert changed.endswith("> 2 * 86400")
