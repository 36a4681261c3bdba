"""Metrics pushed to a real Pushgateway after a successful run, a failed run and a safety stop,
read back from the gateway's own ``/metrics``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bwsync.changes import ACTIONS
from bwsync.cli import main
from bwsync.config import MetricsSettings
from bwsync.metrics import RESULTS
from bwsync.metrics_delivery import deliver
from bwsync.model import RunReport
from tests.fixtures.metrics import PUSH_PASSWORD, PUSH_USER, Pushgateway, free_port
from tests.standins.bitwarden import FakeBitwarden

pytestmark = pytest.mark.pushgateway

T0 = 1_700_000_000.0


def success_report() -> RunReport:
    return RunReport(
        profile="corp",
        source="ldap",
        result="success",
        exit_code=0,
        started=T0,
        finished=T0 + 12.5,
        stage_seconds={"fetch": 3.0, "plan": 0.5, "apply": 8.0},
        directory_objects={"users": 120, "groups": 7, "disabled_users": 3, "deleted_users": 0},
        planned={"invite": 4, "member_add": 9},
        applied={"invite": 4, "member_add": 9},
        skipped={"no_email": 2},
        requests={("token", 200): 1, ("import", 200): 1, ("members", 429): 1},
        retries=1,
        last_success_timestamp=T0 - 3600,
    )


def failed_report() -> RunReport:
    return RunReport(
        profile="corp",
        source="ldap",
        result="failed",
        exit_code=3,
        started=T0 + 3600,
        finished=T0 + 3602,
        stage_seconds={"fetch": 2.0},
        error="LDAP bind failed",
        last_success_timestamp=T0 + 12.5,  # the run carried it from the state
    )


def safety_stop_report() -> RunReport:
    return RunReport(
        profile="corp",
        source="ldap",
        result="safety_stop",
        exit_code=6,
        started=T0 + 7200,
        finished=T0 + 7204,
        stage_seconds={"fetch": 3.0, "plan": 0.5},
        directory_objects={"users": 10, "groups": 7},
        planned={"revoke": 110},
        safety_breach=True,
        last_success_timestamp=T0 + 12.5,
    )


def push(gw: Pushgateway, report: RunReport) -> None:
    assert deliver(report, MetricsSettings(pushgateway_url=gw.url)) == []


def test_successful_run(pushgateway: Pushgateway) -> None:
    push(pushgateway, success_report())
    gw = pushgateway
    key = {"job": "bwsync", "profile": "corp", "source": "ldap"}

    # Grouping key job + profile, and no instance: the gateway shows it empty.
    for labels in gw.series("bwsync_last_run_result"):
        assert labels["job"] == "bwsync"
        assert labels["profile"] == "corp"
        assert labels.get("instance", "") == ""
    assert gw.value("bwsync_last_run_result", result="success", **key) == 1
    for other in set(RESULTS) - {"success"}:
        assert gw.value("bwsync_last_run_result", result=other, **key) == 0
    assert gw.value("bwsync_last_success_timestamp_seconds", **key) == T0 + 12.5
    assert gw.value("bwsync_last_run_timestamp_seconds", **key) == T0 + 12.5
    assert gw.value("bwsync_run_duration_seconds", **key) == 12.5
    assert gw.value("bwsync_stage_duration_seconds", stage="apply", **key) == 8.0
    assert gw.value("bwsync_directory_objects", kind="users", **key) == 120
    assert gw.value("bwsync_planned_changes", action="invite", **key) == 4
    assert gw.value("bwsync_applied_changes", action="member_add", **key) == 9
    assert {s["action"] for s in gw.series("bwsync_planned_changes")} == set(ACTIONS)
    assert gw.value("bwsync_applied_differs", **key) == 0
    assert gw.value("bwsync_skipped_entries", reason="no_email", **key) == 2
    assert gw.value("bwsync_bitwarden_requests", endpoint="members", code="429", **key) == 1
    assert gw.value("bwsync_retries", **key) == 1
    assert gw.value("bwsync_build_info", **key) == 1
    assert gw.scrape()["bwsync_bitwarden_requests"].type == "gauge"


def test_failed_run_replaces_the_group_and_keeps_last_success(pushgateway: Pushgateway) -> None:
    gw = pushgateway
    push(gw, success_report())
    push(gw, failed_report())

    assert gw.value("bwsync_last_run_result", result="failed", profile="corp") == 1
    assert gw.value("bwsync_last_run_result", result="success", profile="corp") == 0
    assert gw.value("bwsync_last_success_timestamp_seconds", profile="corp") == T0 + 12.5
    assert gw.value("bwsync_last_run_timestamp_seconds", profile="corp") == T0 + 3602
    # PUT semantics: what the failed run did not measure is gone, not left from the success.
    assert [s["stage"] for s in gw.series("bwsync_stage_duration_seconds")] == ["fetch"]
    assert gw.series("bwsync_directory_objects") == []
    assert gw.series("bwsync_applied_changes") == []
    assert gw.series("bwsync_skipped_entries") == []
    assert gw.value("bwsync_retries", profile="corp") == 0


def test_safety_stop(pushgateway: Pushgateway) -> None:
    gw = pushgateway
    push(gw, success_report())
    push(gw, safety_stop_report())

    assert gw.value("bwsync_last_run_result", result="safety_stop", profile="corp") == 1
    assert gw.value("bwsync_safety_limit_breached", profile="corp") == 1
    assert gw.value("bwsync_planned_changes", action="revoke", profile="corp") == 110
    assert gw.value("bwsync_planned_changes", action="invite", profile="corp") == 0
    assert gw.series("bwsync_applied_changes") == []
    assert gw.value("bwsync_directory_objects", kind="users", profile="corp") == 10
    assert gw.value("bwsync_last_success_timestamp_seconds", profile="corp") == T0 + 12.5


def test_profiles_are_separate_groups(pushgateway: Pushgateway) -> None:
    push(pushgateway, success_report())
    other = failed_report()
    other.profile = "lab"
    push(pushgateway, other)
    assert pushgateway.value("bwsync_last_run_result", result="success", profile="corp") == 1
    assert pushgateway.value("bwsync_last_run_result", result="failed", profile="lab") == 1


def test_push_and_textfile_together(pushgateway: Pushgateway, tmp_path: Path) -> None:
    path = tmp_path / "bwsync.prom"
    settings = MetricsSettings(pushgateway_url=pushgateway.url, textfile_path=path)
    assert deliver(failed_report(), settings) == []
    assert pushgateway.value("bwsync_last_run_result", result="failed", profile="corp") == 1
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert "bwsync_last_run_result" in families


def test_unreachable_gateway_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bwsync.prom"
    url = f"http://127.0.0.1:{free_port()}"
    warnings = deliver(success_report(), MetricsSettings(pushgateway_url=url, textfile_path=path))
    assert len(warnings) == 1
    assert url in warnings[0]
    assert "refused" in warnings[0].lower()
    assert path.exists()  # the other delivery still happens


def test_tls_and_basic_auth(pushgateway_secure: Pushgateway) -> None:
    gw = pushgateway_secure
    settings = MetricsSettings(
        pushgateway_url=gw.url,
        pushgateway_username=PUSH_USER,
        pushgateway_password=SecretStr(PUSH_PASSWORD),
        pushgateway_ca_file=gw.ca_file,
    )
    assert deliver(success_report(), settings) == []
    assert gw.value("bwsync_last_run_result", result="success", profile="corp") == 1


def test_credentials_in_the_url(pushgateway_secure: Pushgateway) -> None:
    gw = pushgateway_secure
    url = gw.url.replace("https://", f"https://{PUSH_USER}:{PUSH_PASSWORD}@")
    settings = MetricsSettings(pushgateway_url=url, pushgateway_ca_file=gw.ca_file)
    assert deliver(failed_report(), settings) == []
    assert gw.value("bwsync_last_run_result", result="failed", profile="corp") == 1


def test_wrong_password_is_a_warning_without_the_password(pushgateway_secure: Pushgateway) -> None:
    gw = pushgateway_secure
    settings = MetricsSettings(
        pushgateway_url=gw.url.replace("https://", "https://intruder:guess-me@"),
        pushgateway_ca_file=gw.ca_file,
    )
    [warning] = deliver(success_report(), settings)
    assert "401" in warning
    assert "guess-me" not in warning
    assert gw.series("bwsync_last_run_result") == []


def test_config_error_keeps_the_pushed_last_success_behind_auth_and_tls(
    pushgateway_secure: Pushgateway,
) -> None:
    """A run that could not read its state reads the last success back from the gateway
    (same credentials and CA as the push) and pushes it again: PUT replaces the whole group,
    and 0 would fire BwsyncNoRecentSuccess at once."""
    gw = pushgateway_secure
    settings = MetricsSettings(
        pushgateway_url=gw.url,
        pushgateway_username=PUSH_USER,
        pushgateway_password=SecretStr(PUSH_PASSWORD),
        pushgateway_ca_file=gw.ca_file,
    )
    assert deliver(success_report(), settings) == []
    error = RunReport(profile="corp", source="ldap", result="config_error", exit_code=2,
                      started=T0 + 7200, finished=T0 + 7200, last_success_known=False)  # fmt: skip
    assert deliver(error, settings) == []
    assert gw.value("bwsync_last_run_result", result="config_error", profile="corp") == 1
    assert gw.value("bwsync_last_success_timestamp_seconds", profile="corp") == T0 + 12.5
    assert gw.value("bwsync_last_run_timestamp_seconds", profile="corp") == T0 + 7200


def test_untrusted_certificate_is_a_warning(pushgateway_secure: Pushgateway) -> None:
    gw = pushgateway_secure
    settings = MetricsSettings(
        pushgateway_url=gw.url,
        pushgateway_username=PUSH_USER,
        pushgateway_password=SecretStr(PUSH_PASSWORD),
    )
    [warning] = deliver(success_report(), settings)
    assert "certificate" in warning.lower()


# --- real runs: the CLI, the file source and the Bitwarden stand-in, pushing to the gateway ----


def _write_directory(path: Path, users: int) -> None:
    path.write_text(
        json.dumps(
            {
                "users": [{"id": f"u{i}", "email": f"user{i}@example.com"} for i in range(users)],
                "groups": [{"id": "g1", "name": "Staff", "members": ["u0", "u1"]}],
            }
        )
    )


@pytest.fixture
def sync_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_bitwarden: FakeBitwarden
) -> Path:
    """Settings for a file-source sync to the stand-in; returns the directory file."""
    directory = tmp_path / "dir.json"
    _write_directory(directory, 3)
    for name, value in {
        "BWSYNC_PROFILE": "corp",
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "2",
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(tmp_path / "state" / "state.json"),
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    return directory


def test_real_runs_success_failure_safety_stop(
    sync_env: Path,
    pushgateway: Pushgateway,
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BWSYNC_METRICS__PUSHGATEWAY_URL", pushgateway.url)
    gw = pushgateway
    key = {"job": "bwsync", "profile": "corp", "source": "file"}

    before = time.time()
    assert main(["sync"]) == 0
    assert gw.value("bwsync_last_run_result", result="success", **key) == 1
    success_at = gw.value("bwsync_last_success_timestamp_seconds", **key)
    assert success_at is not None
    assert before <= success_at <= time.time()
    assert gw.value("bwsync_directory_objects", kind="users", **key) == 3
    assert gw.value("bwsync_planned_changes", action="invite", **key) == 3
    assert gw.value("bwsync_applied_changes", action="invite", **key) == 3
    assert gw.value("bwsync_applied_changes", action="group_create", **key) == 1
    assert gw.value("bwsync_applied_differs", **key) == 0
    assert gw.value("bwsync_bitwarden_requests", endpoint="import", code="200", **key) == 1
    stages = {s["stage"] for s in gw.series("bwsync_stage_duration_seconds")}
    assert {"fetch", "plan", "apply"} <= stages
    duration = gw.value("bwsync_run_duration_seconds", **key)
    assert duration is not None
    assert duration > 0

    # A failed run: the directory changed, and Bitwarden refuses the token.
    _write_directory(sync_env, 4)
    fake_bitwarden.fail("token", status=400, times=None)
    assert main(["sync"]) != 0
    assert gw.value("bwsync_last_run_result", result="failed", **key) == 1
    assert gw.value("bwsync_last_run_result", result="success", **key) == 0
    assert gw.value("bwsync_last_success_timestamp_seconds", **key) == success_at
    last_run = gw.value("bwsync_last_run_timestamp_seconds", **key)
    assert last_run is not None
    assert last_run > success_at
    assert gw.value("bwsync_bitwarden_requests", endpoint="token", code="400", **key) == 1

    # A safety stop: 30 synced members are gone from the directory.
    fake_bitwarden.clear_faults()
    for i in range(10, 40):
        fake_bitwarden.add_member(f"user{i}@example.com", external_id=f"u{i}")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    assert main(["sync"]) == 6
    assert gw.value("bwsync_last_run_result", result="safety_stop", **key) == 1
    assert gw.value("bwsync_safety_limit_breached", **key) == 1
    assert gw.value("bwsync_planned_changes", action="revoke", **key) == 30
    assert gw.value("bwsync_last_success_timestamp_seconds", **key) == success_at

    # A configuration error (a misspelt setting): exit 2, nothing read, and the time of the
    # last success stays what it was instead of dropping to 0.
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVALZ", "40")
    assert main(["sync"]) == 2
    assert gw.value("bwsync_last_run_result", result="config_error", **key) == 1
    assert gw.value("bwsync_last_success_timestamp_seconds", **key) == success_at


def test_real_run_with_the_gateway_down_still_succeeds(
    sync_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    textfile = tmp_path / "bwsync.prom"
    monkeypatch.setenv("BWSYNC_METRICS__PUSHGATEWAY_URL", url)
    monkeypatch.setenv("BWSYNC_METRICS__TEXTFILE_PATH", str(textfile))
    assert main(["sync"]) == 0
    assert url in capsys.readouterr().err
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    [success] = [
        s for s in families["bwsync_last_run_result"].samples if s.labels["result"] == "success"
    ]
    assert success.value == 1
