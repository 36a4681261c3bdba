"""The README's troubleshooting table against the messages bwsync really prints.

Each row's first quoted message is matched (``…`` and ``<placeholders>`` stand for any text,
``N``/``M`` for a number) against a message produced here the way a run produces it, mostly
against the stand-ins over loopback. The few rows that need a server not started here are
listed with the test that produces them, and their words must at least be in the code."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bwsync.bitwarden import BitwardenClient
from bwsync.config import SyncSettings
from bwsync.errors import BwsyncError
from bwsync.memory import Memory
from bwsync.model import STATUS_INVITED, Directory, User
from bwsync.normalize import normalize
from bwsync.payload import build_payload
from bwsync.plan import OrgSnapshot, check_safety, enforce_safety, make_plan
from bwsync.run import RunOptions, execute
from bwsync.settings import load_settings
from bwsync.sources import build_source
from bwsync.sources.base import CheckResult, FetchRequest
from bwsync.state.base import StateDocument
from bwsync.state.file import FileStateStore
from tests.fixtures.ldap import free_port
from tests.standins.bitwarden import FakeBitwarden

README = Path(__file__).resolve().parents[2] / "README.md"
PACKAGE = Path(__file__).resolve().parents[2] / "job" / "bwsync"


def _rows() -> list[str]:
    """The first quoted message of every troubleshooting row."""
    text = README.read_text()
    section = text[text.index("## Troubleshooting") : text.index("## Metrics and alerts")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]


def _pattern(row: str) -> re.Pattern[str]:
    parts = re.split(r"(…|<[a-z ]+>|\bN\b|\bM\b)", row)
    out = []
    for part in parts:
        if part in ("N", "M"):
            out.append(r"\d+")
        elif part == "…" or (part.startswith("<") and part.endswith(">")):
            out.append(".*?")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out), re.DOTALL)


class _Users:
    name = "file"
    server = "test"

    def __init__(self, *emails: str) -> None:
        self.emails = emails

    def fetch(self, request: FetchRequest) -> Directory:
        return Directory(users=[User(e, e, e) for e in self.emails], groups=None)

    def check(self) -> list[CheckResult]:
        return []


def _raised(call: Callable[[], object]) -> str:
    with pytest.raises(BwsyncError) as info:
        call()
    return str(info.value)


def _client(fake: FakeBitwarden, **kw: Any) -> BitwardenClient:
    return BitwardenClient(fake.settings(timeout=10.0, **kw), sleep=lambda _s: None)


def _import(fake: FakeBitwarden, body: bytes, **kw: Any) -> str:
    with _client(fake, **kw) as client:
        return _raised(lambda: client.import_organization(body))


def _body(users: list[User], **sync: Any) -> bytes:
    return build_payload(users, [], SyncSettings(**sync), api_url="a", org_id="o").requests[0].body


def _events(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(r.getMessage() for r in caplog.records)


Producer = Callable[[pytest.FixtureRequest], str]


def _config_error(r: pytest.FixtureRequest) -> str:
    r.getfixturevalue("monkeypatch").setenv("BWSYNC_SYNC__MAX_REMOVALS", "-1")
    return _raised(load_settings)


def _unknown_setting(r: pytest.FixtureRequest) -> str:
    r.getfixturevalue("monkeypatch").setenv("BWSYNC_X", "1")
    return _raised(load_settings)


def _no_api_key(r: pytest.FixtureRequest) -> str:
    tmp = r.getfixturevalue("tmp_path")
    people = tmp / "people.json"
    people.write_text('{"users": []}')
    return _raised(
        lambda: load_settings(
            api_key=True, file={"path": people}, state={"backend": "file", "path": tmp / "s"}
        )
    )


def _missing_ca_file(r: pytest.FixtureRequest) -> str:
    missing = r.getfixturevalue("tmp_path") / "ldap-ca.pem"
    ldap = {"url": "ldaps://127.0.0.1:636", "base_dn": "dc=x", "ca_file": missing}
    return _raised(lambda: load_settings(source="ldap", ldap=ldap))


def _ldap_unreachable(r: pytest.FixtureRequest) -> str:
    settings = load_settings(
        source="ldap", ldap={"url": f"ldap://127.0.0.1:{free_port()}", "base_dn": "dc=x"}
    )
    return _raised(lambda: build_source(settings).fetch(FetchRequest()))


def _duplicates(r: pytest.FixtureRequest) -> str:
    users = [User("1", "1", "a@x.com"), User("2", "2", "a@x.com")]
    return _raised(lambda: normalize(Directory(users=users, groups=None)))


def _file_entry(r: pytest.FixtureRequest) -> str:
    path = r.getfixturevalue("tmp_path") / "dir.json"
    path.write_text('{"users": [{"id": "u1", "email": 5}]}')
    settings = load_settings(source="file", file={"path": path})
    return _raised(lambda: build_source(settings).fetch(FetchRequest()))


def _wrong_key(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    with _client(fake, client_secret="wrong") as client:
        return _raised(client.check_token)


def _wrong_path(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_vaultwarden")
    with _client(fake, server=fake.base_url + "/vault") as client:
        return _raised(client.check_token)


def _login_limit(r: pytest.FixtureRequest) -> str:
    factory = r.getfixturevalue("fake_bitwarden_factory")
    fake = factory(vaultwarden=True, login_ratelimit_max_burst=1, clock=lambda: 0.0)
    with _client(fake) as client:
        client.check_token()
    with _client(fake, login_rate_limit_wait=5) as client:
        return _raised(client.check_token)


def _entry_skipped(r: pytest.FixtureRequest) -> str:
    caplog = r.getfixturevalue("caplog")
    caplog.set_level(logging.WARNING, logger="bwsync")
    fake = r.getfixturevalue("fake_bitwarden")
    tmp = r.getfixturevalue("tmp_path")
    settings = load_settings(
        bitwarden={"server": fake.base_url, "client_id": fake.client_id,
                   "client_secret": fake.client_secret},
        state={"backend": "file", "path": tmp / "s.json"},
    )  # fmt: skip
    assert execute(settings, RunOptions(), source=_Users("a@x.com", "bad")).report.exit_code == 0
    return _events(caplog)


def _field_error(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    return _import(fake, _body([User("x" * 301, "x" * 301, "a@x.com")]))


def _too_much(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    return _import(fake, _body([User(str(i), str(i), f"u{i}@x.com") for i in range(2001)]))


def _seats(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden_factory")(seats=1)
    fake.add_owner("owner@x.com")
    return _import(fake, _body([User("a", "a", "a@x.com")]))


def _overwrite_guard(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    fake.add_member("inv@x.com", external_id="inv", status=STATUS_INVITED)
    return _import(fake, _body([User("a", "a", "a@x.com")], overwrite_existing=True))


def _unhandled(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    fake.server_error("import", times=None)
    return _import(fake, b"{}", max_retries=1)


def _proxy_404(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    fake.fail("list_members", status=404, body=b"<html>Not Found</html>", times=None)
    with _client(fake) as client:
        return _raised(client.list_members)


def _still_limited(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_bitwarden")
    fake.throttle("list_members", times=None, retry_after=1)
    with _client(fake, max_retries=1) as client:
        return _raised(client.list_members)


def _lease(r: pytest.FixtureRequest) -> str:
    path = r.getfixturevalue("tmp_path") / "s.json"
    FileStateStore(path).acquire_lease("other/host/1", 600)
    return _raised(lambda: FileStateStore(path).acquire_lease("me/host/2", 600))


def _lease_ended_since(r: pytest.FixtureRequest) -> str:
    """The holder ran when this run read the state, and died before this run took the lease."""
    import subprocess
    import sys

    from bwsync.state.liveness import process_identity

    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)  # fmt: skip
    identity = process_identity(holder.pid)
    path = r.getfixturevalue("tmp_path") / "s.json"
    FileStateStore(path).acquire_lease("p/host/1", 600, process=identity)
    late = FileStateStore(path)
    late.load()
    holder.kill()
    holder.wait()
    assert holder.stdin is not None
    holder.stdin.close()
    if identity is None:
        pytest.skip("needs Linux /proc (process identities)")
    return _raised(lambda: late.acquire_lease("p/host/2", 600))


def _stopped(r: pytest.FixtureRequest) -> str:
    from bwsync.stop import StopRequest

    stop = StopRequest()

    class Stopped(_Users):
        def fetch(self, request: FetchRequest) -> Directory:
            stop.request("SIGTERM")  # the pod is being stopped while the directory is read
            return super().fetch(request)

    fake = r.getfixturevalue("fake_bitwarden")
    settings = load_settings(
        bitwarden={"server": fake.base_url, "client_id": fake.client_id,
                   "client_secret": fake.client_secret},
        state={"backend": "none"},
    )  # fmt: skip
    return execute(settings, RunOptions(), source=Stopped("a@x.com"), stop=stop).report.error or ""


def _taken_over(r: pytest.FixtureRequest) -> str:
    import subprocess
    import sys

    from bwsync.state.liveness import process_identity

    caplog = r.getfixturevalue("caplog")
    caplog.set_level(logging.WARNING, logger="bwsync")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(killed.pid)
    killed.wait()
    if identity is None:
        pytest.skip("needs Linux /proc (process identities)")
    path = r.getfixturevalue("tmp_path") / "s.json"
    FileStateStore(path).acquire_lease("p/host/1", 600, process=identity)
    FileStateStore(path).acquire_lease("p/host/2", 600)
    return _events(caplog)


def _newer_state(r: pytest.FixtureRequest) -> str:
    return _raised(lambda: StateDocument.from_bytes(b'{"version": 99}', "file s.json"))


def _bad_json(r: pytest.FixtureRequest) -> str:
    return _raised(lambda: StateDocument.from_bytes(b"{", "file s.json"))


def _unreadable(r: pytest.FixtureRequest) -> str:
    path = r.getfixturevalue("tmp_path") / "s.json"
    path.mkdir()
    return _raised(FileStateStore(path).load)


def _org(n: int) -> OrgSnapshot:
    from bwsync.model import OrgMember

    return OrgSnapshot([OrgMember(str(i), f"u{i}@x.com", f"u{i}") for i in range(n)], [])


def _safety(r: pytest.FixtureRequest) -> str:
    sync = SyncSettings(remove_missing=True, max_removals=2, max_removal_percent=100)
    d = Directory(users=[User("u0", "u0", "u0@x.com")], groups=None)
    plan = make_plan(d, _org(5), sync)
    return _raised(lambda: enforce_safety(check_safety(plan, d, sync)))


def _left_out_overwrite(r: pytest.FixtureRequest) -> str:
    sync = SyncSettings(overwrite_existing=True)
    d = normalize(Directory(users=[User("u0", "u0", "u0..x@x.com")], groups=None))
    plan = make_plan(d, _org(1), sync)
    return _raised(lambda: enforce_safety(check_safety(plan, d, sync, allow_removals=9)))


def _empty(r: pytest.FixtureRequest) -> str:
    d = Directory(users=[], groups=None)
    return check_safety(make_plan(d, _org(3), SyncSettings()), d, SyncSettings())[0]


SCOPE = "s"


def _protected(r: pytest.FixtureRequest) -> str:
    sync = SyncSettings(overwrite_existing=True, protected_members="adm@x.com")
    d = Directory(users=[User("a", "a", "a@x.com")], groups=None)
    memory = Memory(SCOPE, frozenset({"a@x.com", "adm@x.com"}))
    plan = make_plan(d, None, sync, memory=memory, scope=SCOPE)
    return _raised(lambda: enforce_safety(check_safety(plan, d, sync)))


def _overwrite_first(r: pytest.FixtureRequest) -> str:
    d = Directory(users=[], groups=None)
    return _raised(lambda: make_plan(d, None, SyncSettings(overwrite_existing=True)))


def _stateless(r: pytest.FixtureRequest) -> str:
    fake = r.getfixturevalue("fake_vaultwarden")
    settings = load_settings(
        bitwarden={"server": fake.base_url, "client_id": fake.client_id,
                   "client_secret": fake.client_secret},
        sync={"remove_missing": True},
        state={"backend": "none"},
    )  # fmt: skip
    return execute(settings, RunOptions(), source=_Users("a@x.com")).report.error or ""


def _remove_mode(r: pytest.FixtureRequest) -> str:
    d = Directory(users=[], groups=None)
    sync = SyncSettings(remove_missing=True, removal_mode="remove")
    return _raised(lambda: make_plan(d, None, sync, memory=Memory(SCOPE), scope=SCOPE))


def _memory_too_big(r: pytest.FixtureRequest) -> str:
    from bwsync import run

    r.getfixturevalue("monkeypatch").setattr(run, "MAX_MEMORY_BYTES", 10)
    fake = r.getfixturevalue("fake_vaultwarden")
    tmp = r.getfixturevalue("tmp_path")
    settings = load_settings(
        bitwarden={"server": fake.base_url, "client_id": fake.client_id,
                   "client_secret": fake.client_secret},
        sync={"remove_missing": True},
        state={"backend": "file", "path": tmp / "s.json"},
    )  # fmt: skip
    return execute(settings, RunOptions(), source=_Users("a@x.com")).report.error or ""


def _metrics_not_delivered(r: pytest.FixtureRequest) -> str:
    from bwsync.cli import _deliver
    from bwsync.model import RunReport
    from bwsync.run import Outcome

    caplog = r.getfixturevalue("caplog")
    caplog.set_level(logging.WARNING, logger="bwsync")
    settings = load_settings(metrics={"pushgateway_url": f"http://127.0.0.1:{free_port()}"})
    _deliver(settings, Outcome(RunReport(profile="p", source="file", result="success")))
    return _events(caplog)


def _cleartext(r: pytest.FixtureRequest) -> str:
    caplog = r.getfixturevalue("caplog")
    caplog.set_level(logging.WARNING, logger="bwsync")
    settings = load_settings(
        bitwarden={"server": "http://vault.example.com", "allow_http": True},
        state={"backend": "none"},
    )
    execute(settings, RunOptions(command="plan"), source=_Users("a@x.com"))
    return _events(caplog)


def _http_bitwarden(r: pytest.FixtureRequest) -> str:
    r.getfixturevalue("monkeypatch").setenv("BWSYNC_BITWARDEN__SERVER", "http://vault.example.com")
    return _raised(load_settings)


PRODUCERS: dict[str, Producer] = {
    "invalid configuration:": _config_error,
    "BWSYNC_X: not a bwsync setting": _unknown_setting,
    "BWSYNC_BITWARDEN__CLIENT_ID: required": _no_api_key,
    "BWSYNC_LDAP__CA_FILE: cannot read": _missing_ca_file,
    "LDAP <url>: server unreachable": _ldap_unreachable,
    "Emails must be unique.": _duplicates,
    "<file> users[N]": _file_entry,
    "Bitwarden token failed: the identity server": _wrong_key,
    "Bitwarden token failed: there is no identity": _wrong_path,
    "Bitwarden token failed: HTTP 429": _login_limit,
    "entry_skipped": _entry_skipped,
    "Bitwarden import failed: HTTP 400 … The request's": _field_error,
    "Bitwarden import failed: HTTP 400 … You cannot": _too_much,
    "Bitwarden import failed: HTTP 400 … Seat limit": _seats,
    "Bitwarden import failed: HTTP 400 … Sync failed": _overwrite_guard,
    "Bitwarden import failed: HTTP 500": _unhandled,
    "Bitwarden … failed: HTTP 429": _still_limited,
    "Bitwarden list members failed: HTTP 404": _proxy_404,
    "another run holds the lease": _lease,
    "another run holds the lease on …: <holder> (it was still running": _lease_ended_since,
    "stopped by SIGTERM before": _stopped,
    "lease_taken_over": _taken_over,
    "state in … has version": _newer_state,
    "state in … is not valid JSON": _bad_json,
    "cannot read file": _unreadable,
    "safety limit reached": _safety,
    "the directory returned no users": _empty,
    "directory entry … is left out of the import": _left_out_overwrite,
    "… is in BWSYNC_SYNC__PROTECTED_MEMBERS": _protected,
    "BWSYNC_SYNC__OVERWRITE_EXISTING=true": _overwrite_first,
    "BWSYNC_SYNC__REMOVAL_MODE=remove": _remove_mode,
    "BWSYNC_STATE__BACKEND=none": _stateless,
    "the memory of the N members": _memory_too_big,
    "metrics_not_delivered": _metrics_not_delivered,
    "cleartext": _cleartext,
    "BWSYNC_BITWARDEN__SERVER: http:// would send": _http_bitwarden,
}
#: Rows whose message needs a real LDAP server with TLS, accounts and entries: produced and
#: asserted by the slapd tests named; here their words must be in the code or that test.
ELSEWHERE = {
    "LDAP <url>: TLS handshake failed": "tests/integration/test_ldap_slapd.py",
    "LDAP <url>: bind as": "tests/integration/test_ldap_slapd.py",
    "LDAP <url>: invalid filter": "tests/integration/test_ldap_slapd.py",
    "LDAP <url>: base DN": "tests/integration/test_ldap_slapd.py",
}


def _key(row: str, keys: dict[str, Any]) -> str | None:
    found = [k for k in keys if row.startswith(k)]
    return max(found, key=len) if found else None


@pytest.mark.parametrize("row", _rows())
def test_row_matches_a_real_message(row: str, request: pytest.FixtureRequest) -> None:
    key = _key(row, PRODUCERS)
    if key is None:
        where = _key(row, ELSEWHERE)
        assert where is not None, f"no producer for the README row {row!r}"
        test = (PACKAGE.parents[1] / ELSEWHERE[where]).read_text()
        source = " ".join(p.read_text() for p in PACKAGE.rglob("*.py"))
        for word in re.split(r"…|<[a-z ]+>", row.removeprefix("LDAP <url>:")):
            assert word.strip() in source or word.strip() in test, (row, word)
        return
    message = PRODUCERS[key](request)
    assert _pattern(row).search(message), f"README row {row!r} does not match {message!r}"


def test_every_producer_has_its_row() -> None:
    rows = _rows()
    assert [k for k in PRODUCERS if not any(row.startswith(k) for row in rows)] == []
