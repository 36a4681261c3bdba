"""The pages a new admin follows, run as written: docs/sources/ldap.md (the directory side
included), docs/container.md and docs/operations.md (tests/deploy/doc_blocks.py says how).

The directory is a real OpenLDAP configured as Debian and Ubuntu install it — `cn=config`,
root's `ldapi:///` socket, `olcDatabase={1}mdb` — with a locked-down catch-all rule: people
read each other, anonymous may bind, and anything else (a service account) gets nothing unless
a rule grants it. So ldap.md's rule is what lets bwsync read, and the test sees whether it
takes anything from everyone else. Bitwarden is the stand-in on loopback; the container
pages run the image that tests/deploy/test_image.py builds, `docker` being podman with this
machine's flags on the host network.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bwsync.model import STATUS_REVOKED
from tests.fixtures.kube import KubeApiServer, kube_bin_dir, under_ci
from tests.fixtures.ldap import Pki, free_ports, ldif_entry, wait_for_port
from tests.standins.bitwarden import FakeBitwarden

from . import doc_blocks
from .conftest import ROOT
from .podman import BASE_IMAGE, Podman, missing_binaries
from .test_image import TAG

pytestmark = [pytest.mark.slow]

DOCS = ROOT / "docs"
LDAP_MD = DOCS / "sources" / "ldap.md"
CONTAINER_MD = DOCS / "container.md"
OPERATIONS_MD = DOCS / "operations.md"
BASE_DN = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret-1"
BWSYNC_DN = f"cn=bwsync,ou=services,{BASE_DN}"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
USER_PASSWORD = "user-secret-1"
#: Debian's ACL for cn=config (root over ldapi manages it), then a locked-down database.
CONFIG_ACL = (
    "access to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage "
    "by * break"
)
DATABASE_ACL = f"""\
access to attrs=userPassword by self write by anonymous auth by * none
access to attrs=shadowLastChange by self write by * read
access to * by dn.subtree="{PEOPLE}" read by anonymous auth by * none
"""


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, **kw)  # type: ignore[call-overload,no-any-return]


@dataclass
class Directory:
    """slapd as a Debian package sets it up, on loopback ports of its own."""

    workdir: Path
    pki: Pki
    port: int = 0
    ldaps_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "ldapi"

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.socket), safe="")

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @classmethod
    def create(
        cls, workdir: Path, people: dict[str, str | None], groups: dict[str, list[str]]
    ) -> Directory:
        if shutil.which("slapd") is None or shutil.which("slaptest") is None:
            pytest.skip("OpenLDAP slapd is not installed (apt-get install slapd ldap-utils)")
        workdir.mkdir(parents=True)
        self = cls(workdir, Pki.create(workdir / "pki"))
        (workdir / "db").mkdir()
        (workdir / "slapd.d").mkdir()
        rootpw = _run(["slappasswd", "-s", ADMIN_PASSWORD]).stdout.strip()
        schemas = "\n".join(
            f"include /etc/ldap/schema/{s}.schema"
            for s in ("core", "cosine", "nis", "inetorgperson")
        )
        conf = workdir / "slapd.conf"
        conf.write_text(f"""{schemas}
pidfile {workdir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {self.pki.ca_file}
TLSCertificateFile {self.pki.cert_file}
TLSCertificateKeyFile {self.pki.key_file}
database config
{CONFIG_ACL}
database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {rootpw}
directory {workdir}/db
{DATABASE_ACL}""")
        userpw = _run(["slappasswd", "-s", USER_PASSWORD]).stdout.strip()
        entries = [
            (
                BASE_DN,
                {"objectClass": ["dcObject", "organization"], "dc": "example", "o": "Example"},
            ),
            (PEOPLE, {"objectClass": "organizationalUnit", "ou": "people"}),
            (GROUPS, {"objectClass": "organizationalUnit", "ou": "groups"}),
            (f"ou=services,{BASE_DN}", {"objectClass": "organizationalUnit", "ou": "services"}),
        ]
        for uid, mail in people.items():
            attrs: dict[str, str | list[str]] = {
                "objectClass": "inetOrgPerson", "uid": uid, "cn": uid, "sn": uid,
                "userPassword": userpw,
            }  # fmt: skip
            if mail:
                attrs["mail"] = mail
            entries.append((f"uid={uid},{PEOPLE}", attrs))
        for cn, members in groups.items():
            entries.append((f"cn={cn},{GROUPS}", {
                "objectClass": "groupOfNames", "cn": cn,
                "member": [f"uid={m},{PEOPLE}" for m in members],
            }))  # fmt: skip
        ldif = workdir / "load.ldif"
        ldif.write_text("".join(ldif_entry(dn, a) for dn, a in entries))
        # Loaded with slapd.conf, then converted to cn=config (slaptest opens the database).
        res = _run(["slapadd", "-q", "-f", str(conf), "-b", BASE_DN, "-l", str(ldif)])
        assert res.returncode == 0, res.stderr
        res = _run(["slaptest", "-f", str(conf), "-F", str(workdir / "slapd.d")])
        assert res.returncode == 0, res.stderr
        self.start()
        return self

    def start(self) -> None:
        self.port, self.ldaps_port = free_ports(2)
        urls = (
            f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ldaps_port}/ {self.ldapi_url}"
        )
        self.proc = subprocess.Popen(
            ["slapd", "-d", "0", "-F", str(self.workdir / "slapd.d"), "-h", urls],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.ldaps_port, self.proc, time.monotonic() + 20)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def search(
        self, who: str, password: str, filterstr: str, *attrs: str
    ) -> subprocess.CompletedProcess[str]:
        """``ldapsearch`` over LDAPS as ``who``."""
        return _run(
            ["ldapsearch", "-LLL", "-H", self.ldaps_url, "-D", who, "-w", password,
             "-b", BASE_DN, filterstr, *attrs],
            env={**os.environ, "LDAPTLS_CACERT": str(self.pki.ca_file)},
        )  # fmt: skip

    def modify_config(self, ldif: str) -> None:
        res = _run(["ldapmodify", "-Y", "EXTERNAL", "-H", self.ldapi_url], input=ldif)
        assert res.returncode == 0, res.stderr

    def add_as_admin(self, ldif: str) -> None:
        res = _run(
            ["ldapadd", "-x", "-H", f"ldap://127.0.0.1:{self.port}", "-D", ADMIN_DN,
             "-w", ADMIN_PASSWORD], input=ldif,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("ldapmodify -Y EXTERNAL over ldapi:/// is root's (as on a real server)")


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    """ada, alan and grace with emails, nomail without; engineering (ada, alan) and platform
    (alan, grace)."""
    _require_root()
    d = Directory.create(
        tmp_path / "slapd",
        {"ada": "ada@example.com", "alan": "alan@example.com", "grace": "grace@example.com",
         "nomail": None},
        {"engineering": ["ada", "alan"], "platform": ["alan", "grace"]},
    )  # fmt: skip
    yield d
    d.stop()


@pytest.fixture
def bitwarden() -> Iterator[FakeBitwarden]:
    """The stand-in with an owner and grace, invited by hand before bwsync."""
    fake = FakeBitwarden(self_hosted=True)
    fake.add_owner("owner@example.com")
    fake.add_member("grace@example.com")
    fake.start()
    yield fake
    fake.stop()


def _tool_path() -> str:
    """bwsync (this virtualenv), the test's tools (.tools/bin) and the system's."""
    parts = [str(Path(sys.executable).parent), str(ROOT / ".tools" / "bin")]
    return ":".join([*parts, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])


def _session(tmp_path: Path, extra_path: list[Path] = ()) -> doc_blocks.Session:  # type: ignore[assignment]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    path = ":".join([*(str(p) for p in extra_path), _tool_path()])
    return doc_blocks.Session(
        tmp_path / "work", {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8"}
    )


@dataclass
class PageRun:
    """Runs a page's blocks in one session, with the test's substitutions."""

    session: doc_blocks.Session
    subs: doc_blocks.Substitutions
    results: dict[int, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def run(self, block: doc_blocks.Block) -> None:
        text = self.subs(block.text)
        if block.kind == "file":
            (self.session.workdir / block.argument).write_text(text)
        elif block.kind in ("run", "kubernetes"):
            expected = int(block.argument.removeprefix("exit=")) if block.argument else 0
            res = self.session.run(text)
            self.results[block.line] = res
            assert res.returncode == expected, (
                f"{block.where}: exit {res.returncode}\n{text}\n{res.stdout}\n{res.stderr}"
            )
        elif block.kind == "background":
            self.session.start(text.strip(), block.argument, ready="CLIENT_SECRET=")
        elif block.kind == "console":
            self._console(block, text)

    def _console(self, block: doc_blocks.Block, text: str) -> None:
        command: str | None = None
        shown: list[str] = []
        for line in [*text.splitlines(), "$ "]:
            if not line.startswith("$ "):
                shown.append(line)
                continue
            if command:
                res = self.session.run(command)
                assert res.returncode == 0, (
                    f"{block.where}: {command}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
                )
                missing = doc_blocks.match_output(shown, res.stdout)
                assert missing is None, (
                    f"{block.where}: {command}\nnot shown: {missing!r}\n{res.stdout}"
                )
            command, shown = line[2:].strip(), []


def _docker(tmp_path: Path) -> Path:
    """A `docker` that is podman with this machine's flags, on the host network."""
    podman = Podman.setup()
    bindir = tmp_path / "docker-bin"
    bindir.mkdir()
    flags = " ".join(shlex.quote(a) for a in podman.argv[1:])
    conf = shlex.quote(podman.env["CONTAINERS_CONF"])
    (bindir / "docker").write_text(f"""#!/bin/bash
# docker, as podman with this machine's storage and runtime (tests/deploy/podman.py); containers
# use the host's network, where the test's servers listen on loopback.
export CONTAINERS_CONF={conf}
if [ "${{1:-}}" = run ]; then shift; exec podman {flags} run --network=host "$@"; fi
exec podman {flags} "$@"
""")
    (bindir / "docker").chmod(0o755)
    return bindir


@pytest.fixture(scope="session")
def image() -> str:
    """The image test_image.py builds (podman's layer cache makes this quick after it)."""
    if missing := missing_binaries():
        msg = f"{', '.join(missing)} not installed (./dev setup installs them)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must have them")
        pytest.skip(msg)
    _require_root()
    podman = Podman.setup()
    podman.ensure_base_image()
    podman.build(
        ROOT, TAG, {"PYTHON_IMAGE": BASE_IMAGE, "VERSION": "0.0.0-test", "REVISION": "test"}
    )
    return TAG


def test_every_block_has_a_directive() -> None:
    for doc in (LDAP_MD, CONTAINER_MD, OPERATIONS_MD):
        kinds = {b.kind for b in doc_blocks.blocks(doc)}
        assert "run" in kinds, doc


def test_unmarked_block_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```\necho hi\n```\n")
    with pytest.raises(doc_blocks.UnmarkedBlock, match=r"page\.md:3"):
        doc_blocks.blocks(page)


def test_console_output_matching() -> None:
    actual = "ok    settings (ldap)\nACTION  SUBJECT\ninvite  a@x\nlink  g@x\ngroup_create  e\n"
    assert (
        doc_blocks.match_output(["ok settings …", "ACTION SUBJECT", "…", "link g@x"], actual)
        is None
    )
    assert (
        doc_blocks.match_output(["ok settings …", "ACTION SUBJECT", "link g@x"], actual)
        == "link g@x"
    )
    assert (
        doc_blocks.match_output(["ok settings (ldap)", "…", "invite b@x"], actual) == "invite b@x"
    )


def _ldap_subs(directory: Directory, fake: FakeBitwarden, image: str) -> doc_blocks.Substitutions:
    return doc_blocks.Substitutions([
        ("/path/to/your-ldap-ca.pem", str(directory.pki.ca_file)),
        ("ldaps://ldap.example.com:636", directory.ldaps_url),
        ("ldaps://ldap.example.com ", f"{directory.ldaps_url} "),
        # ldapadd's -W prompts for the admin's password; a test cannot type it.
        (f"-D {ADMIN_DN} -W", f"-D {ADMIN_DN} -w {ADMIN_PASSWORD}"),
        ("ldapi:///", directory.ldapi_url),
        ("BWSYNC_BITWARDEN__CLIENT_ID=organization.<uuid>",
         f"BWSYNC_BITWARDEN__CLIENT_ID={fake.client_id}\nBWSYNC_BITWARDEN__SERVER={fake.base_url}"),
        ("the-api-key-secret", fake.client_secret),
        ("token from https://identity.bitwarden.com", f"token from {fake.identity_url}"),
        ("ghcr.io/bwsync/bwsync", image),
    ])  # fmt: skip


def test_ldap_page(
    directory: Directory, bitwarden: FakeBitwarden, image: str, tmp_path: Path
) -> None:
    """docs/sources/ldap.md top to bottom: secrets, service account, ACL, settings, and the
    walk-through's `check` and `plan` in the container, output as shown."""
    session = _session(tmp_path, [_docker(tmp_path)])
    page = PageRun(session, _ldap_subs(directory, bitwarden, image))
    for block in doc_blocks.blocks(LDAP_MD):
        page.run(block)
    assert page.subs.unused() == []
    secrets = session.workdir / "secrets"
    password = (secrets / "bwsync_ldap__bind_password").read_text()

    # What the page's own check shows: every email and every membership.
    check = next(r for r in page.results.values() if "member: uid=" in r.stdout)
    for who in ("ada", "alan", "grace"):
        assert f"mail: {who}@example.com" in check.stdout
    # The account reads nothing else: no password hash.
    hashes = directory.search(BWSYNC_DN, password, "(uid=ada)", "userPassword")
    assert hashes.returncode == 0 and "userPassword" not in hashes.stdout, hashes.stdout
    # Everyone else reads what they did before the rule: a colleague's entry and email.
    colleague = directory.search(
        f"uid=ada,{PEOPLE}", USER_PASSWORD, "(mail=alan@example.com)", "mail"
    )
    assert colleague.returncode == 0, colleague.stderr
    assert "mail: alan@example.com" in colleague.stdout
    # The walk-through changed nothing: check and plan only.
    assert bitwarden.requests_to("import") == []


def _doc_acl() -> str:
    acl = next(b for b in doc_blocks.blocks(LDAP_MD) if "olcAccess" in b.text).text
    return acl.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0] + "\n"


@pytest.mark.parametrize("with_break", [True, False], ids=["as-documented", "without-break"])
def test_ldap_page_acl_keeps_colleagues_visible(directory: Directory, with_break: bool) -> None:
    """The page's rule leaves an ordinary user's search for a colleague as it was; the same
    rule without `by * break` is what broke it (`No such object`), so this check can fail."""
    acl = _doc_acl()
    assert "by * break" in acl
    if not with_break:
        acl = "\n".join(line for line in acl.splitlines() if "by * break" not in line) + "\n"
    directory.modify_config(acl)
    found = directory.search(f"uid=ada,{PEOPLE}", USER_PASSWORD, "(mail=alan@example.com)", "mail")
    if with_break:
        assert "mail: alan@example.com" in found.stdout, found.stdout + found.stderr
    else:
        assert "mail: alan@example.com" not in found.stdout
        assert found.returncode == 32, found.stdout + found.stderr  # No such object


def test_ldap_page_minimal_settings_are_the_example_file_minus_its_additions() -> None:
    """examples/ldap/sync.env is the page's minimal settings plus the additions the page lists."""
    minimal = next(b for b in doc_blocks.blocks(LDAP_MD) if b.kind == "file").text
    example = (ROOT / "examples" / "ldap" / "sync.env").read_text()

    def settings(text: str) -> dict[str, str]:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        return dict(ln.split("=", 1) for ln in lines)

    page, ex = settings(minimal), settings(example)
    assert page.keys() <= ex.keys()
    for key, value in page.items():
        assert ex[key] == value or "<uuid>" in value, key
    text = LDAP_MD.read_text()
    for key, value in ex.items():
        if key not in page:
            short = key.removeprefix("BWSYNC_").removeprefix("LDAP__")
            assert f"{short}={value}" in text or short.startswith("STATE__"), key


BWSYNC_PASSWORD = "bwsync-bind-secret-1"


def _grant_bwsync(directory: Directory) -> None:
    """ldap.md's service account and rule, made directly: the pages after it assume them."""
    hashed = _run(["slappasswd", "-s", BWSYNC_PASSWORD]).stdout.strip()
    directory.add_as_admin(ldif_entry(BWSYNC_DN, {
        "objectClass": ["simpleSecurityObject", "organizationalRole"], "cn": "bwsync",
        "userPassword": hashed,
    }))  # fmt: skip
    directory.modify_config(_doc_acl())


def test_container_page(
    directory: Directory, bitwarden: FakeBitwarden, image: str, tmp_path: Path
) -> None:
    """docs/container.md's one-off sync, state volume and hardened run, in that order: the
    first sync imports, the volume run imports again (an empty volume), the hardened run finds
    the state the volume kept and sends nothing."""
    _grant_bwsync(directory)
    volume = f"bwsync-state-{uuid.uuid4().hex[:8]}"  # one per test: the podman storage is shared
    session = _session(tmp_path, [_docker(tmp_path)])
    subs = doc_blocks.Substitutions([
        ("ldaps://ldap.example.com:636", directory.ldaps_url),
        ("BWSYNC_BITWARDEN__SERVER=us", f"BWSYNC_BITWARDEN__SERVER={bitwarden.base_url}"),
        ("organization.00000000-0000-0000-0000-000000000000", bitwarden.client_id),
        ("the-ldap-password", BWSYNC_PASSWORD),
        ("the-api-key-secret", bitwarden.client_secret),
        ("/path/to/your-ldap-ca.pem", str(directory.pki.ca_file)),
        ("bwsync-state", volume),
        ("ghcr.io/bwsync/bwsync", image),
    ])  # fmt: skip
    page = PageRun(session, subs)
    try:
        for block in doc_blocks.blocks(CONTAINER_MD):
            page.run(block)
    finally:
        session.run(f"docker volume rm --force {volume} >/dev/null")
    assert subs.unused() == []
    assert len(bitwarden.requests_to("import")) == 2
    assert bitwarden.find_member(email="ada@example.com") is not None
    hardened = page.results[max(page.results)]
    assert '"nothing_to_do"' in hardened.stderr, hardened.stderr[-3000:]


@pytest.fixture
def company(tmp_path: Path) -> Iterator[Directory]:
    """A 40-person company: u01…u40, groups bw-engineering (u01…u05) and staff (everyone),
    the bwsync account and ldap.md's rule."""
    _require_root()
    people = {f"u{i:02}": f"u{i:02}@example.com" for i in range(1, 41)}
    d = Directory.create(
        tmp_path / "slapd", people,
        {"bw-engineering": [f"u{i:02}" for i in range(1, 6)], "staff": list(people)},
    )  # fmt: skip
    _grant_bwsync(d)
    yield d
    d.stop()


def _workstation(tmp_path: Path, directory: Directory, fake: FakeBitwarden) -> doc_blocks.Session:
    """What operations.md starts from: examples/ldap/sync.env filled in, and the secrets."""
    session = _session(tmp_path)
    example = (ROOT / "examples" / "ldap" / "sync.env").read_text()
    filled = doc_blocks.Substitutions([
        ("ldaps://ldap.example.com:636", directory.ldaps_url),
        ("organization.00000000-0000-0000-0000-000000000000", fake.client_id),
        ("BWSYNC_BITWARDEN__SERVER=us", f"BWSYNC_BITWARDEN__SERVER={fake.base_url}"),
    ])  # fmt: skip
    (session.workdir / "sync.env").write_text(filled(example))
    assert filled.unused() == []
    secrets = session.workdir / "secrets"
    secrets.mkdir()
    (secrets / "bwsync_ldap__bind_password").write_text(BWSYNC_PASSWORD)
    (secrets / "bwsync_bitwarden__client_secret").write_text(fake.client_secret)
    shutil.copy(directory.pki.ca_file, secrets / "ldap-ca.pem")
    return session


def test_operations_page(company: Directory, bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    """docs/operations.md on a workstation: sync.env loaded as the page says (the group
    filter intact), the stand-in on its own, the first run, then 30 of the 40 people leave:
    the plan stops at the limits and `--allow-removals 40` lets the revocations through once."""
    session = _workstation(tmp_path, company, bitwarden)
    port = free_ports(1)[0]
    page = PageRun(session, doc_blocks.Substitutions([("--port 8087", f"--port {port}")]))

    def leave() -> None:
        for i in range(11, 41):
            res = _run(["ldapdelete", "-x", "-H", f"ldap://127.0.0.1:{company.port}",
                        "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, f"uid=u{i:02},{PEOPLE}"])  # fmt: skip
            assert res.returncode == 0, res.stderr

    try:
        for block in doc_blocks.blocks(OPERATIONS_MD):
            if block.kind == "kubernetes":
                continue  # test_operations_page_kubernetes_recipes
            if "select(.action==" in block.text:
                leave()
            page.run(block)
            if block.kind == "run" and "export" in block.text:
                loaded = session.run('printf "%s|%s" "$BWSYNC_LDAP__GROUP_FILTER" "$BWSYNC_SOURCE"')
                assert loaded.stdout == "(cn=bw-*)|ldap", loaded.stdout + loaded.stderr
    finally:
        session.stop()
    assert page.subs.unused() == []
    # The first sync: five in bw-engineering, staff left out by the filter.
    assert bitwarden.find_group(name="bw-engineering") is not None
    assert bitwarden.find_group(name="staff") is None
    # The stop listed the 30 leavers; the one allowed run revoked them.
    stopped = next(r for r in page.results.values() if r.returncode == 6)
    assert sorted(stopped.stdout.split()) == [f"u{i:02}@example.com" for i in range(11, 41)]
    revoked = [m for m in bitwarden.members if m.status == STATUS_REVOKED]
    assert len(revoked) == 30


def _kubectl() -> Path:
    """kubectl from the cache ./dev setup builds it into, beside kube-apiserver."""
    path = kube_bin_dir() / "kubectl"
    if not os.access(path, os.X_OK):
        msg = f"kubectl not built in {path.parent} (./dev setup builds it from tests/kube)"
        if under_ci():
            pytest.fail(f"{msg}; CI must have it")
        pytest.skip(msg)
    return path


@pytest.mark.kube_apiserver
def test_operations_page_kubernetes_recipes(
    kube_apiserver: KubeApiServer, kube_namespace: str, helm_bin: str, tmp_path: Path
) -> None:
    """The page's kubectl and helm recipes against a real API server with the chart installed
    as release `bwsync`: the first Jobs plan, `--set mode=sync` switches the schedule, and the
    `--allow-removals` Job is created with its arguments changed. No kubelet runs here, so a
    Job never gets a pod: the page's `kubectl logs -f job/…` become `kubectl get job/…`."""
    kubectl = _kubectl()
    bindir = tmp_path / "k8s-bin"
    bindir.mkdir()
    (bindir / "kubectl").symlink_to(kubectl)
    (bindir / "helm").symlink_to(helm_bin)
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(kube_apiserver.kubeconfig, kubeconfig)
    session = _session(tmp_path, [bindir])
    env = {**session.env, "KUBECONFIG": str(kubeconfig),
           "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
           "HELM_DATA_HOME": str(tmp_path / "helm-data")}  # fmt: skip
    session = doc_blocks.Session(session.workdir, env)
    setup = session.run(
        f"kubectl config set-context --current --namespace={kube_namespace} >/dev/null && "
        f"helm install bwsync {shlex.quote(str(ROOT / 'helm' / 'bwsync'))}"
    )
    assert setup.returncode == 0, setup.stderr
    subs = doc_blocks.Substitutions([
        ("./helm/bwsync", str(ROOT / "helm" / "bwsync")),
        *[(f"kubectl logs -f job/{job}", f"kubectl get job/{job} -o name")
          for job in ("bwsync-first-plan", "bwsync-allow-removals")],
    ])  # fmt: skip
    page = PageRun(session, subs)
    recipes = [b for b in doc_blocks.blocks(OPERATIONS_MD) if b.kind == "kubernetes"]
    assert len(recipes) == 3
    for block in recipes:
        page.run(block)
    assert subs.unused() == []

    def args(kind: str, name: str) -> list[str]:
        res = session.run(f"kubectl get {kind}/{name} -o json")
        assert res.returncode == 0, res.stderr
        spec = json.loads(res.stdout)["spec"]
        if kind == "cronjob":
            spec = spec["jobTemplate"]["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        return list(container["args"])

    assert args("job", "bwsync-first-plan") == ["plan", "--output", "text"]
    assert args("cronjob", "bwsync") == ["sync"]  # after `--set mode=sync`
    assert args("job", "bwsync-first-sync") == ["sync"]
    assert args("job", "bwsync-allow-removals") == ["sync", "--allow-removals", "40"]
