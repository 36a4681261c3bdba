"""The metrics a ``RunReport`` turns into: every series, its labels and values."""

from __future__ import annotations

import importlib.metadata

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from bwsync.changes import ACTIONS, APPLYING
from bwsync.errors import RunResult
from bwsync.metrics import METRIC_NAMES, RESULTS, build_registry
from bwsync.model import RunReport
from tests.fixtures.metrics import LABELS as L
from tests.fixtures.metrics import full_report


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**L, **labels})


def names(registry: CollectorRegistry) -> set[str]:
    return {m.name for m in registry.collect()}


def test_every_metric_of_a_full_report() -> None:
    reg = build_registry(full_report())
    exported = {m.name for m in reg.collect()}
    assert exported == METRIC_NAMES
    # Every value describes the last run: gauges, never counters that restart with each run.
    assert {m.type for m in reg.collect()} == {"gauge"}
    assert value(reg, "bwsync_run_duration_seconds") == 30.0
    assert value(reg, "bwsync_last_run_timestamp_seconds") == 130.0
    assert value(reg, "bwsync_stage_duration_seconds", stage="fetch") == 10.0
    assert value(reg, "bwsync_directory_objects", kind="groups") == 5
    assert value(reg, "bwsync_planned_changes", action="revoke") == 1
    assert value(reg, "bwsync_applied_changes", action="invite") == 3
    assert value(reg, "bwsync_applied_differs") == 1
    assert value(reg, "bwsync_safety_limit_breached") == 0
    assert value(reg, "bwsync_skipped_entries", reason="no_email") == 4
    assert value(reg, "bwsync_bitwarden_requests", endpoint="members", code="0") == 1
    assert value(reg, "bwsync_retries") == 3
    assert value(reg, "bwsync_directory_requests", code="200") == 307
    assert value(reg, "bwsync_directory_requests", code="429") == 1
    assert value(reg, "bwsync_directory_retries") == 1
    assert value(reg, "bwsync_unsent_batches") == 2
    version = importlib.metadata.version("bwsync")
    assert value(reg, "bwsync_build_info", version=version) == 1


def test_every_series_has_profile_and_source() -> None:
    for family in build_registry(full_report()).collect():
        for sample in family.samples:
            assert sample.labels["profile"] == "corp", sample
            assert sample.labels["source"] == "ldap", sample


def test_no_created_samples_and_nothing_on_the_global_registry() -> None:
    reg = build_registry(full_report())
    assert not any(s.name.endswith("_created") for m in reg.collect() for s in m.samples)
    assert REGISTRY.get_sample_value("bwsync_retries", L) is None


def test_registries_are_independent() -> None:
    a = build_registry(full_report("success"))
    b = build_registry(full_report("failed"))
    assert value(a, "bwsync_last_run_result", result="success") == 1
    assert value(b, "bwsync_last_run_result", result="success") == 0


@pytest.mark.parametrize("result", RESULTS)
def test_last_run_result_is_one_hot(result: RunResult) -> None:
    reg = build_registry(full_report(result))
    for r in RESULTS:
        assert value(reg, "bwsync_last_run_result", result=r) == (1 if r == result else 0)


@pytest.mark.parametrize(
    ("result", "carried", "expected"),
    [
        ("success", 50.0, 130.0),  # this run is the last success
        ("no_change", None, 130.0),  # no change is a success too
        ("success", 120.0, 120.0),  # the run recorded its success time: used as is
        ("failed", 50.0, 50.0),  # carried through a failure
        ("safety_stop", 50.0, 50.0),
        ("config_error", None, 0.0),  # the state says never: 0, so "no recent success" fires
    ],
)
def test_last_success_timestamp(result: RunResult, carried: float | None, expected: float) -> None:
    report = RunReport(
        profile="corp",
        source="ldap",
        result=result,
        started=100.0,
        finished=130.0,
        last_success_timestamp=carried,
    )
    reg = build_registry(report)
    assert value(reg, "bwsync_last_success_timestamp_seconds") == expected


@pytest.mark.parametrize("result", ["config_error", "failed"])
def test_unknown_last_success_is_left_out_not_zero(result: RunResult) -> None:
    """A run that ended before reading the state (bad settings, unreadable store) does not
    know the last success: 0 would claim "never" and fire the critical alert at once."""
    report = RunReport(profile="corp", source="ldap", result=result, last_success_known=False)
    reg = build_registry(report)
    assert value(reg, "bwsync_last_success_timestamp_seconds") is None
    assert value(reg, "bwsync_last_run_result", result=result) == 1


def test_a_completed_run_has_every_action_even_at_zero() -> None:
    """Every action the plan knows, link and skip included: the series come from the one
    definition of the actions (``bwsync.changes``). A skip applies nothing: it has no applied
    series."""
    report = RunReport(profile="corp", source="ldap", result="no_change", exit_code=0)
    reg = build_registry(report)
    assert {"link", "skip", "group_relink"} <= set(ACTIONS)
    for action in ACTIONS:
        assert value(reg, "bwsync_planned_changes", action=action) == 0
        applied = value(reg, "bwsync_applied_changes", action=action)
        assert applied == (0 if action in APPLYING else None), action
    assert "skip" not in APPLYING


def test_a_failed_run_reports_only_what_it_measured() -> None:
    report = RunReport(
        profile="corp", source="ldap", result="failed", started=1.0, stage_seconds={"fetch": 1.0}
    )
    reg = build_registry(report)
    present = {s.name for m in reg.collect() for s in m.samples}
    assert "bwsync_planned_changes" not in present
    assert "bwsync_directory_objects" not in present
    assert value(reg, "bwsync_last_run_timestamp_seconds") == 1.0  # started, as it never finished
    assert value(reg, "bwsync_last_run_result", result="failed") == 1
