"""verify: the re-read after applying, against the Bitwarden stand-in over loopback."""

from __future__ import annotations

from bwsync.bitwarden import BitwardenClient
from bwsync.changes import Action, Change
from bwsync.model import STATUS_REVOKED, RunReport
from bwsync.plan import Plan
from bwsync.verify import verify
from tests.standins.bitwarden import FakeBitwarden


def test_verify_counts_what_the_re_read_shows_and_words_the_rest(
    fake_bitwarden: FakeBitwarden,
) -> None:
    """Each planned change against the organization as re-read after the import: those that
    took effect are counted as applied, the others are worded as differences."""

    fake_bitwarden.add_member("a@example.com", external_id="a")
    fake_bitwarden.add_member("kept@example.com", external_id="kept")
    fake_bitwarden.add_member("rev@example.com", external_id="rev", status=STATUS_REVOKED)
    fake_bitwarden.add_member("active@example.com", external_id="active")
    fake_bitwarden.add_group("Eng", external_id="eng")

    def change(action: Action, subject: str, ext: str) -> Change:
        if action.startswith("group_"):
            return Change(action, None, ext, "group_new", group=subject)
        return Change(action, subject, ext, "new")

    plan = Plan(
        changes=[
            change("invite", "a@example.com", "a"),  # there
            change("invite", "b@example.com", "b"),  # not there
            change("link", "kept@example.com", "kept"),  # there
            change("remove", "gone@example.com", "gone"),  # gone
            change("remove", "kept@example.com", "kept"),  # still there
            change("revoke", "rev@example.com", "rev"),  # revoked
            change("revoke", "active@example.com", "active"),  # not revoked
            change("restore", "active@example.com", "active"),  # active
            change("restore", "rev@example.com", "rev"),  # still revoked
            change("group_create", "Eng", "eng"),  # there
            change("group_create", "Ops", "ops"),  # not there
            change("group_rename", "Eng", "eng"),  # has that name
            change("group_rename", "Sales", "eng"),  # has another name
            change("member_add", "a@example.com", "a"),  # not re-read
            change("skip", "x@example.com", "x"),  # not counted
        ]
    )
    report = RunReport(profile="default", source="file", command="sync", started=0.0)
    with BitwardenClient(fake_bitwarden.settings(timeout=10.0)) as client:
        differences = [c.sentence(dry_run=False) for c in verify(client, plan, report)]
    assert report.applied == {
        "invite": 1,
        "link": 1,
        "remove": 1,
        "revoke": 1,
        "restore": 1,
        "group_create": 1,
        "group_rename": 1,
        "member_add": 1,
    }
    assert differences == [
        "invite b@example.com (new in the directory)",
        "remove kept@example.com (new in the directory)",
        "revoke active@example.com (new in the directory)",
        "restore rev@example.com (new in the directory)",
        "create group Ops (new in the directory)",
        "rename group Sales (new in the directory)",
    ]
    assert report.applied_differs


def test_verify_re_reads_emptied_and_deleted_groups(fake_bitwarden: FakeBitwarden) -> None:
    """An emptied group counts as applied when it is empty (or gone), a deleted one when it is
    gone; an emptied group the re-read shows full is a difference."""

    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    empty = fake_bitwarden.add_group("Empty", external_id="e")
    full = fake_bitwarden.add_group("Full", external_id="f", members=[a])
    still = fake_bitwarden.add_group("Still", external_id="s")

    def stale(action: Action, name: str, group_id: str) -> Change:
        return Change(action, None, name, "group_gone_kept", group=name, group_id=group_id)

    plan = Plan(
        changes=[
            stale("group_empty", "Empty", empty.id),  # empty
            stale("group_empty", "Full", full.id),  # still has a
            stale("group_empty", "Gone", "0b7f8f0e-8d0a-4f63-9a55-111111111111"),  # gone: fine
            stale("group_delete", "Gone", "0b7f8f0e-8d0a-4f63-9a55-222222222222"),  # gone
            stale("group_delete", "Still", still.id),  # still there
        ]
    )
    report = RunReport(profile="default", source="file", command="sync", started=0.0)
    with BitwardenClient(fake_bitwarden.settings(timeout=10.0)) as client:
        differences = [c.sentence(dry_run=False) for c in verify(client, plan, report)]
    assert report.applied == {"group_empty": 2, "group_delete": 1}
    assert [d.split(" (")[0] for d in differences] == ["empty group Full", "delete group Still"]
    assert [r.path.rsplit("/", 2)[-2] for r in fake_bitwarden.requests_to("group_member_ids")] == [
        empty.id,
        full.id,
    ]
