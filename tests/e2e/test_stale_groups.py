"""Groups that leave the directory (issue 21), end to end: the real CLI (``bwsync.cli.main``),
real directories (OpenLDAP slapd, Samba AD, the Google stand-in, a JSON file), the Bitwarden
stand-in over HTTP, a state file.

One scenario per directory: five people; groups ``bw-sales`` (ann, bob), ``bw-ops`` (cid),
``bw-keep`` (cid, dan, eve) and ``all-staff`` (everyone), synced once with ``remove_missing``;
a group made by hand in Bitwarden beside them. Then, in the directory, ``bw-sales`` is renamed
``bw-revenue``, ``bw-ops`` is deleted and a group filter leaves ``all-staff`` out. The plan must
name each stale group with the members losing access through it, the safety limits must stop
the sync (five people lose access: 100 % of the synced members), and an allowed sync must leave
the organization with those groups empty, the renamed one renamed in place where the directory
has stable ids (AD, Google) or re-created where it has DNs (OpenLDAP), and the hand-made group
as it was.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bwsync.cli import main
from tests.fixtures.ldap import SambaAD, Slapd, ad_user, person
from tests.standins.bitwarden import FakeBitwarden

PEOPLE = ("ann", "bob", "cid", "dan", "eve")
GROUPS = {
    "bw-sales": ("ann", "bob"),
    "bw-ops": ("cid",),
    "bw-keep": ("cid", "dan", "eve"),
    "all-staff": PEOPLE,
}


@dataclass
class Directory:
    """A directory under test: the settings that read it and the three changes."""

    env: dict[str, str]
    emails: dict[str, str]
    """Person → the email the directory gives them."""
    rename: Callable[[], None]
    delete: Callable[[], None]
    filter_env: dict[str, str]
    """Settings that leave ``all-staff`` out and keep the ``bw-*`` groups."""
    stable_ids: bool
    """Whether a renamed group keeps its externalId (AD objectGUID, Google ids)."""

    def email(self, who: str) -> str:
        return self.emails[who]


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def plan(self, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, err = self("plan", "--output", "json", *args)
        assert out, err
        return code, json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def _bitwarden_env(fake: FakeBitwarden, tmp_path: Path) -> dict[str, str]:
    return {
        "BWSYNC_BITWARDEN__SERVER": fake.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "1",
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
        "BWSYNC_LOG__FORMAT": "json",
        "BWSYNC_SYNC__REMOVE_MISSING": "true",
    }


def _setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for k, v in values.items():
        monkeypatch.setenv(k, v)


# -- the directories ----------------------------------------------------------------------------


def slapd_directory(slapd: Slapd, **extra_env: str) -> Directory:
    base = slapd.new_tree("stale")
    people, groups = f"ou=people,{base}", f"ou=groups,{base}"
    slapd.add(
        [(f"uid={p},{people}", person(p, mail=f"{p}@example.com")) for p in PEOPLE]
        + [
            (
                f"cn={g},{groups}",
                {
                    "objectClass": "groupOfNames",
                    "cn": g,
                    "member": [f"uid={m},{people}" for m in members],
                },
            )
            for g, members in GROUPS.items()
        ]
    )

    def rename() -> None:
        slapd.rename(f"cn=bw-sales,{groups}", "cn=bw-revenue")

    return Directory(
        env={
            "BWSYNC_SOURCE": "ldap",
            "BWSYNC_LDAP__URL": slapd.url,
            "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
            "BWSYNC_LDAP__BIND_PASSWORD": slapd.bind_password,
            "BWSYNC_LDAP__BASE_DN": base,
            **extra_env,
        },
        emails={p: f"{p}@example.com" for p in PEOPLE},
        rename=rename,
        delete=lambda: slapd.delete(f"cn=bw-ops,{groups}"),
        filter_env={"BWSYNC_LDAP__GROUP_FILTER": "(cn=bw-*)"},
        stable_ids=bool(extra_env),
    )


_ad_trees = iter(range(1000))


def samba_directory(ad: SambaAD) -> Directory:
    """The server is the session's: the OU, the sAMAccountNames and the emails (unique in the
    domain) are this test's own."""
    n = next(_ad_trees)
    ou = f"OU=stale{n},{ad.base_dn}"
    sam = {p: f"stale{n}-{p}" for p in PEOPLE}
    ad.add(
        [(ou, {"objectClass": "organizationalUnit"})]
        + [(f"CN={p},{ou}", ad_user(sam[p], mail=f"{sam[p]}@example.test")) for p in PEOPLE]
        + [
            (f"CN={g},{ou}", {"objectClass": "group", "member": [f"CN={m},{ou}" for m in ms]})
            for g, ms in GROUPS.items()
        ]
    )

    def rename() -> None:
        ad.ldap_tool("ldapmodrdn", "-r", f"CN=bw-sales,{ou}", "CN=bw-revenue")

    return Directory(
        env={
            "BWSYNC_SOURCE": "ldap",
            "BWSYNC_LDAP__URL": ad.ldaps_url,
            "BWSYNC_LDAP__CA_FILE": str(ad.ca_file),
            "BWSYNC_LDAP__BIND_DN": ad.bind_dn,
            "BWSYNC_LDAP__BIND_PASSWORD": ad.bind_password,
            "BWSYNC_LDAP__BASE_DN": ad.base_dn,
            "BWSYNC_LDAP__USER_PATH": ou.split(",", maxsplit=1)[0],
            "BWSYNC_LDAP__GROUP_PATH": ou.split(",", maxsplit=1)[0],
        },
        emails={p: f"{sam[p]}@example.test" for p in PEOPLE},
        rename=rename,
        delete=lambda: ad.delete(f"CN=bw-ops,{ou}"),
        filter_env={"BWSYNC_LDAP__GROUP_FILTER": "(cn=bw-*)"},
        stable_ids=True,
    )


def google_directory(fake_google: Any) -> Directory:
    ids = {p: fake_google.add_user(f"{p}@example.com") for p in PEOPLE}
    gids = {}
    for g, members in GROUPS.items():
        gids[g] = fake_google.add_group(g)
        for m in members:
            fake_google.add_member(gids[g], ids[m])

    def rename() -> None:
        with fake_google._data_lock:
            fake_google.groups[gids["bw-sales"]].name = "bw-revenue"

    def delete() -> None:
        with fake_google._data_lock:
            del fake_google.groups[gids["bw-ops"]]

    return Directory(
        env={
            "BWSYNC_SOURCE": "google",
            "BWSYNC_GOOGLE__CREDENTIALS_FILE": str(fake_google.key_file),
            "BWSYNC_GOOGLE__ADMIN_EMAIL": fake_google.admin_email,
            "BWSYNC_GOOGLE__API_URL": fake_google.base_url,
            "BWSYNC_GOOGLE__CA_FILE": str(fake_google.ca_file),
            # the Workspace admin the key impersonates is a user too: not one of ours
            "BWSYNC_SYNC__USER_FILTER": f"exclude:{fake_google.admin_email}",
        },
        emails={p: f"{p}@example.com" for p in PEOPLE},
        rename=rename,
        delete=delete,
        # a set filter also keeps only the direct members of the kept groups (bwdc §6.2):
        # everyone is in bw-keep or bw-sales, so nobody leaves through it
        filter_env={"BWSYNC_SYNC__GROUP_FILTER": "exclude:all-staff"},
        stable_ids=True,
    )


@pytest.fixture(params=["slapd", "slapd_entryuuid", "samba_ad", "google"])
def directory(request: pytest.FixtureRequest) -> Iterator[Directory]:
    if request.param == "slapd":
        yield slapd_directory(request.getfixturevalue("slapd"))
    elif request.param == "slapd_entryuuid":
        slapd = request.getfixturevalue("slapd")
        yield slapd_directory(slapd, BWSYNC_LDAP__GROUP_ID_ATTRIBUTE="entryUUID")
    elif request.param == "samba_ad":
        yield samba_directory(request.getfixturevalue("samba_ad"))
    else:
        yield google_directory(request.getfixturevalue("fake_google"))


# -- the scenario -------------------------------------------------------------------------------


def _org(fake: FakeBitwarden) -> dict[str, tuple[str, str | None, frozenset[str]]]:
    """Group name → (id, externalId, member emails): what the organization holds."""
    return {
        g.name: (g.id, g.external_id, frozenset(fake.group_member_emails(g))) for g in fake.groups
    }


def test_deleted_filtered_out_and_renamed_groups_stop_granting_access(
    directory: Directory,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    d = directory
    _setenv(monkeypatch, {**d.env, **_bitwarden_env(fake_bitwarden, tmp_path)})
    assert cli("sync")[0] == 0
    first = _org(fake_bitwarden)
    assert {n: m for n, (_, _, m) in first.items()} == {
        g: frozenset(d.email(p) for p in ms) for g, ms in GROUPS.items()
    }
    ann = fake_bitwarden.find_member(email=d.email("ann"))
    cid = fake_bitwarden.find_member(email=d.email("cid"))
    assert ann is not None and cid is not None
    hand = fake_bitwarden.add_group("Made by hand", members=[ann, cid])
    grants = {name: f"c0ffee00-0000-4000-8000-00000000000{i}" for i, name in enumerate(first)}
    for name, collection in grants.items():  # what an admin grants each group by hand
        fake_bitwarden.grant_collection(first[name][0], collection)

    d.rename()
    d.delete()
    _setenv(monkeypatch, d.filter_env)
    code, plan = cli.plan()
    assert code == 6  # five people lose access: 100 % of the synced members
    stale = {
        c["subject"]: c for c in plan["changes"] if c["action"] in ("group_empty", "group_delete")
    }
    expected = {"bw-ops": 1, "all-staff": 5} | ({} if d.stable_ids else {"bw-sales": 2})
    assert {name: c["membersLosingAccess"] for name, c in stale.items()} == expected
    assert all(c["action"] == "group_empty" for c in stale.values())
    assert stale["bw-ops"]["groupId"] == first["bw-ops"][0]
    assert "1 member loses the access it grants" in stale["bw-ops"]["reason"]
    renames = [(c["action"], c["subject"]) for c in plan["changes"] if c["action"] != "group_empty"]
    assert renames == [("group_rename" if d.stable_ids else "group_create", "bw-revenue")]
    (reason,) = plan["safety"]
    assert "5 members losing access (0 removed/revoked, 5 in groups" in reason
    assert "Made by hand" not in json.dumps(plan["changes"])

    # the sync refuses in the same words, and writes nothing
    fake_bitwarden.clear_requests()
    code, _, err = cli("sync")
    assert code == 6 and "5 members losing access" in err
    assert fake_bitwarden.writes() == []
    assert _org(fake_bitwarden) == first | {"Made by hand": _org(fake_bitwarden)["Made by hand"]}

    code, _, err = cli("sync", "--allow-removals", "5")
    assert code == 0, err
    after = _org(fake_bitwarden)
    emails = {p: d.email(p) for p in PEOPLE}
    assert after["bw-ops"] == (first["bw-ops"][0], first["bw-ops"][1], frozenset())
    assert after["all-staff"] == (first["all-staff"][0], first["all-staff"][1], frozenset())
    assert after["bw-keep"] == first["bw-keep"]
    assert after["Made by hand"] == (hand.id, None, frozenset({emails["ann"], emails["cid"]}))
    revenue = after["bw-revenue"]
    assert revenue[2] == {emails["ann"], emails["bob"]}
    collections = {g.name: [c["id"] for c in g.collections] for g in fake_bitwarden.groups}
    # emptied groups keep their grants for review
    assert collections["bw-ops"] == [grants["bw-ops"]]
    assert collections["all-staff"] == [grants["all-staff"]]
    if d.stable_ids:  # renamed in place: same group, same externalId, same grants
        assert revenue[:2] == first["bw-sales"][:2]
        assert "bw-sales" not in after
        assert collections["bw-revenue"] == [grants["bw-sales"]]
    else:  # a new group without grants; the old one emptied, its grants there to copy
        assert revenue[0] != first["bw-sales"][0]
        assert after["bw-sales"] == (first["bw-sales"][0], first["bw-sales"][1], frozenset())
        assert collections["bw-revenue"] == []
        assert collections["bw-sales"] == [grants["bw-sales"]]
        assert any("grant it the old group's collections" in n for n in plan["notes"])
    summary = [e for e in _events(err) if e["event"] == "summary"][-1]
    assert summary["applied"]["group_empty"] == len(expected)
    assert [r.endpoint for r in fake_bitwarden.requests_to("set_group_member_ids")] == [
        "set_group_member_ids"
    ] * len(expected)

    # in step now: a forced run plans nothing for the emptied groups, and names them for
    # review as long as they are there
    code, plan = cli.plan("--force")
    assert code == 0
    assert [c for c in plan["changes"] if c["action"].startswith("group_")] == []
    (review,) = [n for n in plan["notes"] if "kept empty for review" in n]
    assert review.startswith(f"{len(expected)} synced groups left the directory")
    assert all(name in review for name in expected)


def _events(err: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]


# -- the file source: delete mode, the text plan, --detail, Vaultwarden ----------------------


def _file_env(path: Path, groups: dict[str, tuple[str, ...]]) -> None:
    path.write_bytes(
        orjson.dumps(
            {
                "users": [{"id": p, "email": f"{p}@example.com"} for p in PEOPLE],
                "groups": [
                    {"id": g, "name": g, "members": list(members)} for g, members in groups.items()
                ],
            }
        )
    )


@pytest.fixture
def file_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_bitwarden: FakeBitwarden
) -> Path:
    path = tmp_path / "directory.json"
    _file_env(path, GROUPS)
    _setenv(
        monkeypatch,
        {
            "BWSYNC_SOURCE": "file",
            "BWSYNC_FILE__PATH": str(path),
            **_bitwarden_env(fake_bitwarden, tmp_path),
            "BWSYNC_SYNC__MAX_REMOVALS": "100",
            "BWSYNC_SYNC__MAX_REMOVAL_PERCENT": "100",
        },
    )
    return path


def test_delete_mode_deletes_the_group_and_leaves_hand_made_ones(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", "delete")
    assert cli("sync")[0] == 0
    hand = fake_bitwarden.add_group("Made by hand")  # empty, and still never touched
    fake_bitwarden.grant_collection("bw-ops", "c0ffee00-0000-4000-8000-000000000001")
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    code, plan = cli.plan()
    assert code == 0
    assert [(c["action"], c["subject"], c["membersLosingAccess"]) for c in plan["changes"]] == [
        ("group_delete", "bw-ops", 1)
    ]
    assert "collection grants are deleted with it" in plan["changes"][0]["reason"]
    code, _, err = cli("sync")
    assert code == 0, err
    assert sorted(g.name for g in fake_bitwarden.groups) == [
        "Made by hand",
        "all-staff",
        "bw-keep",
        "bw-sales",
    ]
    assert fake_bitwarden.find_group(name="Made by hand") == hand
    # the grants went with the group: nothing in the organization points at the collection
    assert all(g.collections == [] for g in fake_bitwarden.groups)
    assert [e for e in _events(err) if e["event"] == "summary"][-1]["applied"] == {
        "group_delete": 1
    }


def test_text_plan_shows_the_stale_group_never_no_changes(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli
) -> None:
    assert cli("sync")[0] == 0
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "all-staff"})
    code, out, _ = cli("plan", "--output", "text")
    assert code == 0
    assert "no changes" not in out
    (row,) = [line for line in out.splitlines() if line.startswith("group_empty")]
    assert "all-staff" in row and "5 members lose the access it grants" in row
    assert "totals:    group_empty 1" in out
    code, out, _ = cli("plan", "--output", "text", "--detail")
    rows = [line.split()[:3] for line in out.splitlines() if line.startswith("member_remove")]
    assert rows == [["member_remove", f"{p}@example.com", "all-staff"] for p in PEOPLE]


def test_a_failed_emptying_is_retried_by_the_next_run(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli
) -> None:
    """The hash is saved only after every step succeeded: a group left full by a failing
    group endpoint is planned again, and emptied, by the next run."""
    assert cli("sync")[0] == 0
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    fake_bitwarden.fail("set_group_member_ids", status=400, times=1)
    code, _, err = cli("sync")
    assert code == 4 and "empty group" in err
    assert fake_bitwarden.group_member_emails(fake_bitwarden.find_group(name="bw-ops")) == {
        "cid@example.com"
    }
    code, _, err = cli("sync")
    assert code == 0, err
    assert fake_bitwarden.group_member_emails(fake_bitwarden.find_group(name="bw-ops")) == set()


def test_vaultwarden_says_stale_groups_cannot_be_emptied(
    fake_vaultwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path = tmp_path / "directory.json"
    _file_env(path, GROUPS)
    _setenv(
        monkeypatch,
        {
            "BWSYNC_SOURCE": "file",
            "BWSYNC_FILE__PATH": str(path),
            **_bitwarden_env(fake_vaultwarden, tmp_path),
        },
    )
    code, out, _ = cli("check")
    assert code == 0
    assert "note  bitwarden: groups that leave the directory cannot be emptied" in out
    assert "by hand in the web vault" in out
    assert cli("sync")[0] == 0
    _file_env(path, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    code, out, _ = cli("plan", "--output", "text")
    assert code == 0
    assert "note: groups that leave the directory cannot be emptied on this server" in out
    assert cli("sync")[0] == 0
    # what Vaultwarden holds: the group the import no longer names keeps its member
    ops = fake_vaultwarden.find_group(name="bw-ops")
    assert ops is not None
    assert fake_vaultwarden.group_member_emails(ops) == {"cid@example.com"}
    assert fake_vaultwarden.requests_to("set_group_member_ids") == []


def test_check_names_the_group_endpoints_on_the_official_server(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bitwarden.add_group("Made by hand")
    code, out, _ = cli("check")
    assert code == 0
    assert (
        "ok    bitwarden: group endpoints (1 groups, 0 synced); synced groups that leave the "
        "directory are emptied (BWSYNC_SYNC__STALE_GROUPS)"
    ) in out
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "false")
    code, out, _ = cli("check")
    assert code == 0 and "group endpoints" not in out


def test_hand_made_groups_with_a_blank_external_id_or_a_directory_name_are_left_alone(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli
) -> None:
    """The server treats a group whose externalId is blank or whitespace as made by hand
    (``OrganizationGroupImportData``: ``IsNullOrWhiteSpace``), and never matches a group by
    name: neither such a group, nor a hand-made one named like a directory group, is stale."""
    assert cli("sync")[0] == 0
    ann = fake_bitwarden.find_member(email="ann@example.com")
    assert ann is not None
    blank = fake_bitwarden.add_group("Blank id", external_id="  ", members=[ann])
    twin = fake_bitwarden.add_group("bw-ops", members=[ann])  # no externalId, a directory name
    code, plan = cli.plan("--force")
    assert code == 0
    assert [c for c in plan["changes"] if c["action"].startswith("group_")] == []
    code, _, err = cli("sync", "--force")
    assert code == 0, err
    assert fake_bitwarden.requests_to("set_group_member_ids") == []
    assert fake_bitwarden.find_group(name="Blank id") == blank
    twins = [g for g in fake_bitwarden.groups if g.name == "bw-ops"]
    assert sorted(g.external_id or "" for g in twins) == ["", "bw-ops"]
    assert twin in twins


# -- a group write that did not happen is a failure, retried by the next run ------------------


def _state(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


@pytest.mark.parametrize("mode", ["empty", "delete"])
def test_a_404_to_a_group_write_for_a_group_still_there_fails_the_run(
    mode: str,
    file_directory: Path,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A proxy or firewall answering 404 to the PUT or DELETE: the group is still there (its
    GET answers 200), so the run fails with exit 4 and keeps the old hash; the next run does
    the write."""
    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", mode)
    assert cli("sync")[0] == 0
    synced_hash = _state(tmp_path / "state.json")["hash"]
    ops = fake_bitwarden.find_group(name="bw-ops")
    assert ops is not None
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    endpoint = "set_group_member_ids" if mode == "empty" else "delete_group"
    fake_bitwarden.fail(endpoint, status=404, times=1)
    code, _, err = cli("sync")
    assert code == 4, err
    assert "answered 404" in err and "still there" in err
    assert fake_bitwarden.find_group(name="bw-ops") == ops  # untouched, cid still in it
    state = _state(tmp_path / "state.json")
    assert state["hash"] == synced_hash
    assert state["last_run"]["result"] == "failed"
    code, _, err = cli("sync")
    assert code == 0, err
    after = fake_bitwarden.find_group(name="bw-ops")
    if mode == "empty":
        assert after is not None and fake_bitwarden.group_member_emails(after) == set()
    else:
        assert after is None


def test_a_404_to_a_group_write_for_a_group_gone_meanwhile_is_no_failure(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli
) -> None:
    """Deleted by hand between the plan and the write: the GET answers 404 too, so the group
    grants nothing and the run succeeds, saying so."""
    assert cli("sync")[0] == 0
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    pause = fake_bitwarden.pause("set_group_member_ids", before=True)
    result: list[tuple[int, str, str]] = []
    worker = threading.Thread(target=lambda: result.append(cli("sync")))
    worker.start()
    pause.wait()
    ops = fake_bitwarden.find_group(name="bw-ops")
    assert ops is not None
    fake_bitwarden.remove_group(ops)
    pause.release()
    worker.join()
    ((code, _, err),) = result
    assert code == 0, err
    assert "the group was gone already" in err


def test_a_group_write_the_server_did_not_make_fails_the_run_at_verify(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, tmp_path: Path
) -> None:
    """Something answers 200 to the PUT without the server emptying the group: the re-read
    sees the member still in it. Access was to be taken away and was not, so the run fails
    (exit 4) naming the group, keeps the old hash, and the next run empties it."""
    assert cli("sync")[0] == 0
    synced_hash = _state(tmp_path / "state.json")["hash"]
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    fake_bitwarden.fail("set_group_member_ids", status=200, times=1)
    code, _, err = cli("sync")
    assert code == 4, err
    assert "empty group bw-ops" in err
    assert _state(tmp_path / "state.json")["hash"] == synced_hash
    ops = fake_bitwarden.find_group(name="bw-ops")
    assert ops is not None and fake_bitwarden.group_member_emails(ops) == {"cid@example.com"}
    code, _, err = cli("sync")
    assert code == 0, err
    assert fake_bitwarden.group_member_emails(ops) == set()


def test_a_failed_run_counts_the_group_writes_it_made(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, tmp_path: Path
) -> None:
    """Two stale groups, the second PUT fails: the summary (and the state's last run) count
    the import sent and the group emptied before the failure."""
    assert cli("sync")[0] == 0
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g not in ("bw-ops", "bw-sales")})
    fake_bitwarden.fail("set_group_member_ids", status=500, times=None, skip=1)
    code, _, err = cli("sync")
    assert code == 4, err
    summary = [e for e in _events(err) if e["event"] == "summary"][-1]
    assert summary["applied"] == {"group_empty": 1}
    assert summary["sent"] == {"members": 5, "groups": 2}
    assert _state(tmp_path / "state.json")["last_run"]["applied"] == {"group_empty": 1}


# -- a group the directory still names, with no members: the import empties it ----------------


def test_a_directory_group_with_no_members_is_shown_and_counted(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``all-staff`` stays in the directory but comes with no members (an ACL hiding
    ``member``, members outside the user path, a wrong member attribute): the import replaces
    its membership with nothing. Without ``--detail`` the plan reads that group's member ids
    all the same, lists who leaves it, and the default limits count them (five of five synced
    members). Not a remove_missing matter: the import does it whatever the settings."""
    for name in ("BWSYNC_SYNC__MAX_REMOVALS", "BWSYNC_SYNC__MAX_REMOVAL_PERCENT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "false")
    assert cli("sync")[0] == 0
    _file_env(file_directory, {**GROUPS, "all-staff": ()})
    code, out, _ = cli("plan", "--output", "text")
    assert code == 6
    assert "no changes" not in out
    rows = [line.split()[:3] for line in out.splitlines() if line.startswith("member_remove")]
    assert rows == [["member_remove", f"{p}@example.com", "all-staff"] for p in PEOPLE]
    assert "5 members losing access" in out
    assert "no members the organization has" in out  # the note says where to look
    fake_bitwarden.clear_requests()
    code, _, err = cli("sync")
    assert code == 6 and "5 members losing access" in err
    assert fake_bitwarden.writes() == []
    staff = fake_bitwarden.find_group(name="all-staff")
    assert staff is not None and len(fake_bitwarden.group_member_emails(staff)) == 5
    code, _, err = cli("sync", "--allow-removals", "5")
    assert code == 0, err
    assert fake_bitwarden.group_member_emails(staff) == set()


def test_a_wrong_member_attribute_on_slapd_empties_no_group_unnoticed(
    slapd: Slapd,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Real OpenLDAP: the groups are groupOfNames (``member``); a member attribute of
    ``uniqueMember`` reads every group with no members. Each would be emptied by the import:
    the plan lists it and the limits stop the sync."""
    d = slapd_directory(slapd)
    _setenv(monkeypatch, {**d.env, **_bitwarden_env(fake_bitwarden, tmp_path)})
    assert cli("sync")[0] == 0
    monkeypatch.setenv("BWSYNC_LDAP__MEMBER_ATTRIBUTE", "uniqueMember")
    code, plan = cli.plan()
    assert code == 6
    emptied = {
        (c["subject"], c["group"]) for c in plan["changes"] if c["action"] == "member_remove"
    }
    assert emptied == {(d.email(p), g) for g, ms in GROUPS.items() for p in ms}
    (reason,) = plan["safety"]
    assert "5 members losing access" in reason
    code, _, _ = cli("sync")
    assert code == 6
    assert all(fake_bitwarden.group_member_emails(g) for g in fake_bitwarden.groups)


# -- the group limit ------------------------------------------------------------------------------

TEAMS = {f"team-{i}": ("ann",) for i in range(1, 7)}


def test_more_stale_groups_than_the_group_limit_stop_the_run_whatever_their_size(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six one-person groups leave the directory (a group filter now matching only the
    others, say): one person loses access, well under the member limits, but six groups stop
    granting whatever collections they grant. Over BWSYNC_SYNC__MAX_EMPTIED_GROUPS (5), exit
    6; --allow-removals does not lift it, --allow-emptied-groups does. Emptied, they are kept
    for review; switching to delete mode then deletes six groups with nobody in them, which
    the member limits cannot see at all: the group limit stops that too."""
    _file_env(file_directory, {**GROUPS, **TEAMS})
    assert cli("sync")[0] == 0
    _file_env(file_directory, GROUPS)
    code, out, _ = cli("plan", "--output", "text")
    assert code == 6
    assert "6 synced groups would be emptied or deleted" in out
    assert "BWSYNC_SYNC__MAX_EMPTIED_GROUPS=5" in out
    code, _, err = cli("sync")
    assert code == 6 and "`bwsync sync --allow-emptied-groups 6`" in err
    assert cli("sync", "--allow-removals", "100")[0] == 6
    assert fake_bitwarden.requests_to("set_group_member_ids") == []
    assert cli("sync", "--allow-emptied-groups", "5")[0] == 6
    code, _, err = cli("sync", "--allow-emptied-groups", "6")
    assert code == 0, err
    teams = [g for g in fake_bitwarden.groups if g.name.startswith("team-")]
    assert len(teams) == 6 and all(not fake_bitwarden.group_member_emails(g) for g in teams)

    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", "delete")
    code, plan = cli.plan()  # the directory is unchanged; the settings are not
    assert code == 6
    assert [c["action"] for c in plan["changes"]] == ["group_delete"] * 6
    (reason,) = plan["safety"]
    assert reason.startswith("6 synced groups would be emptied or deleted")
    monkeypatch.setenv("BWSYNC_SYNC__MAX_EMPTIED_GROUPS", "6")
    code, _, err = cli("sync")
    assert code == 0, err
    assert not [g for g in fake_bitwarden.groups if g.name.startswith("team-")]


# -- collection grants: shown before they go, kept where the group is the same ------------------


def _grant_each(fake: FakeBitwarden) -> dict[str, str]:
    """Give every group a collection of its own, as an admin does by hand; name → id."""
    grants = {}
    for i, g in enumerate(fake.groups):
        grants[g.name] = f"c0ffee00-0000-4000-8000-{i:012d}"
        fake.grant_collection(g.id, grants[g.name])
    return grants


def test_switching_the_group_id_attribute_on_keeps_every_group_and_its_grants(
    slapd: Slapd,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """OpenLDAP groups synced under their DNs; then BWSYNC_LDAP__GROUP_ID_ATTRIBUTE=entryUUID.
    Each directory group is the same entry under a new id, which the source tells (its DN is
    the reference id): bwsync gives the existing group its new externalId before the import
    (PUT /public/groups/{id} without collections, which keeps them), instead of creating a
    new group without grants and emptying - or, in delete mode, deleting - the old one."""
    d = slapd_directory(slapd)
    _setenv(monkeypatch, {**d.env, **_bitwarden_env(fake_bitwarden, tmp_path)})
    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", "delete")
    assert cli("sync")[0] == 0
    before = _org(fake_bitwarden)
    grants = _grant_each(fake_bitwarden)
    monkeypatch.setenv("BWSYNC_LDAP__GROUP_ID_ATTRIBUTE", "entryUUID")
    code, plan = cli.plan()
    assert code == 0, plan
    groups = f"ou=groups,{d.env['BWSYNC_LDAP__BASE_DN']}"
    uuid_of = {g: slapd.entry_uuid(f"cn={g},{groups}") for g in GROUPS}
    assert sorted((c["action"], c["subject"], c["externalId"]) for c in plan["changes"]) == sorted(
        ("group_relink", g, uuid_of[g]) for g in GROUPS
    )
    code, _, err = cli("sync")
    assert code == 0, err
    after = _org(fake_bitwarden)
    assert {n: (i, m) for n, (i, _, m) in after.items()} == {
        n: (i, m) for n, (i, _, m) in before.items()
    }
    assert {n: x for n, (_, x, _) in after.items()} == uuid_of
    assert {g.name: [c["id"] for c in g.collections] for g in fake_bitwarden.groups} == {
        n: [c] for n, c in grants.items()
    }
    assert len(fake_bitwarden.requests_to("update_group")) == 4
    summary = [e for e in _events(err) if e["event"] == "summary"][-1]
    assert summary["applied"] == {"group_relink": 4}
    code, plan = cli.plan("--force")
    assert code == 0 and [c for c in plan["changes"] if c["action"].startswith("group_")] == []


def test_a_dn_rename_in_delete_mode_names_the_grants_that_go_with_the_old_group(
    slapd: Slapd,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With DN ids a rename cannot be told from a deletion: bw-sales is deleted, grants and
    all, and bw-revenue created without any. The plan (and the log line of the delete) lists
    what bw-sales granted, so that it can be granted again."""
    d = slapd_directory(slapd)
    _setenv(monkeypatch, {**d.env, **_bitwarden_env(fake_bitwarden, tmp_path)})
    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", "delete")
    assert cli("sync")[0] == 0
    grants = _grant_each(fake_bitwarden)
    sales = fake_bitwarden.find_group(name="bw-sales")
    assert sales is not None
    fake_bitwarden.grant_collection(sales.id, "c0ffee00-0000-4000-8000-0000000000aa")
    d.rename()
    code, plan = cli.plan()
    (delete,) = [c for c in plan["changes"] if c["action"] == "group_delete"]
    assert delete["subject"] == "bw-sales"
    assert delete["collections"] == [
        {"id": grants["bw-sales"], "readOnly": False, "hidePasswords": False, "manage": False},
        {
            "id": "c0ffee00-0000-4000-8000-0000000000aa",
            "readOnly": False,
            "hidePasswords": False,
            "manage": False,
        },
    ]
    assert f"grants 2 collections: {grants['bw-sales']}" in delete["reason"]
    code, _, err = cli("sync", "--allow-removals", "2")
    assert code == 0, err
    (line,) = [e for e in _events(err) if e["event"] == "group_delete"]
    assert grants["bw-sales"] in line["change"]


def test_switching_the_group_id_attribute_off_in_delete_mode_deletes_nothing(
    slapd: Slapd,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Back from entryUUID to DNs: the source no longer reads entryUUID, so the old groups
    cannot be paired with the new ones by id; but each has a new group of its own name, most
    likely itself. Delete mode then empties them instead (their grants kept, to copy) and
    says so."""
    d = slapd_directory(slapd, BWSYNC_LDAP__GROUP_ID_ATTRIBUTE="entryUUID")
    _setenv(monkeypatch, {**d.env, **_bitwarden_env(fake_bitwarden, tmp_path)})
    monkeypatch.setenv("BWSYNC_SYNC__STALE_GROUPS", "delete")
    assert cli("sync")[0] == 0
    _grant_each(fake_bitwarden)
    monkeypatch.delenv("BWSYNC_LDAP__GROUP_ID_ATTRIBUTE")
    code, plan = cli.plan()
    actions = sorted((c["action"], c["subject"]) for c in plan["changes"] if "group" in c["action"])
    assert actions == sorted(
        [("group_create", g) for g in GROUPS] + [("group_empty", g) for g in GROUPS]
    )
    for c in plan["changes"]:
        if c["action"] == "group_empty":
            assert "not deleted: the directory has a group of this name" in c["reason"]
    code, _, err = cli("sync", "--allow-removals", "5")
    assert code == 0, err
    assert fake_bitwarden.requests_to("delete_group") == []
    assert sum(1 for g in fake_bitwarden.groups if g.collections) == 4


def test_a_group_id_attribute_the_groups_lack_stops_the_run_before_anything_is_sent(
    slapd: Slapd,
    fake_bitwarden: FakeBitwarden,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A misspelt attribute, or one an ACL hides: exit 3 naming it, nothing sent (the groups
    would otherwise be synced under their DNs, and switch ids when it becomes readable)."""
    d = slapd_directory(slapd, BWSYNC_LDAP__GROUP_ID_ATTRIBUTE="entryUID")
    _setenv(monkeypatch, {**d.env, **_bitwarden_env(fake_bitwarden, tmp_path)})
    code, _, err = cli("sync")
    assert code == 3
    assert "4 groups have no entryUID (BWSYNC_LDAP__GROUP_ID_ATTRIBUTE)" in err
    assert fake_bitwarden.writes() == []


def test_turning_remove_missing_on_empties_a_group_that_left_an_unchanged_directory(
    file_directory: Path, fake_bitwarden: FakeBitwarden, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21's first report, with the directory unchanged since: bw-ops left the directory
    while remove_missing was off (the import left it full), then remove_missing is turned on.
    The directory's hash is the same, but the settings that change the plan are not: the run
    must plan and empty the group, not say "nothing to do" (review of issue 21, finding 1)."""
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "false")
    assert cli("sync")[0] == 0
    _file_env(file_directory, {g: m for g, m in GROUPS.items() if g != "bw-ops"})
    assert cli("sync")[0] == 0
    ops = fake_bitwarden.find_group(name="bw-ops")
    assert ops is not None and fake_bitwarden.group_member_emails(ops) == {"cid@example.com"}
    monkeypatch.setenv("BWSYNC_SYNC__REMOVE_MISSING", "true")
    code, plan = cli.plan()  # no --force: the directory is what it was
    assert code == 0
    assert [(c["action"], c["subject"]) for c in plan["changes"]] == [("group_empty", "bw-ops")]
    code, _, err = cli("sync")
    assert code == 0, err
    assert fake_bitwarden.group_member_emails(ops) == set()
    fake_bitwarden.clear_requests()
    assert cli("sync")[0] == 0  # and then the shortcut holds again
    assert fake_bitwarden.writes() == []
