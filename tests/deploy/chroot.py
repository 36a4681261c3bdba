"""A newcomer's minimal Debian or Ubuntu machine, as a chroot, for the first-day test of ./dev.

- The root filesystem is `debootstrap --variant=minbase` plus python3, git and ca-certificates:
  no pip, no compiler, no Go — what a fresh minimal server or a `debian:12` container holds. It
  is made once per distribution and kept as a tarball in one stable directory
  (``BWSYNC_TEST_FIRSTDAY_DIR``, default /var/tmp/bwsync-test-firstday); every test unpacks a
  fresh copy and deletes it afterwards (a full ./dev set-up makes it about 5 GB).
- This network re-signs TLS: the host's CA bundle is added to the rootfs's local CAs.
- `policy-rc.d` answers 101, as in Debian's container images: apt installs slapd and Samba
  without starting them on the host's network.
- Ubuntu's archive is signed with a key Debian does not ship: the `ubuntu-keyring` package is
  fetched from the mirror and checked against a pinned SHA-256 before debootstrap trusts it.
- Each command runs in its own mount and PID namespace (`unshare`): the root filesystem (bound
  onto itself, so that / is a mount point as on a real machine), /proc, /dev and the caches are
  mounted for that command alone, and whatever it leaves running is killed when it ends.
- apt's archives and Go's module and build caches are kept between runs (bind-mounted from the
  stable directory): downloads and Go builds are what makes a cold run slow, and caching them
  changes nothing ./dev decides. When the host has Go, its own module and build caches are the
  machine's: the host's ./dev set-up built the same pinned tools with the same pinned
  toolchain, so even a cold first run (a new CI machine) finds them there, and Go's caches are
  safe to share between processes. uv's cache is not kept, so python-ldap is compiled every
  time, as on a newcomer's machine.
- The host's ``~/.cache/bwsync`` is the machine's too: ./dev keeps there the kube-apiserver and
  etcd it builds (static binaries, keyed by tests/kube/go.sum; 8–25 min cold), and reuses
  them from any clone. The machine finds the host's, as a developer's second clone would; when
  the host has none, the machine builds them and the host keeps them.

All of this is the test harness's business; `./dev` itself knows nothing of it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.locks import locked

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
#: What must be on the host to build and enter the chroot.
REQUIRED_BINARIES = ("debootstrap", "unshare", "chroot", "tar", "git", "dpkg-deb")
#: Environment variables passed from the host into the chroot, when set (proxies).
PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
#: Caches kept between runs: stable directory name → path inside the chroot.
CACHES = {
    "apt-archives": "var/cache/apt/archives",
    "go-mod": "root/go/pkg/mod",
    "go-build": "root/.cache/go-build",
}
#: The Go caches taken from the host when it has Go: cache name → ``go env`` variable.
HOST_GO_CACHES = {"go-mod": "GOMODCACHE", "go-build": "GOCACHE"}
#: ./dev's own cache outside the clone on the host, shared with the machine's root.
HOST_DEV_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bwsync"

# Bash run by `unshare`: mounts for this command only, then the command inside the chroot.
_ENTER = r"""
set -eu
rootfs=$1 devcache=$2 user=$3; shift 3
mount --make-rprivate /
# The machine's / is a mount point, as on a real machine (tools such as `unshare
# --propagation` need one); what follows is mounted inside it.
mount --bind "$rootfs" "$rootfs"
mount -t proc proc "$rootfs/proc"
mount --rbind /dev "$rootfs/dev"
for pair in CACHES; do
  src=${pair%%=*} dst=$rootfs/${pair#*=}
  mkdir -p "$src" "$dst"
  mount --bind "$src" "$dst"
done
mkdir -p "$devcache" "$rootfs/root/.cache/bwsync"
mount --bind "$devcache" "$rootfs/root/.cache/bwsync"
if [ "$user" = root ]; then
  exec chroot "$rootfs" /usr/bin/env -i "$@"
fi
exec chroot --userspec="$user:$user" "$rootfs" /usr/bin/env -i "$@"
"""


@dataclass(frozen=True)
class Distro:
    """A distribution as debootstrap makes it."""

    name: str
    suite: str
    mirror: str
    components: str = "main"
    #: (path in the mirror, SHA-256) of the keyring package debootstrap should trust.
    keyring_deb: tuple[str, str] | None = None
    #: The debootstrap script, when the host's debootstrap has none named after the suite.
    script: str | None = None

    def rootfs_key(self) -> str:
        """Names the cached tarball: a change of what goes in makes a new one."""
        spec = f"{self.suite} {self.mirror} {self.components} {self.keyring_deb} {INCLUDE}"
        return f"{self.name}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


INCLUDE = "python3,git,ca-certificates"

DEBIAN_12 = Distro(
    "debian-12",
    "bookworm",
    os.environ.get("BWSYNC_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
)
# A real Ubuntu server has universe enabled; several of ./dev's packages live there.
UBUNTU_24_04 = Distro(
    "ubuntu-24.04",
    "noble",
    os.environ.get("BWSYNC_TEST_UBUNTU_MIRROR", "http://archive.ubuntu.com/ubuntu"),
    components="main,universe",
    keyring_deb=(
        "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb",
        "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8",
    ),
    script="/usr/share/debootstrap/scripts/gutsy",  # every Ubuntu suite's script
)


#: Read once at import: the suite's fixtures clear every BWSYNC_* variable before each test.
_STATE_DIR = Path(
    os.environ.get("BWSYNC_TEST_FIRSTDAY_DIR", "/var/tmp/bwsync-test-firstday")  # noqa: S108 - a stable cache, root's own
)


def state_dir() -> Path:
    return _STATE_DIR


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None]


@functools.cache
def _host_go_caches() -> dict[str, Path]:
    """The host's Go module and build caches (``go env``), when it has Go and both are
    directories it can use; else none, and the machine keeps its own."""
    go = shutil.which("go")
    if go is None:
        return {}
    names = list(HOST_GO_CACHES.values())
    res = subprocess.run([go, "env", *names], capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    paths = [Path(line) for line in res.stdout.splitlines()]
    if res.returncode != 0 or len(paths) != len(names) or not all(p.is_absolute() for p in paths):
        return {}
    return dict(zip(HOST_GO_CACHES, paths, strict=True))


def _tail(text: str | None, n: int = 4000) -> str:
    return (text or "")[-n:]


def _check(argv: list[str], *, timeout: float) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} … failed:\n{_tail(res.stdout)}{_tail(res.stderr)}"
        )


def _keyring(distro: Distro, work: Path) -> Path | None:
    if distro.keyring_deb is None:
        return None
    path, sha256 = distro.keyring_deb
    with urllib.request.urlopen(f"{distro.mirror}/{path}", timeout=120) as r:  # noqa: S310
        data = r.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise RuntimeError(f"{path}: sha256 {got}, expected {sha256}")
    deb = work / "keyring.deb"
    deb.write_bytes(data)
    _check(["dpkg-deb", "-x", str(deb), str(work / "keyring")], timeout=60)
    name = "ubuntu-archive-keyring.gpg"
    return work / "keyring" / "usr" / "share" / "keyrings" / name


def _make_rootfs(distro: Distro, tarball: Path) -> None:
    work = tarball.with_suffix(".work")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        rootfs = work / "rootfs"
        argv = ["debootstrap", "--variant=minbase", f"--components={distro.components}",
                f"--include={INCLUDE}"]  # fmt: skip
        keyring = _keyring(distro, work)
        if keyring is not None:
            argv.append(f"--keyring={keyring}")
        argv += [distro.suite, str(rootfs), distro.mirror]
        if distro.script:
            argv.append(distro.script)
        _check(argv, timeout=1800)
        if HOST_CA.is_file():
            shutil.copyfile(HOST_CA, rootfs / "usr/local/share/ca-certificates/host-bundle.crt")
            _check(["chroot", str(rootfs), "update-ca-certificates"], timeout=120)
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # A fresh machine has not run apt-get update: ./dev must.
        for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                        "var/lib/apt/lists/*"):  # fmt: skip
            for p in rootfs.glob(pattern):
                if p.is_file():
                    p.unlink()
        part = tarball.with_suffix(".part")
        _check(["tar", "-C", str(rootfs), "-cf", str(part), "."], timeout=600)
        part.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Machine:
    """A fresh, unpacked copy of a distribution's minimal root filesystem."""

    distro: Distro
    rootfs: Path
    cache: Path

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, distro: Distro, where: Path) -> Iterator[Machine]:
        """Unpacks the cached rootfs (making it first if needed) into ``where`` and removes it
        afterwards. Holds the distribution's lock throughout: two sessions would otherwise
        share apt's archive directory."""
        home = state_dir()
        tarball = home / f"{distro.rootfs_key()}.tar"
        with locked(home / f"{distro.name}.lock"):
            if not tarball.is_file():
                _make_rootfs(distro, tarball)
            rootfs = where / distro.name
            rootfs.mkdir(parents=True)
            try:
                _check(["tar", "-C", str(rootfs), "-xf", str(tarball)], timeout=600)
                shutil.copyfile("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
                yield cls(distro, rootfs, home / "cache" / distro.name)
            finally:
                shutil.rmtree(rootfs, ignore_errors=True)

    def run(
        self, script: str, *, user: str = "root", env: Mapping[str, str] | None = None,
        timeout: float = 1800,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """`bash -c script` inside the machine, in a login-like empty environment."""
        home = "/root" if user == "root" else f"/home/{user}"
        base = {"HOME": home, "USER": user,
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}  # fmt: skip
        if os.environ.get("SSL_CERT_FILE"):
            # The host points TLS clients (uv among them) at its bundle; so does the machine.
            base["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
        base.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
        base.update(env or {})
        caches = " ".join(
            shlex.quote(f"{self._cache_source(name)}={inside}") for name, inside in CACHES.items()
        )
        enter = _ENTER.replace("CACHES", caches)
        argv = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "bash", "-c", enter,
                "enter", str(self.rootfs), str(HOST_DEV_CACHE), user,
                *(f"{k}={v}" for k, v in base.items()), "bash", "-c", script]  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip

    def _cache_source(self, name: str) -> Path:
        """Where the cache ``name`` lives on the host: the host's Go cache, or the
        distribution's own directory."""
        return _host_go_caches().get(name) or self.cache / name

    def add_user(self, name: str) -> tuple[int, int]:
        res = self.run(f"useradd --create-home --shell /bin/bash {name} && id -u {name} && "
                       f"id -g {name}")  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"useradd failed: {res.stderr}")
        uid, gid = res.stdout.split()
        return int(uid), int(gid)

    def clone(self, repo: Path, dest: str, owner: tuple[int, int] | None = None) -> None:
        """A `git clone` of ``repo`` at ``dest`` (a path inside the machine), with the working
        tree's uncommitted and untracked files laid over it, so a developer tests what they
        have; on CI the checkout is clean and this is a plain clone."""
        target = self.rootfs / dest.lstrip("/")
        _check(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(target)], timeout=300)
        listed = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        for rel in filter(None, listed.decode().split("\0")):
            src, dst = repo / rel, target / rel
            if src.is_symlink() or src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                shutil.copy2(src, dst, follow_symlinks=False)
            elif not src.exists() and (dst.exists() or dst.is_symlink()):
                dst.unlink()  # deleted in the working tree
        if owner is not None:
            for dirpath, dirnames, filenames in os.walk(target):
                for name in [*dirnames, *filenames]:
                    os.chown(os.path.join(dirpath, name), *owner, follow_symlinks=False)
            os.chown(target, *owner)
