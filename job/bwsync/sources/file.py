"""A directory from a file: a JSON or CSV export (HR systems, scripts) and the demo's source.

JSON::

    {"users":  [{"id": "u1", "email": "ada@example.com", "disabled": false, "deleted": false}],
     "groups": [{"id": "g1", "name": "Engineering", "members": ["u1"], "groups": ["g2"]}]}

``id`` is the externalId Bitwarden keeps; ``members`` lists user ids, ``groups`` nested group ids;
``disabled``/``deleted`` are optional (false). CSV: one user per row with the header
``id,email,disabled,deleted,groups``; ``groups`` is a ``;``-separated list of group names, and a
group's id is its name. Booleans in CSV: ``true``/``false``/``1``/``0``/``yes``/``no``/empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import orjson

from bwsync.config import FileSettings, SyncSettings, env_name
from bwsync.errors import DirectoryError
from bwsync.model import Directory, Group, User
from bwsync.sources.base import CheckResult, FetchRequest

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


def demo_directory() -> bytes:
    """The built-in demo directory (used when ``BWSYNC_FILE__PATH`` is not set)."""
    return resources.files("bwsync.demo").joinpath("directory.json").read_bytes()


class FileSource:
    name = "file"

    def __init__(self, settings: FileSettings, sync: SyncSettings) -> None:
        self.path = settings.path
        self.sync = sync

    @property
    def server(self) -> str:
        return str(self.path) if self.path else "built-in demo directory"

    def _read(self) -> tuple[bytes, str]:
        if self.path is None:
            return demo_directory(), ".json"
        try:
            return self.path.read_bytes(), self.path.suffix.lower()
        except OSError as exc:
            raise DirectoryError(
                f"cannot read {env_name('file', 'path')} {self.path}: {exc.strerror}"
            ) from None

    def check(self) -> list[CheckResult]:
        try:
            d = self.fetch(FetchRequest())
        except DirectoryError as exc:
            return [CheckResult("read file", False, str(exc))]
        n_users = len(d.users or [])
        n_groups = len(d.groups or [])
        return [
            CheckResult("read file", True, f"{self.server}: {n_users} users, {n_groups} groups")
        ]

    def fetch(self, request: FetchRequest) -> Directory:
        data, suffix = self._read()
        if suffix == ".csv":
            users, groups = _parse_csv(data, self.server)
        else:
            users, groups = _parse_json(data, self.server)
        return Directory(
            users=users if self.sync.users else None,
            groups=groups if self.sync.groups else None,
        )


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DirectoryError(f"{where}: {value!r} is not a boolean")


def _id(value: Any, where: str) -> str:
    """An id as text: a JSON number is accepted and becomes its decimal string (``9001`` and
    ``"9001"`` are one id), since every externalId is sent as a string (Vaultwarden refuses
    numbers with HTTP 422)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DirectoryError(f"{where}: `id` must be a non-empty string or an integer")


def _user(uid: str, email: str | None, fields: Mapping[str, Any], where: str) -> User:
    """A user from one JSON object or CSV row, whose optional ``disabled``/``deleted`` it reads."""
    return User(
        reference_id=uid,
        external_id=uid,
        email=email,
        disabled=_bool(fields.get("disabled"), where),
        deleted=_bool(fields.get("deleted"), where),
    )


def _list(value: Any, where: str) -> list[Any]:
    """``value`` when it is a JSON list (absent or null: empty); anything else is an entry
    error naming where it is, never a crash nor a string read one character at a time."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DirectoryError(f"{where}: expected a list, not {type(value).__name__}")
    return value


def _objects(
    doc: dict[str, Any], key: str, origin: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each object of the JSON list ``key``: where it is (for messages), itself, and its id."""
    for i, raw in enumerate(_list(doc.get(key), f"{origin} `{key}`")):
        where = f"{origin} {key}[{i}]"
        if not isinstance(raw, dict):
            raise DirectoryError(f"{where}: expected an object")
        yield where, raw, _id(raw.get("id"), where)


def _parse_json(data: bytes, origin: str) -> tuple[list[User], list[Group]]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DirectoryError(f"{origin} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DirectoryError(f"{origin}: expected an object with `users` and `groups`")
    users: list[User] = []
    for where, raw, uid in _objects(doc, "users", origin):
        email = raw.get("email")
        if email is not None and not isinstance(email, str):
            raise DirectoryError(f"{where}: `email` must be a string")
        users.append(_user(uid, email.strip().lower() if email else None, raw, where))
    groups: list[Group] = []
    for where, raw, gid in _objects(doc, "groups", origin):
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DirectoryError(f"{where}: `name` must be a non-empty string")
        group = Group(reference_id=gid, external_id=gid, name=name)
        for member in _list(raw.get("members"), f"{where} members"):
            group.add_user(_id(member, f"{where} members"))
        for nested in _list(raw.get("groups"), f"{where} groups"):
            group.add_group(_id(nested, f"{where} groups"))
        groups.append(group)
    return users, groups


def _parse_csv(data: bytes, origin: str) -> tuple[list[User], list[Group]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DirectoryError(f"{origin} is not UTF-8: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "id" not in header or "email" not in header:
        raise DirectoryError(f"{origin}: the CSV header must have at least `id` and `email`")
    reader.fieldnames = header
    users: list[User] = []
    groups: dict[str, Group] = {}
    for line, row in enumerate(reader, start=2):
        where = f"{origin} line {line}"
        uid = _id((row.get("id") or "").strip(), where)
        email = (row.get("email") or "").strip().lower() or None
        users.append(_user(uid, email, row, where))
        for raw_name in (row.get("groups") or "").split(";"):
            name = raw_name.strip()
            if name:
                groups.setdefault(name, Group(reference_id=name, external_id=name, name=name))
                groups[name].add_user(uid)
    return users, list(groups.values())
