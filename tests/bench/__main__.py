"""LDAP benchmark: prints numbers, asserts nothing (``./dev bench`` or
``uv run python -m tests.bench``).

For each directory shape (100,000 users with 200 or 2,000 groups of about 50 members), loaded
into a fresh slapd with ``slapadd``:

* per engine, a **bare paged search** of the same entries and attributes the source asks for
  (the library alone, results dropped page by page) next to the source's **fetch()** (records
  built, members resolved): wall time and peak RSS, each in its own process;
* a **full ``bwsync sync``** subprocess (LDAP → normalize → payload → plan → import) against the
  Bitwarden stand-in (``python -m bwsync.standin``), wall time and the child's
  own peak RSS (``os.wait4``), state backend ``none`` so every run does the whole work.

Each measurement runs ``--repeat`` times; the minimum and the median are shown because the
machine is shared (other work inflates single runs). Targets (python-ldap): whole run ≤ 2.0 s
and ≤ 250 MB for 100k users + 200 groups, ≤ 3.0 s and ≤ 300 MB with 2,000 groups; ldap3
fetch ≤ 1.3× its bare search.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.directory import BASE_DN, write_ldif
from tests.fixtures.ldap import Slapd, free_port, wait_for_port

TARGETS = {200: (2.0, 250.0), 2000: (3.0, 300.0)}


@dataclass
class Series:
    seconds: list[float]
    rss_mb: list[float]
    extra: dict[str, Any]
    cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    """CPU seconds the Bitwarden stand-in spent during each run (not bwsync's work)."""

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rss(self) -> float:
        return max(self.rss_mb)

    def line(self, label: str) -> str:
        cpu = f"  client CPU {min(self.cpu):6.3f} s" if self.cpu else ""
        if self.server_cpu:
            cpu += f"  stand-in CPU {statistics.median(self.server_cpu):6.3f} s"
        return (
            f"  {label:<28} min {self.best:6.3f} s  median {self.median:6.3f} s  "
            f"peak RSS {self.rss:6.1f} MB{cpu}"
        )


def measure(engine: str, slapd: Slapd, repeat: int) -> tuple[Series, Series]:
    """The bare search and ``fetch()``, alternated run by run: the host's speed drifts over
    minutes, and a ratio of two series measured one after the other drifted with it (the same
    code measured 0.87x and 1.28x)."""
    bare, fetch = Series([], [], {}), Series([], [], {})
    for _ in range(repeat):
        for mode, out in (("bare", bare), ("fetch", fetch)):
            res = subprocess.run(
                [sys.executable, "-m", "tests.bench.measure", mode, engine, slapd.url,
                 slapd.bind_dn, slapd.bind_password, BASE_DN],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if res.returncode != 0:
                raise RuntimeError(f"{mode}/{engine} failed: {res.stderr[-2000:]}")
            data = json.loads(res.stdout.strip().splitlines()[-1])
            out.seconds.append(data.pop("seconds"))
            out.rss_mb.append(data.pop("peak_rss_mb"))
            out.cpu.append(data.pop("cpu_seconds"))
            out.extra = data
    return bare, fetch


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("BWSYNC_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def full_sync(
    engine: str,
    slapd: Slapd,
    repeat: int,
    workdir: Path,
    fake_args: tuple[str, ...] = (),
    *,
    self_hosted: bool = False,
) -> tuple[Series, Series, Series] | str:
    """``bwsync sync`` subprocesses against the stand-in, ``repeat`` times each:

    * an empty organization filled with 100,000 invitations, each time against a freshly
      started stand-in (so the empty case has a median too, not one sample);
    * then, against the last one, the organization in step with state backend ``none`` (each
      run fetches, reads the organization beside the fetch, plans and sends the whole import);
    * then the same with state kept in a file whose hash is made stale before each run: the
      directory "changed since the last run" while the organization is in step, the scheduled
      run after a change (organization read after the fetch, unchanged batches left out).

    ``self_hosted``: the stand-in without the cloud's 2,000-entry cap and bwsync without
    ``large_import``, so the import is one request (bwdc against a self-hosted server)
    instead of 51 batches."""
    try:
        import bwsync.cli
        import bwsync.standin.server  # noqa: F401
    except ImportError as exc:
        return f"skipped: {exc}"
    first, steady, changed = Series([], [], {}), Series([], [], {}), Series([], [], {})
    state_file = workdir / f"state-{engine}-{uuid.uuid4().hex[:8]}.json"
    port = free_port()
    client_id, secret = f"organization.{uuid.uuid4()}", uuid.uuid4().hex
    # Vaultwarden's behaviour is a test-only stand-in (tests.standins.bitwarden); the shipped
    # one (bwsync.standin) is the official server alone.
    module = "tests.standins.bitwarden" if "--vaultwarden" in fake_args else "bwsync.standin"
    command = [
        sys.executable, "-m", module, "--port", str(port),
        "--client-id", client_id, "--client-secret", secret, *fake_args,
        *(["--self-hosted"] if self_hosted else []),
    ]  # fmt: skip
    env = _child_env(
        {
            "BWSYNC_SOURCE": "ldap",
            "BWSYNC_LDAP__URL": slapd.url,
            "BWSYNC_LDAP__BASE_DN": BASE_DN,
            "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
            "BWSYNC_LDAP__BIND_PASSWORD": slapd.bind_password,
            "BWSYNC_LDAP__ENGINE": engine,
            "BWSYNC_BITWARDEN__SERVER": f"http://127.0.0.1:{port}",
            "BWSYNC_BITWARDEN__CLIENT_ID": client_id,
            "BWSYNC_BITWARDEN__CLIENT_SECRET": secret,
            "BWSYNC_STATE__BACKEND": "none",
            "BWSYNC_SYNC__LARGE_IMPORT": "false" if self_hosted else "true",
            "BWSYNC_LOG__FORMAT": "json",
            "BWSYNC_SECRETS_DIR": str(workdir / "no-secrets"),
        }
    )
    fake: subprocess.Popen[bytes] | None = None
    try:
        for n in range(3 * repeat):
            if n < repeat:  # a fresh stand-in: an empty organization
                if fake is not None:
                    _stop(fake)
                fake = subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=_child_env({}),
                )
                wait_for_port(port, fake, time.monotonic() + 20)
            assert fake is not None
            log = workdir / f"sync-{engine}-{n}.log"
            run_env = env
            if n >= 2 * repeat:
                run_env = {
                    **env,
                    "BWSYNC_STATE__BACKEND": "file",
                    "BWSYNC_STATE__PATH": str(state_file),
                }
                _stale_hash(state_file)
            server_before = _cpu_seconds(fake.pid)
            with log.open("wb") as err:
                start = time.perf_counter()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "bwsync", "sync"],
                    stdout=subprocess.DEVNULL, stderr=err, env=run_env,
                )  # fmt: skip
                _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
                elapsed = time.perf_counter() - start
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                return f"failed (exit {code}): {log.read_text()[-800:]}"
            series = first if n < repeat else steady if n < 2 * repeat else changed
            series.seconds.append(elapsed)
            series.rss_mb.append(usage.ru_maxrss / 1024)
            series.cpu.append(usage.ru_utime + usage.ru_stime)
            series.server_cpu.append(_cpu_seconds(fake.pid) - server_before)
            series.extra = {"stages": _stages(log)}
    finally:
        if fake is not None:
            _stop(fake)
    return first, steady, changed


def _stop(fake: subprocess.Popen[bytes]) -> None:
    fake.terminate()
    fake.wait(10)


def _stale_hash(path: Path) -> None:
    """A state file remembering a hash no directory has: the next run sees a change."""
    from bwsync.state.file import FileStateStore

    store = FileStateStore(path)
    doc = store.load()
    doc.hash = "stale: the directory changed since this run"
    store.save(doc)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/<pid>/stat`` fields 14-15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stages(log: Path) -> str:
    """Seconds per stage, summed from the run's own JSON events (``{"event", "seconds"}``)."""
    totals: dict[str, float] = {}
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        name, seconds = event.get("event"), event.get("seconds")
        if name and name != "summary" and isinstance(seconds, int | float):
            totals[name] = totals.get(name, 0.0) + float(seconds)
    return " ".join(f"{k}={v:.2f}" for k, v in totals.items() if v >= 0.005)


def engines() -> list[str]:
    try:
        import ldap  # noqa: F401
    except ImportError:
        print("python-ldap not installed: measuring ldap3 only")
        return ["ldap3"]
    return ["python-ldap", "ldap3"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, nargs="*", default=[200, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", nargs="*", default=None)
    parser.add_argument("--no-sync", action="store_true", help="skip the full bwsync sync runs")
    parser.add_argument(
        "--self-hosted",
        action="store_true",
        help="one import request to a self-hosted stand-in instead of batches",
    )
    args = parser.parse_args()
    chosen = args.engines or engines()
    with tempfile.TemporaryDirectory(prefix="bwsync-bench-") as tmp:
        root = Path(tmp)
        (root / "no-secrets").mkdir()
        for groups in args.groups:
            work = root / f"g{groups}"
            work.mkdir()
            ldif = work / "directory.ldif"
            t = time.perf_counter()
            write_ldif(ldif, args.users, groups)
            slapd = Slapd.create(work / "slapd", base_dn=BASE_DN, ldif=ldif)
            print(
                f"\n== {args.users:,} users + {groups:,} groups of ~50 "
                f"(LDIF {ldif.stat().st_size / 1e6:.0f} MB, slapadd+start "
                f"{time.perf_counter() - t:.1f} s), best of {args.repeat} ==",
                flush=True,
            )
            try:
                for engine in chosen:
                    bare, fetch = measure(engine, slapd, args.repeat)
                    print(f" {engine}: {fetch.extra}")
                    print(bare.line("bare paged search"))
                    print(fetch.line("LdapSource.fetch()"))
                    print(
                        f"  {'fetch / bare':<28} min {fetch.best / bare.best:5.2f}x  "
                        f"median {fetch.median / bare.median:5.2f}x",
                        flush=True,
                    )
                    if args.no_sync or (engine != "python-ldap" and args.users > 20_000):
                        continue  # the targets are for python-ldap; ldap3 runs take long
                    sync = full_sync(engine, slapd, args.repeat, work, self_hosted=args.self_hosted)
                    if isinstance(sync, str):
                        print(f"  bwsync sync: {sync}")
                        continue
                    wall, rss = TARGETS.get(groups, (float("nan"), float("nan")))
                    # The same run against a server without list endpoints (Vaultwarden-like):
                    # bwdc's flow, fetch → import, without the org snapshot and re-read that
                    # the plan and the applied-vs-planned check cost on a 100,000-member org.
                    bare_import = full_sync(
                        engine,
                        slapd,
                        args.repeat,
                        work,
                        ("--vaultwarden", "--groups-enabled"),
                        self_hosted=args.self_hosted,
                    )
                    if isinstance(bare_import, str):
                        print(f"  bwsync sync (no list endpoints): {bare_import}")
                    else:
                        sync = (*sync, *bare_import)
                    labels = (
                        "empty org",
                        "org in step",
                        "org in step, dir. changed",
                        "import only, empty org",
                        "import only, org in step",
                        "import only, dir. changed",
                    )
                    for label, series in zip(labels, sync, strict=False):
                        print(series.line(f"bwsync sync, {label}"))
                        verdict = "OK" if series.median <= wall and series.rss <= rss else "OVER"
                        print(f"  {'   target':<28} ≤ {wall} s, ≤ {rss:.0f} MB: {verdict}")
                        print(
                            f"  {'   stages (last run)':<28} {series.extra['stages']}", flush=True
                        )
            finally:
                slapd.stop()


if __name__ == "__main__":
    main()
