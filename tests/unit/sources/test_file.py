"""The file source: JSON and CSV exports, and the built-in demo directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bwsync.config import FileSettings, SyncSettings
from bwsync.errors import DirectoryError
from bwsync.sources.base import FetchRequest
from bwsync.sources.file import FileSource


def test_demo_directory_loads() -> None:
    d = FileSource(FileSettings(), SyncSettings()).fetch(FetchRequest())
    assert d.users and d.groups
    assert any(u.disabled for u in d.users)
    assert any(g.group_member_reference_ids for g in d.groups)


def test_csv(tmp_path: Path) -> None:
    f = tmp_path / "people.csv"
    f.write_text("id,email,disabled,groups\n1,Ada@X.com,,Eng;Ops\n2,b@x.com,yes,Eng\n")
    d = FileSource(FileSettings(path=f), SyncSettings()).fetch(FetchRequest())
    assert [(u.external_id, u.email, u.disabled) for u in d.users or []] == [
        ("1", "ada@x.com", False),
        ("2", "b@x.com", True),
    ]
    assert [(g.name, list(g.user_member_external_ids)) for g in d.groups or []] == [
        ("Eng", ["1", "2"]),
        ("Ops", ["1"]),
    ]


def test_numeric_ids_become_strings(tmp_path: Path) -> None:
    """A JSON number as an id is its decimal text, for users, members and nested groups alike:
    Vaultwarden refuses numeric externalIds (HTTP 422)."""
    f = tmp_path / "dir.json"
    f.write_text(
        '{"users": [{"id": 9001, "email": "a@x.com"}],'
        ' "groups": [{"id": 7, "name": "G", "members": [9001], "groups": [8]},'
        ' {"id": "8", "name": "H"}]}'
    )
    d = FileSource(FileSettings(path=f), SyncSettings()).fetch(FetchRequest())
    assert [(u.reference_id, u.external_id) for u in d.users or []] == [("9001", "9001")]
    g, h = d.groups or []
    assert (g.external_id, list(g.user_member_external_ids)) == ("7", ["9001"])
    assert list(g.group_member_reference_ids) == ["8"] and h.reference_id == "8"


def test_switches_give_none(tmp_path: Path) -> None:
    d = FileSource(FileSettings(), SyncSettings(users=False, groups=False)).fetch(FetchRequest())
    assert d.users is None and d.groups is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"users":[{"email":"a@x.com"}]}', "users[0]: `id`"),
        ('{"groups":[{"id":"g"}]}', "groups[0]: `name`"),
        ('{"users":[{"id":"u","disabled":"maybe"}]}', "'maybe' is not a boolean"),
    ],
)
def test_bad_json_names_the_entry(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "d.json"
    f.write_text(content)
    with pytest.raises(DirectoryError, match=re.escape(message)):
        FileSource(FileSettings(path=f), SyncSettings()).fetch(FetchRequest())


def test_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="BWSYNC_FILE__PATH"):
        FileSource(FileSettings(path=tmp_path / "nope.json"), SyncSettings()).fetch(FetchRequest())
