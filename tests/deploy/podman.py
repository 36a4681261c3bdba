"""Podman without a Docker daemon, as it works on these machines (reference/test-servers.md).

- Storage under one stable directory (``BWSYNC_TEST_PODMAN_DIR``, default
  /var/tmp/bwsync-test-podman), passed as command-line flags: env-configured storage makes
  every `run --rm` hang for 20 s.
- runc (crun fails on this cgroup layout), cgroupfs, the file events logger and raised ulimits,
  from a containers.conf of our own (``CONTAINERS_CONF``).
- No registry can be pulled from: the base image is a Debian bookworm root filesystem made with
  debootstrap, with python3 and python3-venv, imported once and kept in that storage, so
  later sessions reuse it (and podman's layer cache) in seconds.

All of this is the test harness's business; the Dockerfile stays the one that ships.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.locks import locked

BASE_IMAGE = "localhost/bwsync-test-base:bookworm"
DEBIAN_MIRROR = os.environ.get("BWSYNC_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""

#: What a build needs besides podman itself.
REQUIRED_BINARIES = ("podman", "runc", "debootstrap")


def state_dir() -> Path:
    default = "/var/tmp/bwsync-test-podman"  # noqa: S108 - a stable cache, root's own
    return Path(os.environ.get("BWSYNC_TEST_PODMAN_DIR", default))


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None]


@dataclass
class Podman:
    home: Path

    @classmethod
    def setup(cls, home: Path | None = None) -> Podman:
        home = home or state_dir()
        for sub in ("root", "runroot", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        conf = home / "containers.conf"
        if not conf.is_file() or conf.read_text() != CONTAINERS_CONF:
            conf.write_text(CONTAINERS_CONF)
        return cls(home)

    @property
    def argv(self) -> list[str]:
        h = self.home
        return ["podman", "--root", str(h / "root"), "--runroot", str(h / "runroot"),
                "--tmpdir", str(h / "tmp"), "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file"]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BWSYNC_")}
        env["CONTAINERS_CONF"] = str(self.home / "containers.conf")
        return env

    def run(
        self, *args: str, timeout: float = 300, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [*self.argv, *args], capture_output=True, text=input is None, env=self.env,
            timeout=timeout, check=False, input=input,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args[:3])} … failed ({res.returncode}):\n"
                f"{_tail(res.stdout)}\n{_tail(res.stderr)}"
            )
        return res

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False, timeout=60).returncode == 0

    def ensure_base_image(self) -> None:
        """Debian bookworm (minbase) + python3 + python3-venv, made once and kept."""
        with locked(self.home / "base.lock"):
            if self.image_exists(BASE_IMAGE):
                return
            rootfs = self.home / "base-rootfs"
            if rootfs.exists():
                shutil.rmtree(rootfs)
            res = subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                 "bookworm", str(rootfs), DEBIAN_MIRROR],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if res.returncode != 0:
                raise RuntimeError(f"debootstrap failed:\n{_tail(res.stdout)}\n{_tail(res.stderr)}")
            # As small as a slim image: no package caches, lists, docs, man pages or locales.
            for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                            "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*",
                            "usr/share/locale/*"):  # fmt: skip
                for p in rootfs.glob(pattern):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    elif p.is_file() or p.is_symlink():
                        p.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                imp = subprocess.run(
                    [*self.argv, "import", "-", BASE_IMAGE], stdin=tar.stdout,
                    capture_output=True, env=self.env, timeout=600, check=False,
                )  # fmt: skip
            finally:
                assert tar.stdout is not None
                tar.stdout.close()
                tar.wait()
            if imp.returncode != 0 or tar.returncode != 0:
                raise RuntimeError(f"podman import failed: {imp.stderr.decode()[-2000:]}")
            shutil.rmtree(rootfs)

    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> float:
        """`podman build` of the project's Dockerfile; returns the seconds it took. The host's
        CA bundle goes in as the optional `build_ca` secret (this network re-signs TLS)."""
        args = ["build", "--format", "docker", "--pull=never", "--network=host", "--layers",
                "-t", tag, "-f", str(context / "Dockerfile")]  # fmt: skip
        for k, v in build_args.items():
            args += ["--build-arg", f"{k}={v}"]
        if HOST_CA.is_file():
            args += ["--secret", f"id=build_ca,src={HOST_CA}"]
        with locked(self.home / "build.lock"):
            start = time.monotonic()
            self.run(*args, str(context), timeout=1200)
            seconds = time.monotonic() - start
            # Earlier builds' leftovers: keep a few days of layer cache, not every build ever.
            self.run("image", "prune", "--force", "--filter", "until=72h", check=False)
            return seconds

    def image_size(self, ref: str) -> int:
        """Uncompressed size in bytes, as `docker images` shows it."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def compressed_size(self, ref: str) -> int:
        """Bytes of the image saved and gzip-compressed: what a registry stores and a pull
        transfers."""
        save = subprocess.Popen([*self.argv, "save", ref], stdout=subprocess.PIPE, env=self.env)
        try:
            gz = subprocess.run(
                ["gzip", "-1"], stdin=save.stdout, capture_output=True, timeout=300, check=True
            )
        finally:
            assert save.stdout is not None
            save.stdout.close()
            save.wait()
        return len(gz.stdout)

    def container_run(
        self, image: str, args: Sequence[str] = (), *, options: Sequence[str] = (),
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.run("run", "--rm", *options, image, *args, check=False, timeout=timeout)


def _tail(text: str | bytes | None, n: int = 3000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-n:]
