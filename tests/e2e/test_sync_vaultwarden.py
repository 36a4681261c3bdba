"""Issue 14 end to end: the real ``bwsync`` CLI, the file source and a state file, against the
Bitwarden stand-in in Vaultwarden mode (``reference/vaultwarden.md``: no list endpoints,
members by email, ``deleted`` revokes, overwrite deletes, the import not atomic, the login
rate limit). One test per scenario of the issue, each checking the exit code and what the
organization holds afterwards."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from bwsync import stop
from bwsync.cli import main
from bwsync.model import (
    STATUS_ACCEPTED,
    STATUS_CONFIRMED,
    STATUS_INVITED,
    STATUS_REVOKED,
    TYPE_ADMIN,
)
from tests.fixtures.bitwarden import FakeFactory
from tests.fixtures.clock import FakeClock
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.bitwarden.vaultwarden import vw_error

OWNER = "owner@example.com"


def _u(i: int | str, **kw: Any) -> dict[str, Any]:
    return {"id": f"u{i}", "email": f"user{i}@example.com", **kw}


class Env:
    """The directory file, the state file, the stand-in and its clock."""

    def __init__(self, tmp_path: Path, fake: FakeBitwarden, clock: FakeClock) -> None:
        self.directory = tmp_path / "dir.json"
        self.state = tmp_path / "state.json"
        self.fake = fake
        self.clock = clock

    def write(self, users: list[dict[str, Any]], groups: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        self.directory.write_bytes(orjson.dumps({"users": users, "groups": list(groups)}))

    def status(self) -> dict[str, int]:
        """email → status of every member but the owner."""
        return {m.email or "": m.status for m in self.fake.members if m.email != OWNER}

    def memory_counts(self) -> tuple[int, int]:
        sets = json.loads(self.state.read_text())["memory"]["sets"]
        return sets["members"]["count"], sets["revoked"]["count"]


@pytest.fixture
def vw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_bitwarden_factory: FakeFactory) -> Env:
    clock = FakeClock(1_000_000.0)
    fake = fake_bitwarden_factory(vaultwarden=True, groups_enabled=True, clock=clock)
    fake.add_owner(OWNER)
    env = Env(tmp_path, fake, clock)
    for k, v in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(env.directory),
        "BWSYNC_BITWARDEN__SERVER": fake.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "1",
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(env.state),
        "BWSYNC_LOG__FORMAT": "json",
        "BWSYNC_SECRETS_DIR": str(tmp_path / "no-secrets"),
    }.items():
        monkeypatch.setenv(k, v)

    # bwsync's retry waits pass on the stand-in's clock, not the wall clock.
    monkeypatch.setattr(stop, "sleep", clock.sleep)
    return env


def _events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _summary(err: str) -> dict[str, Any]:
    return [e for e in _events(err) if e["event"] == "summary"][-1]


def _twenty(env: Env) -> None:
    """20 users; 4 groups, one nested: memberships 15/10/5/5 once flattened."""
    env.write(
        [_u(i) for i in range(1, 21)],
        [
            {"id": "all", "name": "All", "members": [f"u{i}" for i in range(1, 11)],
             "groups": ["ops"]},
            {"id": "eng", "name": "Eng", "members": [f"u{i}" for i in range(1, 11)]},
            {"id": "ops", "name": "Ops", "members": [f"u{i}" for i in range(11, 16)]},
            {"id": "hr", "name": "HR", "members": [f"u{i}" for i in range(16, 21)]},
        ],
    )  # fmt: skip


def _sizes(fake: FakeBitwarden) -> list[int]:
    return [len(fake.group_member_emails(g)) for g in ("all", "eng", "ops", "hr")]


# -- 1. OVERWRITE_EXISTING=true with an empty directory ----------------------------------------


def test_overwrite_without_memory_is_refused(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    vw.fake.add_member("synced-by-bwdc@example.com", external_id="bwdc-1")
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([])
    assert main(["sync"]) == 2
    err = capsys.readouterr().err
    assert "no memory of the members it synced there yet" in err
    assert vw.fake.requests_to("import") == []
    assert vw.status() == {"synced-by-bwdc@example.com": STATUS_CONFIRMED}


def test_overwrite_with_an_empty_directory_stops_at_the_brake(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    assert vw.memory_counts() == (20, 0)
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([])
    vw.fake.clear_requests()
    assert main(["sync"]) == 6
    err = capsys.readouterr().err
    assert "the directory returned no users while the organization has 20 synced members" in err
    assert "20 removals/revocations exceed BWSYNC_SYNC__MAX_REMOVALS=25" not in err  # 20 ≤ 25
    assert "20 removals/revocations are 100.0% of 20 synced members" in err
    assert vw.fake.requests_to("import") == []
    assert vw.status() == {f"user{i}@example.com": STATUS_INVITED for i in range(1, 21)}
    assert vw.memory_counts() == (20, 0)


def test_overwrite_with_5_users_of_2002_stops_at_the_limits(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vw.write([_u(i) for i in range(2002)])
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([_u(i) for i in range(5)])
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 6
    plan = json.loads(capsys.readouterr().out)
    removed = [c for c in plan["changes"] if c["action"] == "remove"]
    assert len(removed) == 1997
    assert "overwrite_existing is on: the server deletes it" in removed[0]["reason"]
    assert main(["sync"]) == 6
    assert (
        "1997 removals/revocations exceed BWSYNC_SYNC__MAX_REMOVALS=25" in capsys.readouterr().err
    )
    assert len(vw.fake.requests_to("import")) == 1  # the first sync only
    assert len(vw.status()) == 2002


def test_overwrite_deletes_what_the_plan_counted_and_keeps_the_revoked_revoked(
    vw: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    vw.write([_u(i) for i in range(1, 6)] + [_u(6, deleted=True)])
    vw.fake.add_member("user6@example.com", external_id="u6")
    # the percentage on every plan, however small (by default 1 of 6 would pass)
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT_ABOVE", "0")
    # a first run: user6's deleted entry is a revocation bwsync cannot rule out (1 of 6)
    assert main(["sync"]) == 6
    assert main(["sync", "--allow-removals", "1"]) == 0
    assert vw.status()["user6@example.com"] == STATUS_REVOKED
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([_u(i) for i in range(1, 5)])  # user5 gone, user6's tombstone gone
    assert main(["sync", "--allow-removals", "1"]) == 0
    # user5 deleted by the server's overwrite, as planned; user6 sent as deleted: still revoked
    assert vw.status() == {
        **{f"user{i}@example.com": STATUS_INVITED for i in range(1, 5)},
        "user6@example.com": STATUS_REVOKED,
    }
    assert vw.memory_counts() == (4, 1)


# -- 2. and 3. REMOVE_MISSING ------------------------------------------------------------------


def test_15_of_20_gone_stops_at_the_limits_and_sends_nothing(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    assert _sizes(vw.fake) == [15, 10, 5, 5]
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    vw.write(
        [_u(i) for i in range(1, 6)],
        [{"id": "all", "name": "All", "members": ["u1", "u2", "u3"]}],
    )
    vw.fake.clear_requests()
    assert main(["sync"]) == 6
    err = capsys.readouterr().err
    assert "15 removals/revocations are 75.0% of 20 synced members" in err
    assert err.count('"event":"would revoke"') == 15
    assert vw.fake.requests_to("import") == []
    assert _sizes(vw.fake) == [15, 10, 5, 5]  # memberships untouched
    assert set(vw.status().values()) == {STATUS_INVITED}

    assert main(["sync", "--allow-removals", "15"]) == 0
    status = vw.status()
    assert [e for e, s in status.items() if s == STATUS_REVOKED] == [
        f"user{i}@example.com" for i in range(6, 21)
    ]
    assert vw.memory_counts() == (5, 15)


def test_remove_missing_revokes_the_users_who_left_and_says_so(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    vw.write([_u(i) for i in range(1, 19)])  # user19 and user20 left
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(c["action"], c["subject"], c["reason"]) for c in plan["changes"]] == [
        ("revoke", "user19@example.com", "gone from the directory"),
        ("revoke", "user20@example.com", "gone from the directory"),
    ]
    sent = plan["send"]["members"]
    assert {
        "email": "user20@example.com",
        "externalId": "user20@example.com",
        "deleted": True,
    } in sent
    assert main(["sync"]) == 0
    err = capsys.readouterr().err
    assert '"change":"revoke user19@example.com (gone from the directory)"' in err
    status = vw.status()
    assert status["user19@example.com"] == status["user20@example.com"] == STATUS_REVOKED
    assert sum(s == STATUS_INVITED for s in status.values()) == 18
    # back in the directory: restored, with its own externalId again
    vw.write([_u(i) for i in range(1, 21)])
    assert main(["sync"]) == 0
    assert set(vw.status().values()) == {STATUS_INVITED}
    assert vw.fake.find_member(email="user20@example.com").external_id == "u20"  # type: ignore[union-attr]
    assert vw.memory_counts() == (20, 0)


def test_remove_mode_is_refused_on_a_server_that_revokes(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVAL_MODE", "remove")
    vw.write([_u(i) for i in range(1, 20)])
    assert main(["sync"]) == 2
    assert "BWSYNC_SYNC__REMOVAL_MODE=remove: this server cannot list members" in (
        capsys.readouterr().err
    )
    assert len(vw.status()) == 20 and len(vw.fake.requests_to("import")) == 1


# -- 4. an admin marked deleted ----------------------------------------------------------------


def test_an_admin_marked_deleted_is_protected_only_through_the_list(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    admin = vw.fake.add_admin("user1@example.com")  # an admin, synced from the directory too
    assert main(["sync"]) == 0
    assert vw.fake.member(admin.id).external_id == "u1"  # type: ignore[union-attr]
    vw.write([_u(1, deleted=True)] + [_u(i) for i in range(2, 21)])
    capsys.readouterr()
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "owners and admins are protected from revocation and removal only through " in out
    monkeypatch.setenv("BWSYNC_SYNC__PROTECTED_MEMBERS", "USER1@example.com")
    assert main(["plan", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert any("only through BWSYNC_SYNC__PROTECTED_MEMBERS (1 listed)" in n for n in plan["notes"])
    assert plan["changes"] == [
        {
            "action": "skip",
            "subject": "user1@example.com",
            "externalId": "u1",
            "reason": "deleted in the directory; protected by BWSYNC_SYNC__PROTECTED_MEMBERS",
            "reasonCode": "deleted_protected",
        }
    ]
    assert main(["sync"]) == 0
    assert vw.fake.member(admin.id).status == STATUS_CONFIRMED  # type: ignore[union-attr]
    sent = vw.fake.requests_to("import")[-1].body["members"]
    assert all(m["email"] != "user1@example.com" for m in sent)


def test_without_the_list_an_admin_marked_deleted_is_revoked_and_counted(vw: Env) -> None:
    _twenty(vw)
    admin = vw.fake.add_admin("user1@example.com")
    assert main(["sync"]) == 0
    vw.write([_u(1, deleted=True)] + [_u(i) for i in range(2, 21)])
    assert main(["sync"]) == 0  # 1 revocation: 5 % of 20, under both limits
    revoked = vw.fake.member(admin.id)
    assert revoked is not None and (revoked.type, revoked.status) == (TYPE_ADMIN, STATUS_REVOKED)


# -- 5. a numeric id ---------------------------------------------------------------------------


def test_a_numeric_id_is_sent_as_a_string(vw: Env) -> None:
    vw.write(
        [{"id": 9001, "email": "num@example.com"}, _u(1)],
        [{"id": 7, "name": "Seven", "members": [9001, "u1"]}],
    )
    assert main(["sync"]) == 0
    body = vw.fake.requests_to("import")[0].body
    assert body["members"][0] == {
        "email": "num@example.com",
        "externalId": "9001",
        "deleted": False,
    }
    assert body["groups"] == [
        {"name": "Seven", "externalId": "7", "memberExternalIds": ["9001", "u1"]}
    ]
    assert vw.fake.find_member(email="num@example.com").external_id == "9001"  # type: ignore[union-attr]
    assert vw.fake.group_member_emails("7") == {"num@example.com", "user1@example.com"}


# -- 6. one invalid email ----------------------------------------------------------------------


def test_one_invalid_email_blocks_nobody(
    vw: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    textfile = tmp_path / "bwsync.prom"
    monkeypatch.setenv("BWSYNC_METRICS__TEXTFILE_PATH", str(textfile))
    vw.write(
        [_u(1), {"id": "bad", "email": "not-an-email"}, _u(2)],
        [{"id": "g", "name": "G", "members": ["u1", "bad", "u2"]}],
    )
    assert main(["sync"]) == 0
    err = capsys.readouterr().err
    summary = _summary(err)
    assert summary["skipped"] == {"invalid_email": 1}
    assert summary["sent"] == {"members": 2, "groups": 1}
    (warning,) = [e for e in _events(err) if e["event"] == "entry_skipped"]
    assert (warning["entry"], warning["email"]) == ("bad", "not-an-email")
    assert vw.status() == {
        "user1@example.com": STATUS_INVITED,
        "user2@example.com": STATUS_INVITED,
    }
    assert vw.fake.group_member_emails("g") == {"user1@example.com", "user2@example.com"}
    metrics = textfile.read_text()
    assert re.search(r'bwsync_skipped_entries\{[^}]*reason="invalid_email"[^}]*\} 1\.0', metrics)


def test_what_vaultwarden_refuses_half_way_is_reported_once(
    vw: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Should the server still refuse an entry (here one forced on it), its long message is
    printed once, whole, and the next run sends everything again."""
    vw.write([_u(1)])
    long_email = "x" * 60 + "@" + "y" * 200 + ".example"
    message = f"User email {long_email} is not a valid email address"
    vw.fake.fail("import", status=400, body=vw_error(400, message).body)
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    final = [line for line in err.splitlines() if line.startswith("bwsync: ")]
    assert len(final) == 1 and final[0].count(message) == 1 and "(body)" not in final[0]
    assert main(["sync"]) == 0
    assert vw.status() == {"user1@example.com": STATUS_INVITED}


# -- 7. twelve `bwsync check` runs in a row ----------------------------------------------------


def test_twelve_checks_in_a_row_wait_out_the_login_rate_limit(
    vw: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    started = vw.clock.now
    codes = [main(["check"]) for _ in range(12)]
    assert codes == [0] * 12
    err = capsys.readouterr().err
    waits = [e for e in _events(err) if e["event"] == "login_rate_limited"]
    assert waits and "waiting for the server's login rate limit" in waits[0]["note"]
    # the fixture's token (none), 12 checks: 10 at once, then one a minute
    assert vw.clock.now - started >= 60
    assert vw.fake.tokens_issued == 12


def test_a_login_rate_limit_outlasting_the_wait_fails_and_says_so(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    monkeypatch.setenv("BWSYNC_BITWARDEN__LOGIN_RATE_LIMIT_WAIT", "30")
    assert [main(["check"]) for _ in range(10)] == [0] * 10
    capsys.readouterr()
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert "HTTP 429" in err and "Too many login requests" in err
    assert "gave up after waiting 30s for the server's login rate limit" in err
    assert vw.fake.requests_to("import") == []


# -- 8. a wrong base path ----------------------------------------------------------------------


def test_a_wrong_path_says_there_is_no_identity_endpoint(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    wrong = vw.fake.base_url + "/vault"
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", wrong)
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert (
        f"bwsync: Bitwarden token failed: there is no identity endpoint at "
        f"{wrong}/identity/connect/token (HTTP 404): check BWSYNC_BITWARDEN__SERVER={wrong}"
    ) in err
    assert "refused the organization API key" not in err


# -- the memory across runs --------------------------------------------------------------------


def test_state_show_counts_the_memory_and_clear_forgets_it(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    capsys.readouterr()
    assert main(["state", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["memory"]["members"] == 20 and shown["memory"]["revoked"] == 0
    assert "user1@example.com" not in json.dumps(shown)
    assert main(["state", "clear"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    assert main(["sync"]) == 2  # no memory any more: the first-run rule again


# -- an entry left out for its email (review of issue 14, finding 1) ---------------------------


def _twenty_with(
    env: Env, *, bad: dict[int, str] | None = None, gone: tuple[int, ...] = ()
) -> None:
    """``_twenty``'s users and groups, some given an email the servers refuse, some gone."""
    users = [
        _u(i, email=(bad or {}).get(i, f"user{i}@example.com"))
        for i in range(1, 21)
        if i not in gone
    ]
    env.write(users, [{"id": "all", "name": "All", "members": [f"u{i}" for i in range(1, 21)]}])


def test_an_entry_left_out_for_its_email_is_not_revoked_as_gone(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Vaultwarden's memory holds emails: u5's email turning invalid looks like user5@ leaving.
    bwsync cannot tell which remembered member the entry is, so it revokes nobody it cannot
    tell apart from that entry (here: user5@ and user19@, who left in the same run), says so,
    and revokes user19@ once the entry is fixed."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    _twenty_with(vw)
    assert main(["sync"]) == 0
    _twenty_with(vw, bad={5: "user..5@example.com"}, gone=(19,))
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [c for c in plan["changes"] if c["action"] in ("revoke", "remove")] == []
    held = {c["subject"]: c["reason"] for c in plan["changes"] if c["action"] == "skip"}
    assert set(held) == {"user5@example.com", "user19@example.com"}
    assert "directory entry u5 (left out for its email)" in held["user5@example.com"]
    assert any("not revoked" in n and "u5" in n for n in plan["notes"])
    assert main(["sync"]) == 0
    assert set(vw.status().values()) == {STATUS_INVITED}
    assert len(vw.fake.group_member_emails("all")) == 20
    # still held on the next runs while the entry is left out ...
    assert main(["sync", "--force"]) == 0
    assert set(vw.status().values()) == {STATUS_INVITED}
    # ... and judged again once it is fixed: user19 left, user5 did not
    _twenty_with(vw, gone=(19,))
    assert main(["sync"]) == 0
    status = vw.status()
    assert status["user19@example.com"] == STATUS_REVOKED
    assert status["user5@example.com"] == STATUS_INVITED
    assert vw.memory_counts() == (19, 1)


def test_a_later_leaver_is_revoked_while_an_old_entry_stays_left_out(
    vw: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry left out run after run holds back only the members that were absent when it
    was first left out: whoever leaves later is revoked as usual."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    _twenty_with(vw)
    assert main(["sync"]) == 0
    _twenty_with(vw, bad={5: "user..5@example.com"})
    assert main(["sync"]) == 0
    _twenty_with(vw, bad={5: "user..5@example.com"}, gone=(19,))
    assert main(["sync"]) == 0
    status = vw.status()
    assert status["user19@example.com"] == STATUS_REVOKED
    assert status["user5@example.com"] == STATUS_INVITED


def test_overwrite_stops_for_a_member_that_may_be_an_entry_left_out(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty_with(vw)
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    _twenty_with(vw, bad={5: "user..5@example.com"})
    vw.fake.clear_requests()
    capsys.readouterr()
    assert main(["sync", "--allow-removals", "5"]) == 6
    err = capsys.readouterr().err
    assert "user5@example.com may be directory entry u5 (left out for its email)" in err
    assert vw.fake.requests_to("import") == []
    assert len(vw.status()) == 20


# -- entries marked deleted without a memory (finding 2) ---------------------------------------


def test_without_a_memory_entries_marked_deleted_count_against_the_limits(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first run (no memory yet) against an organization bwdc filled: every directory user
    disabled, REMOVE_DISABLED on. Each entry goes out as deleted and Vaultwarden revokes the
    member with its email, admins included: bwsync counts each as a revocation it cannot rule
    out, so the limits stop the run (exit 6) instead of revoking all 21."""
    for i in range(1, 21):
        vw.fake.add_member(f"user{i}@example.com", external_id=f"u{i}")
    admin = vw.fake.add_admin("admin@example.com", external_id="adm")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_DISABLED", "true")
    vw.write([_u(i, disabled=True) for i in range(1, 21)]
             + [{"id": "adm", "email": "admin@example.com", "disabled": True}])  # fmt: skip
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 6
    plan = json.loads(capsys.readouterr().out)
    revokes = [c for c in plan["changes"] if c["action"] == "revoke"]
    assert len(revokes) == 21
    assert "the server revokes a member with this email if it has one" in revokes[0]["reason"]
    assert main(["sync"]) == 6
    err = capsys.readouterr().err
    assert "21 removals/revocations are 100.0% of 21" in err
    assert vw.fake.requests_to("import") == []
    assert set(vw.status().values()) == {STATUS_CONFIRMED}
    assert vw.fake.member(admin.id).status == STATUS_CONFIRMED  # type: ignore[union-attr]
    # reviewed and allowed once: revoked, and remembered as revoked
    assert main(["sync", "--allow-removals", "21"]) == 0
    assert set(vw.status().values()) == {STATUS_REVOKED}
    assert vw.memory_counts() == (0, 21)
    # the next runs do not count them again
    vw.write([_u(i, disabled=True) for i in range(1, 21)]
             + [{"id": "adm", "email": "admin@example.com", "disabled": True}, _u(21)])  # fmt: skip
    assert main(["sync"]) == 0


def test_with_a_memory_entries_marked_deleted_for_unknown_emails_are_counted(
    vw: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members bwsync never synced (added by hand, or by bwdc) whose directory entries are
    marked deleted: Vaultwarden revokes them by email; the plan shows and counts them (3 of
    20 synced members: over 10 %, with the percentage on every plan)."""
    monkeypatch.setenv("BWSYNC_SYNC__MAX_REMOVAL_PERCENT_ABOVE", "0")
    _twenty(vw)
    assert main(["sync"]) == 0
    hand = [vw.fake.add_admin("boss@example.com")] + [
        vw.fake.add_member(f"hand{i}@example.com") for i in (1, 2)
    ]
    users = [_u(i) for i in range(1, 21)]
    vw.write(
        users
        + [{"id": "boss", "email": "boss@example.com", "deleted": True}]
        + [{"id": f"h{i}", "email": f"hand{i}@example.com", "deleted": True} for i in (1, 2)]
    )
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 6
    plan = json.loads(capsys.readouterr().out)
    assert [(c["action"], c["subject"]) for c in plan["changes"]] == [
        ("revoke", "boss@example.com"),
        ("revoke", "hand1@example.com"),
        ("revoke", "hand2@example.com"),
    ]
    assert main(["sync"]) == 6
    assert "3 removals/revocations are 15.0% of 20 synced members" in capsys.readouterr().err
    assert len(vw.fake.requests_to("import")) == 1  # the first sync only
    assert {vw.fake.member(m.id).status for m in hand} == {STATUS_CONFIRMED}  # type: ignore[union-attr]


# -- protected accounts under overwrite (finding 3) --------------------------------------------


def test_overwrite_stops_for_a_protected_account_bwsync_never_synced(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A break-glass admin whose externalId bwdc set long ago, not in the directory: bwsync
    cannot tell whether it carries an externalId, which overwrite deletes for, so a protected
    account without an active entry stops the run."""
    _twenty(vw)
    glass = vw.fake.add_admin("breakglass@example.com", external_id="bwdc-glass")
    monkeypatch.setenv("BWSYNC_SYNC__PROTECTED_MEMBERS", "breakglass@example.com")
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([_u(i) for i in range(1, 21)])
    capsys.readouterr()
    assert main(["sync"]) == 6
    assert (
        "breakglass@example.com is in BWSYNC_SYNC__PROTECTED_MEMBERS, but has no active entry"
        in capsys.readouterr().err
    )
    assert len(vw.fake.requests_to("import")) == 1
    assert vw.fake.member(glass.id) is not None


def test_overwrite_stops_for_a_protected_account_marked_deleted(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A protected entry marked deleted is never sent, so never remembered; overwrite would
    delete its member all the same."""
    boss = vw.fake.add_admin("boss@example.com", external_id="boss")
    monkeypatch.setenv("BWSYNC_SYNC__PROTECTED_MEMBERS", " Boss@Example.com ")
    users = [_u(i) for i in range(1, 21)]
    vw.write([*users, {"id": "boss", "email": "boss@example.com", "deleted": True}])
    assert main(["sync"]) == 0
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([*users, {"id": "boss", "email": "Boss@example.com", "deleted": True}])
    capsys.readouterr()
    assert main(["sync"]) == 6
    assert "boss@example.com is in BWSYNC_SYNC__PROTECTED_MEMBERS" in capsys.readouterr().err
    assert vw.fake.member(boss.id).status == STATUS_CONFIRMED  # type: ignore[union-attr]


# -- a state written before the memory existed (finding 4) ------------------------------------


def _as_version_1(env: Env) -> None:
    """The state as a bwsync without the memory (state version 1) left it: the hash only."""
    doc = json.loads(env.state.read_text())
    kept = {k: doc[k] for k in ("hash", "last_success", "last_success_timestamp", "history")}
    env.state.write_text(json.dumps({**kept, "version": 1, "delta": {}}))


def test_after_upgrading_from_version_1_the_first_run_remembers_the_members(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """R3: a version-1 state and an unchanged directory. Skipping the run would leave bwsync
    without a memory: whoever leaves before the next change is never revoked."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    _twenty(vw)
    assert main(["sync"]) == 0
    _as_version_1(vw)
    vw.fake.clear_requests()
    capsys.readouterr()
    assert main(["sync"]) == 0
    assert len(vw.fake.requests_to("import")) == 1  # applied in full, once
    assert vw.memory_counts() == (20, 0)
    assert '"event":"full_apply"' in capsys.readouterr().err
    vw.write([_u(i) for i in range(1, 20)])  # user20 leaves
    assert main(["sync"]) == 0
    assert vw.status()["user20@example.com"] == STATUS_REVOKED


def test_overwrite_after_upgrading_says_how_to_get_a_memory_and_that_works(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """R7: refused for want of a memory; one run without overwrite must then record it, even
    though the directory did not change."""
    _twenty(vw)
    assert main(["sync"]) == 0
    _as_version_1(vw)
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    assert main(["sync"]) == 2
    assert "Run `bwsync sync --force` once without OVERWRITE_EXISTING" in capsys.readouterr().err
    monkeypatch.delenv("BWSYNC_SYNC__OVERWRITE_EXISTING")
    assert main(["sync"]) == 0  # without --force too: the state has no fingerprint
    assert vw.memory_counts() == (20, 0)
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    vw.write([_u(i) for i in range(1, 20)])
    assert main(["sync"]) == 0  # 1 deletion of 20 members: within the limits, counted
    assert "user20@example.com" not in vw.status()


# -- ways the memory went missing (finding 5) --------------------------------------------------


@pytest.mark.parametrize("setting", ["REMOVE_MISSING", "OVERWRITE_EXISTING"])
def test_removals_without_a_state_to_remember_in_are_refused(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], setting: str
) -> None:
    """State backend none keeps no memory: remove_missing would never find anyone gone, and
    overwrite would be refused for good. Said at once (exit 2), and by `check`."""
    _twenty(vw)
    monkeypatch.setenv("BWSYNC_STATE__BACKEND", "none")
    monkeypatch.setenv(f"BWSYNC_SYNC__{setting}", "true")
    assert main(["sync"]) == 2
    err = capsys.readouterr().err
    assert "BWSYNC_STATE__BACKEND=none" in err and f"BWSYNC_SYNC__{setting}" in err
    assert vw.fake.requests_to("import") == []
    assert main(["check"]) == 2
    out = capsys.readouterr().out
    assert "FAIL  state: BWSYNC_STATE__BACKEND=none" in out


def test_a_new_server_address_keeps_the_memory(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The memory is of the organization, not of the URL it was reached at: moving Vaultwarden
    from http://vaultwarden:80 to https://vault.example.com must not make every run a first
    run (here the state as it was written at the old address)."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    _twenty(vw)
    assert main(["sync"]) == 0
    doc = json.loads(vw.state.read_text())
    doc["memory"]["scope"] = f"http://vaultwarden:80/api organization {vw.fake.org_id}"
    vw.state.write_text(json.dumps(doc))
    vw.write([_u(i) for i in range(1, 20)])  # user20 leaves
    assert main(["sync"]) == 0
    assert vw.status()["user20@example.com"] == STATUS_REVOKED
    assert json.loads(vw.state.read_text())["memory"]["scope"] == (f"organization {vw.fake.org_id}")


def test_a_memory_of_another_organization_is_ignored_out_loud(
    vw: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    doc = json.loads(vw.state.read_text())
    doc["memory"]["scope"] = "organization 00000000-0000-0000-0000-000000000000"
    vw.state.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["plan", "--output", "json"]) == 0
    captured = capsys.readouterr()
    notes = json.loads(captured.out)["notes"]
    assert any("memory of synced members of another organization" in n for n in notes)
    (warning,) = [e for e in _events(captured.err) if e["event"] == "memory_ignored"]
    assert warning["level"] == "warning"


def test_an_empty_memory_does_not_let_overwrite_through(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first run over a broken, empty directory remembers no member; overwrite would then
    delete the members bwdc synced, none of them counted."""
    for i in range(5):
        vw.fake.add_member(f"bwdc{i}@example.com", external_id=f"bwdc-{i}")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    vw.write([])
    assert main(["sync"]) == 0
    assert vw.memory_counts() == (0, 0)
    monkeypatch.setenv("BWSYNC_SYNC__OVERWRITE_EXISTING", "true")
    capsys.readouterr()
    assert main(["sync"]) == 2
    assert "no memory of the members it synced there yet" in capsys.readouterr().err
    assert len(vw.status()) == 5


# -- addresses in other scripts (finding 6) ----------------------------------------------------


def test_addresses_in_other_scripts_are_synced_as_vaultwarden_takes_them(
    vw: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Vaultwarden's email check takes any alphabetic character (Unicode's Alphabetic
    property: Devanagari vowel signs are marks that count as letters) and refuses the marks
    that are not (Thai's THANTHAKHAT, U+0E4C), and a quoted local part holds ASCII only. bwsync
    sends exactly what it takes: the two good entries are invited, the two others left out,
    and nothing stops the import half-way."""
    vw.write(
        [
            {"id": "ram", "email": "राम@example.com"},
            {"id": "idn", "email": "ram@भारत.com"},
            {"id": "thai", "email": "สมศักดิ์@example.com"},
            {"id": "quoted", "email": '"jörg"@example.com'},
        ]
    )
    assert main(["sync"]) == 0
    err = capsys.readouterr().err
    assert _summary(err)["skipped"] == {"invalid_email": 2}
    left_out = {e["entry"] for e in _events(err) if e["event"] == "entry_skipped"}
    assert left_out == {"thai", "quoted"}
    assert vw.status() == {"राम@example.com": STATUS_INVITED, "ram@भारत.com": STATUS_INVITED}


# -- the README's other Vaultwarden points, end to end (finding 9) ----------------------------


def test_an_unchanged_directory_sends_nothing(vw: Env) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    vw.fake.clear_requests()
    assert main(["sync"]) == 0
    assert vw.fake.requests == []  # not even a token: the login rate limit is spared too
    assert json.loads(vw.state.read_text())["last_run"]["result"] == "no_change"


def test_a_renamed_group_keeps_its_old_name_and_its_members(vw: Env) -> None:
    _twenty(vw)
    assert main(["sync"]) == 0
    vw.write(
        [_u(i) for i in range(1, 21)],
        [{"id": "hr", "name": "People", "members": ["u16", "u17"]}],
    )
    assert main(["sync"]) == 0
    group = vw.fake.find_group(external_id="hr")
    assert group is not None and group.name == "HR"  # Vaultwarden does not rename
    assert vw.fake.group_member_emails("hr") == {"user16@example.com", "user17@example.com"}


def test_without_org_groups_enabled_groups_are_ignored(
    vw: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    vw.fake.groups_enabled = False
    _twenty(vw)
    assert main(["sync"]) == 0
    assert vw.fake.groups == []
    assert len(vw.status()) == 20
    assert _summary(capsys.readouterr().err)["sent"] == {"members": 20, "groups": 4}


def test_without_mail_an_existing_account_is_accepted(vw: Env) -> None:
    vw.fake.mail_enabled = False
    vw.fake.add_account("user1@example.com")
    _twenty(vw)
    assert main(["sync"]) == 0
    status = vw.status()
    assert status["user1@example.com"] == STATUS_ACCEPTED
    assert status["user2@example.com"] == STATUS_INVITED


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BWSYNC_BITWARDEN__CLIENT_SECRET", "not-the-secret", "Incorrect client_secret"),
        (
            "BWSYNC_BITWARDEN__CLIENT_ID",
            "organization.00000000-0000-0000-0000-000000000000",
            "Invalid client_id",
        ),
    ],
)
def test_a_wrong_key_is_exit_4_with_vaultwarden_s_words(
    vw: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    said: str,
) -> None:
    _twenty(vw)
    monkeypatch.setenv(variable, value)
    assert main(["sync"]) == 4
    err = capsys.readouterr().err
    assert "refused the organization API key (HTTP 400" in err and said in err
    assert "not-the-secret" not in err
    assert vw.fake.requests_to("import") == []


def test_revocations_of_a_run_that_failed_half_way_are_not_counted_again(
    vw: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review of issue 19 (finding 5): 2,400 synced, 300 leave; `sync --allow-removals
    300` sends them as deleted in its second import batch, which is accepted, and fails at the
    third (the groups). The next run, without the flag, must not count those 300 revocations
    again (it was refused with exit 6 until someone passed the flag once more): the memory
    records what the accepted batches carried, and only that."""
    monkeypatch.setenv("BWSYNC_SYNC__LARGE_IMPORT", "true")
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    group = {"id": "g", "name": "G", "members": ["u0", "u1"]}
    vw.write([_u(i) for i in range(2400)], [group])
    assert main(["sync"]) == 0
    assert vw.memory_counts() == (2400, 0)
    vw.write([_u(i) for i in range(2100)], [group])
    vw.fake.fail("import", status=400, skip=2)  # import 3/3, the groups
    capsys.readouterr()
    assert main(["sync", "--allow-removals", "300"]) == 4
    assert _summary(capsys.readouterr().err)["sent"] == {"members": 2400, "groups": 0}
    assert sum(s == STATUS_REVOKED for s in vw.status().values()) == 300
    assert vw.memory_counts() == (2100, 300)  # (2400, 0) before: exit 6 next
    assert main(["sync"]) == 0
    summary = _summary(capsys.readouterr().err)
    assert summary["planned"].get("revoke", 0) == 0, summary
    assert vw.memory_counts() == (2100, 300)
    assert sum(s == STATUS_REVOKED for s in vw.status().values()) == 300
