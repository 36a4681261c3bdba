"""The Grafana dashboard: loadable by the sidecar, and every query is about metrics we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bwsync.metrics import METRIC_NAMES

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "helm" / "bwsync" / "files" / "bwsync-dashboard.json"
)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Values Grafana would put in for its variables, to check the queries as plain PromQL.
GRAFANA_VARIABLES = {"$profile": ".*", "$__range": "1h", "$__rate_interval": "2m"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            found.append(var["definition"])
    return found


def test_loads_with_a_stable_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "bwsync"
    assert dashboard["title"] == "bwsync"
    assert isinstance(dashboard["schemaVersion"], int)
    # Sidecar provisioning does no import step: no __inputs placeholders may remain.
    assert "__inputs" not in dashboard
    assert "${DS_" not in DASHBOARD.read_text()


def test_data_source_is_a_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panel_ids_unique_and_layout_fits(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for p in panels(dashboard):
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_every_query_names_an_exported_metric(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for expr in queries(dashboard):
        names = set(re.findall(r"\bbwsync_[a-z_]+", expr))
        assert names, f"query without a bwsync metric: {expr}"
        assert names <= METRIC_NAMES, (expr, names - METRIC_NAMES)
        used |= names
    # …and the dashboard shows every metric bwsync exports.
    assert used == METRIC_NAMES


def test_required_views_are_there(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(queries(dashboard))
    for needle in (
        "bwsync_last_run_result",  # runs and results
        "by (profile, stage) (bwsync_stage_duration_seconds",  # duration per stage
        "by (profile, kind) (bwsync_directory_objects",  # directory size
        "by (profile, action) (bwsync_planned_changes",  # changes by action
        "by (profile, action) (bwsync_applied_changes",
        "by (profile, reason) (bwsync_skipped_entries",  # skipped entries by reason
    ):
        assert needle in exprs


def test_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: apt-get install prometheus (./dev setup)")
    rules = []
    for i, query in enumerate(q for q in queries(dashboard) if not q.startswith("label_values(")):
        expr = query
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = subprocess.run(
        [promtool, "check", "rules", "queries.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
