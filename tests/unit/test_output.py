"""output: the plan as a person reads it and the demo's summary line, from real runs against
the Bitwarden stand-in (the plan's JSON document is checked in test_run.py and test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwsync.config import Settings
from bwsync.model import Directory, User
from bwsync.output import plan_document, print_plan_text, summary_line
from bwsync.run import RunOptions, execute
from bwsync.settings import load_settings
from bwsync.sources.base import CheckResult, FetchRequest
from tests.standins.bitwarden import FakeBitwarden


class _Users:
    name = "file"
    server = "output test source"

    def __init__(self, users: list[User]) -> None:
        self.users = users

    def fetch(self, request: FetchRequest) -> Directory:
        return Directory(users=list(self.users), groups=None)

    def check(self) -> list[CheckResult]:
        return []


def _settings(fake: FakeBitwarden, path: Path) -> Settings:
    return load_settings(
        bitwarden={
            "server": fake.base_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        state={"backend": "file", "path": path},
        sync={"remove_disabled": True},
    )


USERS = [
    User("ann", "ann", "ann@example.com"),
    User("bob", "bob", "bob@example.com"),
    User("cy", "cy", "cy@example.com", disabled=True),
]


def test_plan_text_lists_each_change_in_a_table_then_the_totals(
    fake_bitwarden: FakeBitwarden, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_bitwarden.add_owner("owner@example.com")
    fake_bitwarden.add_member("ann@example.com")  # invited by hand: linked by email
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    outcome = execute(settings, RunOptions(command="plan", detail=True), source=_Users(USERS))
    assert outcome.report.exit_code == 0, outcome.report.error
    print_plan_text(outcome)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "directory: 3 users (1 disabled, 0 deleted), 0 groups"
    header = lines.index(next(x for x in lines if x.startswith("ACTION")))
    assert lines[header].split() == ["ACTION", "SUBJECT", "GROUP", "REASON"]
    rows = [x.split()[:2] for x in lines[header + 1 :] if not x.startswith("totals:")]
    assert ["invite", "bob@example.com"] in rows
    assert ["link", "ann@example.com"] in rows
    assert all(subject != "cy@example.com" for _action, subject in rows)  # disabled, never in
    (totals,) = [x for x in lines if x.startswith("totals:")]
    assert "invite 1" in totals and "link 1" in totals
    # The columns line up: every row's second column starts where the header's does.
    start = lines[header].index("SUBJECT")
    assert all(lines[i][start - 2 : start] == "  " for i in range(header, header + 1 + len(rows)))


def test_summary_line_says_the_result_the_exit_code_and_what_was_applied(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    first = execute(settings, RunOptions(command="sync"), source=_Users(USERS))
    line = summary_line(first.report)
    assert line.startswith("result: success (exit 0) in ")
    assert line.endswith("s; applied: invite 2")
    assert "{" not in line and "'" not in line  # no Python repr for a person to decode
    again = execute(settings, RunOptions(command="sync"), source=_Users(USERS))
    assert summary_line(again.report).startswith("result: no_change (exit 0) in ")
    assert summary_line(again.report).endswith("s; applied: nothing")


def test_plan_json_result_never_contradicts_its_changes(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """`"result": "changes"` with `"changes": []` was possible: a changed directory whose
    differences do not touch the organization. Now each result matches the list."""
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    first = plan_document(execute(settings, RunOptions(command="plan"), source=_Users(USERS)))
    assert first["result"] == "changes" and first["changes"]
    assert execute(settings, RunOptions(command="sync"), source=_Users(USERS)).report.exit_code == 0
    # Unchanged since the last sync: no Bitwarden request.
    again = plan_document(execute(settings, RunOptions(command="plan"), source=_Users(USERS)))
    assert (again["result"], again["changes"]) == ("nothing_to_do", [])
    # Changed (a new disabled user, whom the import does not invite), yet the organization
    # already matches: nothing to do, not "changes".
    more = [*USERS, User("dee", "dee", "dee@example.com", disabled=True)]
    changed = plan_document(execute(settings, RunOptions(command="plan"), source=_Users(more)))
    assert changed["hash"] != again["hash"]
    assert (changed["result"], changed["changes"]) == ("nothing_to_do", [])
