"""``bwsync sync`` / ``plan`` end to end: the real CLI, the file source, the Bitwarden
stand-in over HTTP, a state file. Each scenario checks exit code, what the server received
and what the state holds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from bwsync.cli import main
from bwsync.model import STATUS_CONFIRMED, STATUS_REVOKED, TYPE_ADMIN
from tests.standins.bitwarden import FakeBitwarden


def _directory(path: Path, users: list[dict[str, Any]], groups: list[dict[str, Any]] = ()) -> Path:  # type: ignore[assignment]
    path.write_bytes(orjson.dumps({"users": users, "groups": list(groups)}))
    return path


def _u(i: int | str, **kw: Any) -> dict[str, Any]:
    return {"id": f"u{i}", "email": f"user{i}@example.com", **kw}


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_bitwarden: FakeBitwarden
) -> dict[str, Path]:
    directory = _directory(
        tmp_path / "dir.json",
        [_u(1), _u(2), _u(3, disabled=True)],
        [{"id": "g1", "name": "Staff", "members": ["u1", "u2"]}],
    )
    state = tmp_path / "state" / "state.json"
    for k, v in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "2",
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(state),
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    return {"directory": directory, "state": state}


def _state(env: dict[str, Path]) -> dict[str, Any]:
    return json.loads(env["state"].read_text()) if env["state"].exists() else {}


def _log_events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_first_sync_applies_second_sends_nothing(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sync"]) == 0
    imports = fake_bitwarden.requests_to("import")
    assert len(imports) == 1
    assert imports[0].body == {
        "groups": [{"name": "Staff", "externalId": "g1", "memberExternalIds": ["u1", "u2"]}],
        "members": [
            {"email": "user1@example.com", "externalId": "u1", "deleted": False},
            {"email": "user2@example.com", "externalId": "u2", "deleted": False},
            {"email": "user3@example.com", "externalId": "u3", "deleted": False},
        ],
        "overwriteExisting": False,
        "largeImport": False,
        "inviteUsersAfterProvisioning": True,
    }
    assert {m.external_id for m in fake_bitwarden.members} == {"u1", "u2", "u3"}
    state = _state(env)
    assert state["hash"] and state["last_run"]["result"] == "success"
    assert state["lease"] is None
    events = _log_events(capsys.readouterr().err)
    summary = [e for e in events if e["event"] == "summary"][-1]
    assert summary["result"] == "success" and summary["applied"]["invite"] == 3
    assert {e["event"] for e in events} >= {"fetch", "normalize", "payload", "plan", "apply"}

    fake_bitwarden.clear_requests()
    assert main(["sync"]) == 0
    assert fake_bitwarden.requests == []  # not even a token request
    assert _state(env)["last_run"]["result"] == "no_change"
    assert _state(env)["hash"] == state["hash"]


def test_plan_writes_nothing_and_lists_what_sync_applies(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert not env["state"].exists()
    assert fake_bitwarden.requests_to("import") == []
    planned = {(c["action"], c["externalId"]) for c in plan["changes"]}
    assert planned == {("invite", "u1"), ("invite", "u2"), ("invite", "u3"), ("group_create", "g1")}
    assert main(["sync"]) == 0
    assert {("invite", m.external_id) for m in fake_bitwarden.members} | {
        ("group_create", g.external_id) for g in fake_bitwarden.groups
    } == planned


def test_force_resends_an_unchanged_directory(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden
) -> None:
    assert main(["sync"]) == 0
    assert main(["sync", "--force"]) == 0
    assert len(fake_bitwarden.requests_to("import")) == 2


def test_safety_limit_applies_nothing(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(10, 40):
        fake_bitwarden.add_member(f"user{i}@example.com", external_id=f"u{i}")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    assert main(["sync"]) == 6
    writes = [r for r in fake_bitwarden.requests if r.method != "GET" and r.endpoint != "token"]
    assert writes == []
    assert _state(env).get("hash") is None
    err = capsys.readouterr().err
    assert "BWSYNC_SYNC__MAX_REMOVALS=25" in err and "--allow-removals" in err
    assert err.count('"event":"would revoke"') == 30 and '"event":"revoke"' not in err

    assert main(["sync", "--allow-removals", "30"]) == 0
    revoked = [m for m in fake_bitwarden.members if m.status == STATUS_REVOKED]
    assert len(revoked) == 30


def test_revoke_then_restore_across_runs(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT", "50")
    assert main(["sync"]) == 0
    staff = [{"id": "g1", "name": "Staff", "members": ["u1"]}]  # the group stays
    _directory(env["directory"], [_u(1), _u(3)], staff)  # u2 left
    assert main(["sync"]) == 0
    m2 = fake_bitwarden.find_member(external_id="u2")
    assert m2 is not None and m2.status == STATUS_REVOKED
    _directory(env["directory"], [_u(1), _u(2), _u(3)], staff)  # u2 is back
    assert main(["sync"]) == 0
    m2 = fake_bitwarden.find_member(external_id="u2")
    assert m2 is not None and m2.status != STATUS_REVOKED
    assert len(fake_bitwarden.requests_to("revoke_member")) == 1
    assert len(fake_bitwarden.requests_to("restore_member")) == 1


def test_a_revocation_the_server_did_not_make_fails_the_run_and_is_retried(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Something answers 200 to the revoke without the server revoking: the re-read shows
    the member active. Access was to end and did not, so the run fails (exit 4) and keeps
    the previous hash; the next run revokes."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT", "50")
    assert main(["sync"]) == 0
    synced_hash = _state(env)["hash"]
    staff = [{"id": "g1", "name": "Staff", "members": ["u1"]}]
    _directory(env["directory"], [_u(1), _u(3)], staff)  # u2 left
    fake_bitwarden.fail("revoke_member", status=200, times=1)
    capsys.readouterr()
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert "revoke user2@example.com" in err and "does not show them" in err
    assert _state(env)["hash"] == synced_hash
    m2 = fake_bitwarden.find_member(external_id="u2")
    assert m2 is not None and m2.status != STATUS_REVOKED
    assert main(["sync"]) == 0
    m2 = fake_bitwarden.find_member(external_id="u2")
    assert m2 is not None and m2.status == STATUS_REVOKED


def test_a_revoked_member_deleted_in_the_directory_is_removed_as_planned(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT", "100")  # 1 of 1 synced member
    fake_bitwarden.add_member("user1@example.com", external_id="u1", status=STATUS_REVOKED)
    _directory(env["directory"], [_u(1, deleted=True), _u(2)])
    assert main(["sync"]) == 0
    assert fake_bitwarden.find_member(external_id="u1") is None  # the server removed it
    summary = [e for e in _log_events(capsys.readouterr().err) if e["event"] == "summary"][-1]
    assert summary["planned"] == {"remove": 1, "invite": 1}
    assert summary["applied"] == {"remove": 1, "invite": 1}  # re-read: as planned


def test_admins_are_never_removed(env: dict[str, Path], fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.add_member("user1@example.com", external_id="u1", type=TYPE_ADMIN)
    _directory(env["directory"], [_u(1, deleted=True), _u(2)])
    assert main(["sync"]) == 0
    (imp,) = fake_bitwarden.requests_to("import")
    assert [m["externalId"] for m in imp.body["members"]] == ["u2"]
    admin = fake_bitwarden.find_member(external_id="u1")
    assert admin is not None and admin.status == STATUS_CONFIRMED


def test_server_errors_exhaust_retries_and_keep_state(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__MAX_RETRIES", "1")
    fake_bitwarden.server_error("import", times=None, status=503)
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert "import" in err and "503" in err
    assert fake_bitwarden.client_secret not in err
    state = _state(env)
    assert state["hash"] is None and state["last_run"]["result"] == "failed"
    assert state["lease"] is None
    fake_bitwarden.clear_faults()
    assert main(["sync"]) == 0  # the next run sends everything again
    assert _state(env)["hash"]


def test_bad_request_names_the_field(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    _directory(env["directory"], [{"id": "x" * 301, "email": "long@example.com"}])
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert "400" in err and "Members[0].ExternalId" in err
    assert len(fake_bitwarden.requests_to("import")) == 1  # a 400 is never retried


def test_overwrite_refused_for_member_without_master_password(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_bitwarden.add_member("tde@example.com", external_id="tde", master_password=False)
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    assert main(["sync"]) == 6  # the plan shows the removal; the limits stop it first
    assert main(["sync", "--allow-removals", "1"]) == 4
    assert "disable the 'Remove and re-add users during next sync'" in capsys.readouterr().err
    assert fake_bitwarden.find_member(external_id="tde") is not None


def test_vaultwarden_plan_and_sync(
    env: dict[str, Path],
    fake_vaultwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", fake_vaultwarden.base_url)
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_ID", fake_vaultwarden.client_id)
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_SECRET", fake_vaultwarden.client_secret)
    assert main(["plan", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["organizationKnown"] is False
    assert "no member list endpoints" in plan["notes"][0]
    assert "only through BWSYNC_SYNC__PROTECTED_MEMBERS" in plan["notes"][1]
    assert [m["externalId"] for m in plan["send"]["members"]] == ["u1", "u2", "u3"]
    assert main(["sync"]) == 0
    assert {m.email for m in fake_vaultwarden.members} >= {
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
    }
    # The members it synced are remembered, for the next runs' removals and safety limits.
    state = _state(env)
    assert state["memory"]["sets"]["members"]["count"] == 3
    assert state["memory"]["sets"]["revoked"]["count"] == 0


def test_bad_settings_exit_2_and_contact_nothing(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVALS", "-1")
    monkeypatch.setenv("BWSYNC_STATE__BACKEN", "file")
    assert main(["sync"]) == 2
    err = capsys.readouterr().err
    assert "BWSYNC_SYNC__MAX_REMOVALS" in err and "BWSYNC_STATE__BACKEN:" in err
    assert fake_bitwarden.requests == []


def test_wrong_api_key_is_exit_4_without_the_secret(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_SECRET", "not-the-right-secret")
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert "invalid_client" in err and "not-the-right-secret" not in err


def test_check_reports_each_part(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "ok    directory: read file" in out and "ok    bitwarden: token" in out
    assert "ok    state:" in out


def test_state_show_and_clear(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sync"]) == 0
    capsys.readouterr()
    assert main(["state", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["hash"] == _state(env)["hash"]
    assert "@example.com" not in json.dumps(shown)  # counts only, never member lists
    assert main(["state", "clear"]) == 0
    assert not env["state"].exists()


def test_rate_limit_is_waited_out(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_bitwarden.throttle("import", times=1, retry_after=1)
    assert main(["sync"]) == 0
    assert [r.status for r in fake_bitwarden.requests_to("import")] == [429, 200]
    summary = [e for e in _log_events(capsys.readouterr().err) if e["event"] == "summary"][-1]
    assert summary["retries"] == 1


def test_token_expiring_mid_run_is_fetched_again(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    fake_bitwarden.add_member("gone@example.com", external_id="gone")
    fake_bitwarden.fail("list_groups", status=401, times=1)  # the token "expired" here
    assert main(["sync", "--allow-removals", "1"]) == 0
    assert fake_bitwarden.tokens_issued == 2
    gone = fake_bitwarden.find_member(external_id="gone")
    assert gone is not None and gone.status == STATUS_REVOKED


def test_empty_directory_with_synced_members_stops(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    fake_bitwarden.add_member("a@example.com", external_id="a")
    _directory(env["directory"], [])
    assert main(["sync", "--allow-removals", "5"]) == 6
    assert "returned no users" in capsys.readouterr().err
    assert fake_bitwarden.requests_to("revoke_member") == []


def test_duplicate_emails_exit_3_and_send_nothing(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    _directory(env["directory"], [_u(1), {"id": "other", "email": "USER1@example.com"}])
    assert main(["sync"]) == 3
    assert "Emails must be unique" in capsys.readouterr().err
    assert fake_bitwarden.writes() == []  # a first run may have read the organization
    assert {r.endpoint for r in fake_bitwarden.requests} <= {"token", "list_members", "list_groups"}


def test_unusable_users_are_skipped_named_and_counted(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, capsys: pytest.CaptureFixture[str]
) -> None:
    _directory(
        env["directory"],
        [
            _u(1),
            {"id": "nomail"},
            {"id": "long", "email": "x" * 251 + "@e.com"},
            {"id": "bad", "email": "not-an-email"},
            {"id": "spaced", "email": "john smith@example.com"},
        ],
    )
    assert main(["sync"]) == 0  # one bad entry blocks nobody
    (imp,) = fake_bitwarden.requests_to("import")
    assert [m["externalId"] for m in imp.body["members"]] == ["u1"]
    events = _log_events(capsys.readouterr().err)
    summary = [e for e in events if e["event"] == "summary"][-1]
    assert summary["skipped"] == {"no_email": 1, "email_too_long": 1, "invalid_email": 2}
    named = {(e["entry"], e["email"], e["reason"]) for e in events if e["event"] == "entry_skipped"}
    assert named == {
        ("long", "x" * 251 + "@e.com", "email_too_long"),
        ("bad", "not-an-email", "invalid_email"),
        ("spaced", "john smith@example.com", "invalid_email"),
    }
    assert all(e["level"] == "warning" for e in events if e["event"] == "entry_skipped")


def test_every_secret_setting_is_masked_in_logs(
    env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bwsync.redact import settings_secrets
    from bwsync.settings import load_settings

    # Other sources' secrets, as one Kubernetes Secret shared by several profiles mounts them
    # (as variables, another source's settings are refused: a wrong BWSYNC_SOURCE).
    secrets = Path(os.environ["BWSYNC_SECRETS_DIR"])
    (secrets / "bwsync_okta__token").write_text("okta-token-value\n")
    (secrets / "bwsync_onelogin__client_secret").write_text("onelogin-secret-value\n")
    (secrets / "bwsync_entra__client_secret").write_text("entra-secret-value\n")
    found = set(settings_secrets(load_settings()))
    assert {"okta-token-value", "onelogin-secret-value", "entra-secret-value"} <= found


def test_a_protected_admin_does_not_make_every_run_look_changed(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden
) -> None:
    # The admin's deleted entry is left out of the import; the next run must still find the
    # directory unchanged and send nothing.
    fake_bitwarden.add_member("user1@example.com", external_id="u1", type=TYPE_ADMIN)
    _directory(env["directory"], [_u(1, deleted=True), _u(2)])
    assert main(["sync"]) == 0
    fake_bitwarden.clear_requests()
    assert main(["sync"]) == 0
    assert fake_bitwarden.requests == []


def test_a_batched_import_sends_only_the_batches_that_change_something(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__LARGE_IMPORT", "true")
    users = [_u(i) for i in range(4500)]  # member batches of 2,000, 2,000 and 500
    staff = [{"id": "g1", "name": "Staff", "members": ["u1", "u4499"]}]
    _directory(env["directory"], users, staff)
    assert main(["sync"]) == 0
    assert len(fake_bitwarden.requests_to("import")) == 4  # 3 member batches, 1 group batch

    fake_bitwarden.clear_requests()
    _directory(env["directory"], [*users, _u(4500)], staff)  # one newcomer, in the last batch
    capsys.readouterr()
    assert main(["sync"]) == 0
    bodies = [r.body for r in fake_bitwarden.requests_to("import")]
    assert [(len(b["members"]), len(b["groups"])) for b in bodies] == [(501, 0), (0, 1)]
    assert bodies[0]["members"][-1]["externalId"] == "u4500"
    assert len(fake_bitwarden.members) == 4501  # the organization is in step all the same
    summary = [e for e in _log_events(capsys.readouterr().err) if e["event"] == "summary"][-1]
    assert summary["unsent_batches"] == 2
    assert summary["applied"] == {"invite": 1}

    fake_bitwarden.clear_requests()
    assert main(["sync", "--force"]) == 0  # --force sends every batch, as bwdc does
    assert len(fake_bitwarden.requests_to("import")) == 4


def test_a_member_removed_by_hand_brings_its_batch_back(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__LARGE_IMPORT", "true")
    users = [_u(i) for i in range(4500)]
    _directory(env["directory"], users)
    assert main(["sync"]) == 0
    reconciled = _state(env)["last_full_reconcile"]
    gone = fake_bitwarden.find_member(external_id="u2100")  # in the second batch
    assert gone is not None
    fake_bitwarden.remove_member(gone)
    fake_bitwarden.clear_requests()
    _directory(env["directory"], [*users, _u(4500)])  # and a newcomer, in the third batch
    assert main(["sync"]) == 0
    imports = [r.body["members"] for r in fake_bitwarden.requests_to("import")]
    assert [m[0]["externalId"] for m in imports] == ["u2000", "u4000"]
    assert fake_bitwarden.find_member(external_id="u2100") is not None  # invited again
    # batches were left out: not a full apply, so a due reconcile stays due
    assert _state(env)["last_full_reconcile"] == reconciled


# -- an entry left out for its email is still in the directory ------------------------------


def _twenty_in_staff(env: dict[str, Path], bad: dict[int, str] | None = None) -> None:
    """u1..u20 in one group; ``bad`` gives some of them an email the servers refuse."""
    users = [_u(i, email=(bad or {}).get(i, f"user{i}@example.com")) for i in range(1, 21)]
    staff = [{"id": "g1", "name": "Staff", "members": [f"u{i}" for i in range(1, 21)]}]
    _directory(env["directory"], users, staff)


def test_an_entry_left_out_for_its_email_is_not_taken_for_gone(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """u5's email becomes one the servers refuse (the official server would take this one;
    bwdc sends it): the entry is left out of the import, but u5 is still in the directory, so
    remove_missing must not revoke the member, nor take it out of its group."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    _twenty_in_staff(env)
    assert main(["sync"]) == 0
    _twenty_in_staff(env, bad={5: "user..5@example.com"})
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [c for c in plan["changes"] if c["action"] in ("revoke", "remove")] == []
    assert main(["sync"]) == 0
    err = capsys.readouterr().err
    assert '"event":"revoke"' not in err
    (skipped,) = [e for e in _log_events(err) if e["event"] == "entry_skipped"]
    assert skipped["entry"] == "u5"
    m5 = fake_bitwarden.find_member(external_id="u5")
    assert m5 is not None and m5.status != STATUS_REVOKED
    assert fake_bitwarden.requests_to("revoke_member") == []
    assert len(fake_bitwarden.group_member_emails("g1")) == 20


def test_overwrite_would_remove_the_member_of_an_entry_left_out_for_its_email(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under overwrite_existing the server removes every member whose externalId the import
    does not carry: u5's entry is left out for its email, so the run applies nothing (exit 6)
    and names the entry, rather than remove a member who is still in the directory."""
    for i in range(1, 21):  # confirmed members, with master passwords: overwrite may remove them
        fake_bitwarden.add_member(f"user{i}@example.com", external_id=f"u{i}")
    _twenty_in_staff(env)
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    _twenty_in_staff(env, bad={5: "user..5@example.com"})
    fake_bitwarden.clear_requests()
    capsys.readouterr()
    assert main(["sync", "--allow-removals", "5"]) == 6
    err = capsys.readouterr().err
    assert "directory entry u5 (user..5@example.com) is left out of the import" in err
    assert fake_bitwarden.writes() == []
    m5 = fake_bitwarden.find_member(external_id="u5")
    assert m5 is not None and m5.status != STATUS_REVOKED


# -- settings the hash does not cover (review of issue 14, finding 4) --------------------------


def test_turning_remove_missing_on_applies_an_unchanged_directory(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """remove_missing changes the plan, not the import body: the unchanged-hash shortcut must
    not skip the first run with it."""
    fake_bitwarden.add_member("left@example.com", external_id="left")
    assert main(["sync"]) == 0
    fake_bitwarden.clear_requests()
    assert main(["sync"]) == 0
    assert fake_bitwarden.requests == []  # unchanged, same settings: nothing at all
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT", "50")
    capsys.readouterr()
    assert main(["sync"]) == 0
    left = fake_bitwarden.find_member(external_id="left")
    assert left is not None and left.status == STATUS_REVOKED
    events = _log_events(capsys.readouterr().err)
    (full,) = [e for e in events if e["event"] == "full_apply"]
    assert "settings that change the plan" in full["reason"]
    # …and then the shortcut holds again
    fake_bitwarden.clear_requests()
    assert main(["sync"]) == 0
    assert fake_bitwarden.requests == []
    # the removal mode too: the revoked member is now removed
    monkeypatch.setenv("BWSYNC_SYNC__REMOVAL_MODE", "remove")
    assert main(["sync"]) == 0
    assert fake_bitwarden.find_member(external_id="left") is None


def test_switching_stale_groups_to_delete_applies_an_unchanged_directory(
    env: dict[str, Path], fake_bitwarden: FakeBitwarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT", "100")
    assert main(["sync"]) == 0
    old = fake_bitwarden.add_group("Old", external_id="old")
    assert main(["sync", "--force"]) == 0  # emptied (it had no members), kept for review
    assert fake_bitwarden.find_group(external_id="old") is not None
    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", "delete")
    assert main(["sync"]) == 0
    assert fake_bitwarden.find_group(external_id="old") is None, old


# -- what a safety stop tells the admin to do (review of issue 14, finding 7) ------------------


def _final_error(err: str) -> str:
    (line,) = [x for x in err.splitlines() if x.startswith("bwsync: ")]
    return line


def test_the_empty_directory_brake_does_not_suggest_allow_removals(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(20):
        fake_bitwarden.add_member(f"user{i}@example.com", external_id=f"u{i}")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    _directory(env["directory"], [])
    assert main(["sync", "--allow-removals", "20"]) == 6
    line = _final_error(capsys.readouterr().err)
    assert "the directory returned no users" in line
    assert "run once with --allow-removals" not in line
    assert "--allow-removals does not lift this stop" in line
    assert fake_bitwarden.writes() == []


def test_a_hazard_says_what_to_change_not_allow_removals(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_bitwarden.add_member("boss@example.com", external_id="boss", type=TYPE_ADMIN)
    monkeypatch.setenv("BWSYNC_SYNC__PROTECTED_MEMBERS", "boss@example.com")
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    assert main(["sync", "--allow-removals", "5"]) == 6
    line = _final_error(capsys.readouterr().err)
    assert "boss@example.com is in BWSYNC_SYNC__PROTECTED_MEMBERS" in line
    assert "run once with --allow-removals" not in line
    assert "--allow-removals does not lift" in line
    assert fake_bitwarden.find_member(external_id="boss") is not None


def test_a_count_limit_suggests_the_exact_allowance(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(10, 40):
        fake_bitwarden.add_member(f"user{i}@example.com", external_id=f"u{i}")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    assert main(["sync"]) == 6
    line = _final_error(capsys.readouterr().err)
    assert line.endswith("Review the plan (`bwsync plan`); if it is right, run once with "
                         "`bwsync sync --allow-removals 30`")  # fmt: skip


# -- a 404 that is not Vaultwarden's (review of issue 14, finding 9) ---------------------------


@pytest.mark.parametrize("body", [b"", b"<html><body>404 Not Found</body></html>"])
def test_a_404_from_a_proxy_is_an_error_not_a_server_without_lists(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: bytes,
) -> None:
    """An official server behind a proxy that answers 404 for /api/public/members must not be
    taken for a Vaultwarden (whose 404 is Rocket's JSON): the run would judge removals against
    a memory it does not have, and never see the organization."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    fake_bitwarden.fail("list_members", status=404, body=body, times=None)
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    url = f"{fake_bitwarden.api_url}/public/members"
    assert f"HTTP 404 from {url}" in err
    assert "not the JSON 404 Vaultwarden answers" in err
    assert fake_bitwarden.writes() == []
    assert _state(env).get("memory") is None


def test_overwrite_with_user_sync_off_is_refused(
    env: dict[str, Path],
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With user sync off the import carries no members, and overwrite makes the server remove
    every synced member, none of them planned or counted (bwdc sends the same body)."""
    for i in range(1, 4):
        fake_bitwarden.add_member(f"user{i}@example.com", external_id=f"u{i}")
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__USERS", "false")
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    fake_bitwarden.clear_requests()
    assert main(["sync"]) == 2
    err = capsys.readouterr().err
    assert "BWSYNC_SYNC__OVERWRITE_EXISTING=true with BWSYNC_SYNC__USERS=false" in err
    assert fake_bitwarden.writes() == []
    assert len(fake_bitwarden.members) == 3
