"""The settings contract, as a table: for each source (and sign-in method), each setting it
cannot run without, missing or invalid, gives exit 2 naming that setting from ``sync``,
``plan``, ``check`` and ``check --offline`` alike — and nothing is contacted.

"Nothing contacted" is measured, not assumed: every server a profile names (directory,
Bitwarden, token endpoints) is one loopback listener that counts the connections it accepts.
A control test runs each complete profile's ``check`` and sees the listener contacted, so the
count of zero in the table means what it says.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from bwsync.cli import main
from bwsync.config import DURATION_PATTERN, Settings, _duration_input, parse_duration
from bwsync.errors import ConfigError
from bwsync.redact import redact
from bwsync.settings import load_settings
from tests.fixtures.setting_files import google_key, write_setting_file
from tests.standins.tls import TlsFiles, self_signed_tls

COMMANDS = (("sync",), ("plan",), ("check",), ("check", "--offline"))


class Listener:
    """A loopback listener that counts the connections it accepts, then answers so that every
    client gives up at once instead of retrying: an HTTP 400 (in TLS when the client starts a
    handshake, with ``tls``'s certificate, which the profiles trust) and a hang-up for
    anything else (LDAP)."""

    def __init__(self, tls: TlsFiles) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*tls.server_pair)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.suppress(OSError))
            conn = stack.enter_context(raw)
            conn.settimeout(10)
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"\x16":  # a TLS ClientHello
                conn = stack.enter_context(self.context.wrap_socket(conn, server_side=True))
            elif not first.isalpha():
                return  # not HTTP: hang up
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            conn.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
            )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed_tls(tmp_path_factory.mktemp("listener-tls"))


@pytest.fixture(scope="module")
def listener(tls: TlsFiles) -> Iterator[Listener]:
    found = Listener(tls)
    yield found
    found.close()


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, listener: Listener, tls: TlsFiles
) -> dict[str, str]:
    return _files(tmp_path_factory.mktemp("setting-files"), listener.port, tls)


# -- the profiles: a complete configuration per source and sign-in method -------------------


def _files(tmp: Path, port: int, tls: TlsFiles) -> dict[str, str]:
    """Valid files every profile may point to (the CA is the listener's), and broken ones."""
    shutil.copy(tls.ca_file, tmp / "ca.pem")
    paths = {
        "entra_cert": tmp / "entra.pem",
        "okta_key": tmp / "okta-key.pem",
        "people": tmp / "people.json",
    }
    write_setting_file("X_CERTIFICATE_FILE", paths["entra_cert"])
    write_setting_file("X_PRIVATE_KEY_FILE", paths["okta_key"])
    write_setting_file("BWSYNC_FILE__PATH", paths["people"])
    google = tmp / "google-sa.json"
    google.write_text(json.dumps(google_key(f"https://127.0.0.1:{port}/token")))
    (tmp / "garbage.pem").write_text("not a certificate, not a key\n")
    (tmp / "garbage.json").write_text("{not json")
    out = {k: str(v) for k, v in paths.items()}
    out["google"] = str(google)
    out["ca"] = str(tmp / "ca.pem")
    out["dir"] = str(tmp)
    return out


def _profiles(f: dict[str, str], tmp: Path, port: int) -> dict[str, dict[str, str]]:
    server = f"127.0.0.1:{port}"
    common = {
        "BWSYNC_BITWARDEN__SERVER": f"http://{server}",
        "BWSYNC_BITWARDEN__CLIENT_ID": "organization.00000000-0000-0000-0000-000000000001",
        "BWSYNC_BITWARDEN__CLIENT_SECRET": "bitwarden-secret",
        "BWSYNC_BITWARDEN__MAX_RETRIES": "0",
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(tmp / "state" / "state.json"),
        "BWSYNC_LOG__FORMAT": "json",
    }
    return {
        "ldap": {
            **common,
            "BWSYNC_SOURCE": "ldap",
            "BWSYNC_LDAP__URL": f"ldap://{server}",
            "BWSYNC_LDAP__START_TLS": "true",
            "BWSYNC_LDAP__CA_FILE": f["ca"],
            "BWSYNC_LDAP__BIND_DN": "cn=bwsync,dc=example,dc=com",
            "BWSYNC_LDAP__BIND_PASSWORD": "ldap-secret",
            "BWSYNC_LDAP__BASE_DN": "dc=example,dc=com",
            "BWSYNC_LDAP__TIMEOUT": "5s",
        },
        "entra-secret": {
            **common,
            "BWSYNC_SOURCE": "entra",
            "BWSYNC_ENTRA__TENANT_ID": "00000000-0000-0000-0000-00000000aaaa",
            "BWSYNC_ENTRA__CLIENT_ID": "00000000-0000-0000-0000-00000000bbbb",
            "BWSYNC_ENTRA__CLIENT_SECRET": "entra-secret",
            "BWSYNC_ENTRA__AUTHORITY_URL": f"https://{server}",
            "BWSYNC_ENTRA__GRAPH_URL": f"https://{server}",
            "BWSYNC_ENTRA__CA_FILE": f["ca"],
        },
        "entra-certificate": {
            **common,
            "BWSYNC_SOURCE": "entra",
            "BWSYNC_ENTRA__TENANT_ID": "00000000-0000-0000-0000-00000000aaaa",
            "BWSYNC_ENTRA__CLIENT_ID": "00000000-0000-0000-0000-00000000bbbb",
            "BWSYNC_ENTRA__CERTIFICATE_FILE": f["entra_cert"],
            "BWSYNC_ENTRA__AUTHORITY_URL": f"https://{server}",
            "BWSYNC_ENTRA__GRAPH_URL": f"https://{server}",
            "BWSYNC_ENTRA__CA_FILE": f["ca"],
        },
        "google": {
            **common,
            "BWSYNC_SOURCE": "google",
            "BWSYNC_GOOGLE__CREDENTIALS_FILE": f["google"],
            "BWSYNC_GOOGLE__ADMIN_EMAIL": "admin@example.com",
            "BWSYNC_GOOGLE__API_URL": f"https://{server}",
            "BWSYNC_GOOGLE__CA_FILE": f["ca"],
        },
        "okta-token": {
            **common,
            "BWSYNC_SOURCE": "okta",
            "BWSYNC_OKTA__ORG_URL": f"https://{server}",
            "BWSYNC_OKTA__TOKEN": "okta-token",
            "BWSYNC_OKTA__CA_FILE": f["ca"],
        },
        "okta-oauth": {
            **common,
            "BWSYNC_SOURCE": "okta",
            "BWSYNC_OKTA__ORG_URL": f"https://{server}",
            "BWSYNC_OKTA__CLIENT_ID": "0oa1b2c3d4e5f6g7h8i9",
            "BWSYNC_OKTA__PRIVATE_KEY_FILE": f["okta_key"],
            "BWSYNC_OKTA__CA_FILE": f["ca"],
        },
        "onelogin": {
            **common,
            "BWSYNC_SOURCE": "onelogin",
            "BWSYNC_ONELOGIN__CLIENT_ID": "0123456789abcdef",
            "BWSYNC_ONELOGIN__CLIENT_SECRET": "onelogin-secret",
            "BWSYNC_ONELOGIN__API_URL": f"https://{server}",
            "BWSYNC_ONELOGIN__CA_FILE": f["ca"],
        },
        "file": {**common, "BWSYNC_SOURCE": "file", "BWSYNC_FILE__PATH": f["people"]},
    }


PROFILES = (
    "ldap",
    "entra-secret",
    "entra-certificate",
    "google",
    "okta-token",
    "okta-oauth",
    "onelogin",
    "file",
)

#: None removes the variable; "{tmp}/…" names a file under the test's directory.
MISSING = None
GARBAGE_PEM = "{tmp}/garbage.pem"
NO_SUCH_FILE = "{tmp}/no-such-file.pem"


@dataclass(frozen=True)
class Case:
    profile: str
    variable: str
    value: str | None

    @property
    def id(self) -> str:
        what = "missing" if self.value is None else self.value.replace("{tmp}/", "")
        return f"{self.profile}:{self.variable.removeprefix('BWSYNC_')}={what}"


PER_SOURCE = [
    Case("ldap", "BWSYNC_LDAP__URL", MISSING),
    Case("ldap", "BWSYNC_LDAP__URL", "http://127.0.0.1"),
    Case("ldap", "BWSYNC_LDAP__URL", "ldap://127.0.0.1:port"),
    Case("ldap", "BWSYNC_LDAP__BASE_DN", MISSING),
    Case("ldap", "BWSYNC_LDAP__BIND_PASSWORD", MISSING),
    Case("ldap", "BWSYNC_LDAP__BIND_DN", MISSING),
    Case("ldap", "BWSYNC_LDAP__CA_FILE", NO_SUCH_FILE),
    Case("ldap", "BWSYNC_LDAP__CA_FILE", GARBAGE_PEM),
    Case("ldap", "BWSYNC_LDAP__START_TLS", "maybe"),
    Case("ldap", "BWSYNC_LDAP__ENGINE", "fastest"),
    Case("ldap", "BWSYNC_LDAP__TIMEOUT", "soon"),
    Case("ldap", "BWSYNC_LDAP__PAGE_SIZE", "0"),
    Case("entra-secret", "BWSYNC_ENTRA__TENANT_ID", MISSING),
    Case("entra-secret", "BWSYNC_ENTRA__CLIENT_ID", MISSING),
    Case("entra-secret", "BWSYNC_ENTRA__CLIENT_SECRET", MISSING),
    Case("entra-secret", "BWSYNC_ENTRA__CA_FILE", GARBAGE_PEM),
    Case("entra-secret", "BWSYNC_ENTRA__CLOUD", "mars"),
    Case("entra-certificate", "BWSYNC_ENTRA__CERTIFICATE_FILE", GARBAGE_PEM),
    Case("entra-certificate", "BWSYNC_ENTRA__CERTIFICATE_FILE", NO_SUCH_FILE),
    Case("entra-certificate", "BWSYNC_ENTRA__CLIENT_SECRET", "also-a-secret"),
    Case("google", "BWSYNC_GOOGLE__CREDENTIALS_FILE", MISSING),
    Case("google", "BWSYNC_GOOGLE__CREDENTIALS_FILE", "{tmp}/garbage.json"),
    Case("google", "BWSYNC_GOOGLE__CREDENTIALS_FILE", "{tmp}/ca.pem"),
    Case("google", "BWSYNC_GOOGLE__ADMIN_EMAIL", MISSING),
    Case("google", "BWSYNC_GOOGLE__CA_FILE", GARBAGE_PEM),
    Case("okta-token", "BWSYNC_OKTA__ORG_URL", MISSING),
    Case("okta-token", "BWSYNC_OKTA__ORG_URL", "http://127.0.0.1"),
    Case("okta-token", "BWSYNC_OKTA__TOKEN", MISSING),
    Case("okta-token", "BWSYNC_OKTA__CA_FILE", GARBAGE_PEM),
    Case("okta-oauth", "BWSYNC_OKTA__PRIVATE_KEY_FILE", MISSING),
    Case("okta-oauth", "BWSYNC_OKTA__PRIVATE_KEY_FILE", GARBAGE_PEM),
    Case("okta-oauth", "BWSYNC_OKTA__PRIVATE_KEY_FILE", "{tmp}/ca.pem"),
    Case("okta-oauth", "BWSYNC_OKTA__CLIENT_ID", MISSING),
    Case("onelogin", "BWSYNC_ONELOGIN__CLIENT_ID", MISSING),
    Case("onelogin", "BWSYNC_ONELOGIN__CLIENT_SECRET", MISSING),
    Case("onelogin", "BWSYNC_ONELOGIN__REGION", "mars"),
    Case("onelogin", "BWSYNC_ONELOGIN__API_URL", "http://127.0.0.1"),
    Case("onelogin", "BWSYNC_ONELOGIN__CA_FILE", GARBAGE_PEM),
    Case("file", "BWSYNC_FILE__PATH", MISSING),
    Case("file", "BWSYNC_FILE__PATH", NO_SUCH_FILE),
]
#: What every source needs alike: the organization API key and what reaches Bitwarden.
EVERY_SOURCE = [
    (variable, value)
    for variable, value in (
        ("BWSYNC_BITWARDEN__CLIENT_ID", MISSING),
        ("BWSYNC_BITWARDEN__CLIENT_ID", "user.1234"),
        ("BWSYNC_BITWARDEN__CLIENT_SECRET", MISSING),
        ("BWSYNC_BITWARDEN__CA_FILE", GARBAGE_PEM),
        ("BWSYNC_BITWARDEN__SERVER", "ftp://vault.example.com"),
        ("BWSYNC_STATE__LEASE_SECONDS", "10"),
    )
]
CASES = PER_SOURCE + [Case(p, v, x) for p in PROFILES for v, x in EVERY_SOURCE]


def _apply(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    files: dict[str, str],
    case: Case | None = None,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if case is None:
        return
    if case.value is None:
        monkeypatch.delenv(case.variable, raising=False)
    else:
        monkeypatch.setenv(case.variable, case.value.replace("{tmp}", files["dir"]))


Run = Callable[[tuple[str, ...]], tuple[int, str, list[str]]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """A command's exit code, its whole output, and the settings problems it printed."""

    def go(command: tuple[str, ...]) -> tuple[int, str, list[str]]:
        code = main(list(command))
        captured = capsys.readouterr()
        out = captured.out + captured.err
        if command[0] == "check":
            problems = [
                line.removeprefix("FAIL  settings: ")
                for line in captured.out.splitlines()
                if line.startswith("FAIL  settings: ")
            ]
        else:
            problems = [
                line.strip() for line in captured.err.splitlines() if line.startswith("  BWSYNC_")
            ]
        return code, out, problems

    return go


def test_the_table_covers_every_source() -> None:
    sources = {p.split("-")[0] for p in PROFILES}
    assert sources == {"ldap", "entra", "google", "okta", "onelogin", "file"}
    assert {c.profile for c in PER_SOURCE} == set(PROFILES)
    assert len(CASES) * len(COMMANDS) == 352  # the count reported for issue 15


@pytest.mark.parametrize("profile", PROFILES)
def test_each_complete_profile_passes_the_settings_and_contacts_the_listener(
    profile: str,
    listener: Listener,
    files: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run: Run,
) -> None:
    """The control: the profiles are complete (``check --offline`` is 0) and point every
    server at the listener (``check`` reaches it), so a count of zero below is meaningful."""
    _apply(monkeypatch, _profiles(files, tmp_path, listener.port)[profile], files)
    code, out, problems = run(("check", "--offline"))
    assert (code, problems) == (0, []), out
    before = listener.connections
    code, out, problems = run(("check",))
    assert problems == [], out
    assert code in (3, 4), out  # the listener hangs up: a directory or Bitwarden failure
    if profile != "file":  # the file source reads a local file; Bitwarden is still contacted
        assert "FAIL  directory" in out, out
    assert listener.connections > before


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_missing_or_invalid_setting_is_exit_2_naming_it_and_nothing_is_contacted(
    case: Case,
    command: tuple[str, ...],
    listener: Listener,
    files: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run: Run,
) -> None:
    _apply(monkeypatch, _profiles(files, tmp_path, listener.port)[case.profile], files, case)
    before = listener.connections
    code, out, problems = run(command)
    assert code == 2, out
    assert problems, out
    assert all(p.startswith("BWSYNC_") for p in problems), problems
    assert any(case.variable in p for p in problems), problems
    assert "Traceback" not in out
    assert listener.connections == before, "a server was contacted"
    assert not (tmp_path / "state").exists(), "the state store was touched"


# -- values as an admin writes them --------------------------------------------------------

SOURCE_MINIMUM = {
    "ldap": {
        "BWSYNC_SOURCE": "ldap",
        "BWSYNC_LDAP__URL": "ldap://127.0.0.1",
        "BWSYNC_LDAP__BASE_DN": "dc=x",
    },
    "entra": {
        "BWSYNC_SOURCE": "entra",
        "BWSYNC_ENTRA__TENANT_ID": "t",
        "BWSYNC_ENTRA__CLIENT_ID": "c",
        "BWSYNC_ENTRA__CLIENT_SECRET": "s",
    },
}


@pytest.mark.parametrize(
    ("variable", "written", "read"),
    [
        ("BWSYNC_LOG__LEVEL", "DEBUG", ("log", "level", "debug")),
        ("BWSYNC_LOG__LEVEL", "Warn", ("log", "level", "warning")),
        ("BWSYNC_LOG__FORMAT", " JSON ", ("log", "format", "json")),
        ("BWSYNC_STATE__BACKEND", "None", ("state", "backend", "none")),
        ("BWSYNC_SYNC__REMOVAL_MODE", "REVOKE", ("sync", "removal_mode", "revoke")),
        ("BWSYNC_SYNC__STALE_GROUPS", "Delete", ("sync", "stale_groups", "delete")),
        ("BWSYNC_LDAP__ENGINE", "LDAP3", ("ldap", "engine", "ldap3")),
        ("BWSYNC_ENTRA__CLOUD", "USGov", ("entra", "cloud", "usgov")),
        ("BWSYNC_SYNC__USERS", " False ", ("sync", "users", False)),
        ("BWSYNC_SYNC__REMOVE_MISSING", "YES", ("sync", "remove_missing", True)),
        ("BWSYNC_SYNC__GROUPS", "off", ("sync", "groups", False)),
        ("BWSYNC_LDAP__START_TLS", "1", ("ldap", "start_tls", True)),
        ("BWSYNC_STATE__LEASE_SECONDS", "15m", ("state", "lease_seconds", 900.0)),
        ("BWSYNC_STATE__LEASE_SECONDS", "900", ("state", "lease_seconds", 900.0)),
        ("BWSYNC_SYNC__FULL_RECONCILE_EVERY", "1h30m", ("sync", "full_reconcile_every", 5400.0)),
        ("BWSYNC_SYNC__FULL_RECONCILE_EVERY", "7d", ("sync", "full_reconcile_every", 604800.0)),
        ("BWSYNC_BITWARDEN__TIMEOUT", "2M", ("bitwarden", "timeout", 120.0)),
        (
            "BWSYNC_BITWARDEN__LOGIN_RATE_LIMIT_WAIT",
            "90s",
            ("bitwarden", "login_rate_limit_wait", 90.0),
        ),
        ("BWSYNC_LDAP__TIMEOUT", "2.5", ("ldap", "timeout", 2.5)),
        ("BWSYNC_STOP_GRACE_SECONDS", "45s", (None, "stop_grace_seconds", 45.0)),
        ("BWSYNC_LDAP__CA_FILE", "", ("ldap", "ca_file", None)),  # an env file's "unset"
    ],
)
def test_values_read_as_an_admin_writes_them(
    variable: str,
    written: str,
    read: tuple[str | None, str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    section, field, value = read
    if section in ("ldap", "entra"):  # another source's setting needs that source chosen
        for name, needed in SOURCE_MINIMUM[section].items():
            monkeypatch.setenv(name, needed)
    monkeypatch.setenv(variable, written)
    settings = load_settings()
    holder = settings if section is None else getattr(settings, section)
    assert getattr(holder, field) == value


@pytest.mark.parametrize(
    ("variable", "written"),
    [
        ("BWSYNC_STATE__LEASE_SECONDS", "15x"),
        ("BWSYNC_STATE__LEASE_SECONDS", "1h30"),
        ("BWSYNC_STATE__LEASE_SECONDS", "10s"),  # a duration, below the bound
        ("BWSYNC_BITWARDEN__TIMEOUT", "-5m"),
        ("BWSYNC_SYNC__USERS", "maybe"),
        ("BWSYNC_LOG__LEVEL", "verbose"),
    ],
)
def test_a_value_that_means_nothing_is_named(
    variable: str, written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, written)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert problem.startswith(f"{variable}: ")


def _is_duration(model: type[BaseModel], name: str) -> bool:
    return any(
        getattr(meta, "func", None) is _duration_input for meta in model.model_fields[name].metadata
    )


def test_every_wait_and_timeout_setting_is_a_duration() -> None:
    """One duration type for every wait: a setting added later whose name says it is a time
    must take `15m` as the others do."""
    timed = re.compile(r"timeout|seconds|every|wait|interval|grace|lease")
    found = []
    models: list[type[BaseModel]] = [Settings]
    for field in Settings.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            models.append(field.annotation)
    for model in models:
        for name, field in model.model_fields.items():
            if timed.search(name) and not (
                isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            ):
                found.append(name)
                assert _is_duration(model, name), f"{model.__name__}.{name} is not a Duration"
    assert {"timeout", "lease_seconds", "full_reconcile_every", "stop_grace_seconds"} <= set(found)


@pytest.mark.parametrize(
    "text",
    ["900", "15m", "1h30m", "1h 30m", " 2.5 ", "90S", "x", "1h30", "", "-5", "1.5h", "inf", "1e3"],
)
def test_the_charts_duration_pattern_accepts_what_bwsync_reads(text: str) -> None:
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert bool(re.match(DURATION_PATTERN, text)) is parsed


# -- reading the settings, not only validating them ---------------------------------------


@pytest.mark.parametrize(
    ("setup", "named"),
    [
        ("non_utf8_secret", "BWSYNC_BITWARDEN__CLIENT_SECRET: the secret file"),
        ("secrets_dir_is_a_file", "BWSYNC_SECRETS_DIR: "),
        ("section_not_json", "BWSYNC_LDAP: not valid JSON"),
    ],
)
def test_settings_that_cannot_be_read_are_named_lines(
    setup: str, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if setup == "non_utf8_secret":
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "bwsync_bitwarden__client_secret").write_bytes(b"\xff\xfesecret")
        monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    elif setup == "secrets_dir_is_a_file":
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(tmp_path / "file"))
    else:
        monkeypatch.setenv("BWSYNC_LDAP", "{not json")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert any(p.startswith(named) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("BWSYNC_BITWARDEN__SERVER", "https://vault.example.com:99999", "has an invalid port"),
        ("BWSYNC_BITWARDEN__API_URL", "https://vault.example.com:0x", "has an invalid port"),
        ("BWSYNC_STATE__ENDPOINT", "http://[::1", "Invalid IPv6 URL"),
        ("BWSYNC_OKTA__TOKEN", "tök en", "printable ASCII"),
    ],
)
def test_values_a_client_could_not_use_are_refused_here(
    variable: str, value: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each reached the network code before (an httpx error, or a UnicodeEncodeError in a
    header: exit 1)."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert problem.startswith(f"{variable}: ") and words in problem
    assert "tök" not in problem  # a secret is never echoed


@pytest.mark.parametrize("delimiter", ["#", "/", "?", " ", "@", ":"])
@pytest.mark.parametrize(
    ("variable", "url", "context"),
    [
        ("BWSYNC_BITWARDEN__SERVER", "https://admin:{pw}@bw.example.com:99999", {}),
        ("BWSYNC_BITWARDEN__API_URL", "ftp://admin:{pw}@bw.example.com/api", {}),
        ("BWSYNC_LDAP__URL", "ldap://admin:{pw}@ldap.example.com:x", SOURCE_MINIMUM["ldap"]),
        ("BWSYNC_METRICS__PUSHGATEWAY_URL", "https://admin:{pw}@push.example.com:x", {}),
        (
            "BWSYNC_STATE__ENDPOINT",
            "https://admin:{pw}@s3.example.com:x",
            {"BWSYNC_STATE__BACKEND": "objectstore", "BWSYNC_STATE__URL": "s3://b/k"},
        ),
    ],
)
def test_a_url_with_a_password_is_never_echoed_in_a_settings_error(
    variable: str,
    url: str,
    context: dict[str, str],
    delimiter: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A password with a character a URL does not allow unencoded there (``#``, ``/``, ``?``, a
    space) splits the URL in the wrong place: neither the parser's host nor a strip of
    ``user:password@`` then finds the password, and the value must not be shown at all."""
    password = f"Zq{delimiter}Leak9x"
    for name, value in {**context, variable: url.format(pw=password)}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert problem.startswith(f"{variable}: "), problem
    assert main(["check", "--offline"]) == 2
    for text in (str(caught.value), problem, *capsys.readouterr()):
        assert "Zq" not in text and "Leak9x" not in text, text
        assert "'x'" not in text and "'Zq'" not in text, text


def test_secrets_as_written_are_masked_before_the_settings_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variables and secret files of ``SecretStr`` settings, and URL passwords however written,
    are remembered first; a setting that is no secret (a key *file*'s path) is not."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "bwsync_onelogin__client_secret").write_text(" FileSecret-1 \n")
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("BWSYNC_LDAP__BIND_PASSWORD", "EnvSecret-2")
    monkeypatch.setenv("BWSYNC_STATE__ENDPOINT", "https://u:Url#Secret-3@h.example")
    monkeypatch.setenv("BWSYNC_OKTA__PRIVATE_KEY_FILE", "/keys/okta-key.pem")
    monkeypatch.setenv("BWSYNC_SYNC__USERS", "maybe")  # so the settings are refused
    with pytest.raises(ConfigError):
        load_settings()
    text = redact("FileSecret-1 EnvSecret-2 Url#Secret-3 /keys/okta-key.pem")
    assert text == "*** *** *** /keys/okta-key.pem"
