"""The one definition of the plan's actions and reasons, and what reads it."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from bwsync.changes import (
    ACTIONS,
    APPLYING,
    REASONS,
    REMOVALS,
    REREAD,
    SPEC,
    STALE_GROUP_ACTIONS,
    TAKES_ACCESS,
    Change,
    Reason,
    markdown_table,
)
from bwsync.model import CollectionGrant

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_table_is_the_definition() -> None:
    """docs/operations.md's "Plan actions" table is generated from ``SPECS``: a new action
    cannot be left out of it (the metrics' promise of a series per action had drifted)."""
    assert markdown_table() in (ROOT / "docs" / "operations.md").read_text()


def test_the_sets_every_part_reads_are_drawn_from_the_definition() -> None:
    assert {"remove", "revoke"} == REMOVALS
    assert {"group_empty", "group_delete"} == STALE_GROUP_ACTIONS
    assert TAKES_ACCESS == REMOVALS | STALE_GROUP_ACTIONS
    assert set(APPLYING) == set(ACTIONS) - {"skip"}
    assert set(ACTIONS) - {"skip", "member_add", "member_remove"} == REREAD


@pytest.mark.parametrize("reason", typing.get_args(Reason))
def test_every_reason_renders(reason: Reason) -> None:
    change = Change(
        "group_empty",
        None,
        "x",
        reason,
        group="Eng",
        members_losing_access=2,
        collections=(CollectionGrant("c1", read_only=True),),
        about=("one", "two", "three"),
    )
    text = change.why
    assert text and "{" not in text
    assert change.sentence(dry_run=True).startswith("would empty group Eng (")


def test_a_change_reads_as_today_and_carries_its_code() -> None:
    change = Change("skip", "a@x.com", "a", "email_taken", "m1", about=("b",))
    assert change.sentence(dry_run=False) == (
        "skip a@x.com (the email belongs to member with externalId b; the server ignores this "
        "entry)"
    )
    assert change.as_dict() == {
        "action": "skip",
        "subject": "a@x.com",
        "externalId": "a",
        "reason": "the email belongs to member with externalId b; the server ignores this entry",
        "reasonCode": "email_taken",
        "memberId": "m1",
    }
    group = Change("member_remove", None, None, "not_in_group_by_hand", "m9", group="Ops")
    assert group.subject == "m9"  # no email, no externalId: the member id
    assert group.sentence(dry_run=True).startswith("would take m9 out of group Ops (")


def test_the_stale_group_reason_counts_and_names_the_grants() -> None:
    change = Change(
        "group_delete",
        None,
        "ext",
        "group_gone_deleted",
        group="Old",
        members_losing_access=1,
        collections=(CollectionGrant("c1", manage=True),),
    )
    assert change.why == (
        "gone from the directory's groups: deleted, filtered out, or given a new id; 1 member "
        "loses the access it grants, and its collection grants are deleted with it (grants 1 "
        "collection: c1 (can manage))"
    )


def _compared_attributes(path: Path) -> set[str]:
    """Attributes of a change compared to something in ``path``'s code: ``c.reason == …``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Attribute):
                    found.add(side.attr)
    return found


def test_no_logic_reads_the_display_text() -> None:
    """The English (``why``, ``subject``, ``sentence``) is for people: the plan, the run and
    the re-read compare codes and data fields, never words."""
    for module in ("plan.py", "run.py", "changes.py"):
        compared = _compared_attributes(ROOT / "job" / "bwsync" / module)
        assert not compared & {"why", "subject"}, module


def test_each_action_and_reason_is_defined_once() -> None:
    assert set(SPEC) == set(ACTIONS)
    assert set(REASONS) == set(typing.get_args(Reason))
