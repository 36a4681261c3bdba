"""Benchmark: a full ``bwsync sync`` from each cloud stand-in (10,000 users, 500 groups).

``uv run python -m tests.bench.cloud [--users N] [--groups M] [--source entra|google|both]``

For each source: the stand-in (Graph or Google) runs in this process over loopback HTTPS with a
throwaway CA; the Bitwarden stand-in runs as ``python -m bwsync.standin
--self-hosted``; ``bwsync sync`` runs as a child process (``BWSYNC_STATE__BACKEND=none``,
``BWSYNC_SYNC__LARGE_IMPORT=true``), so its wall time and peak RSS (``wait4``) are its own.
The directory requests the stand-in served are compared with the minimum the API's paging
allows for the same directory and the same reads (bwdc's: for Entra, users + one full delta
round + groups + each group's members; for Google, users + deleted users + groups + members).
Not a timed test: it prints a table and one JSON line per source.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fixtures.cloud import make_loopback_tls, service_account_info
from tests.fixtures.ldap import free_port
from tests.standins.google_workspace import FakeGoogle
from tests.standins.graph import DELTA_PAGE_MAX, FakeGraph

CLIENT_ID = "organization.6f1b0d0e-7a0b-4f43-9d6c-1c2a6f6e8a11"
CLIENT_SECRET = "bench-secret-0123456789"


def _start_bitwarden() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bwsync.standin",
            "--port",
            str(port),
            "--self-hosted",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base = proc.stdout.readline().strip()
    return proc, base


def _run_sync(env: dict[str, str]) -> tuple[int, float, int, str]:
    """(exit code, wall seconds, peak RSS KiB, stderr tail) of ``bwsync sync``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bwsync", "sync"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()  # the JSON log, read to the end before reaping the child
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss, err


def _base_env(bitwarden: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("BWSYNC_")
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    }
    env.update(
        {
            "BWSYNC_SECRETS_DIR": "/nonexistent",
            "BWSYNC_BITWARDEN__SERVER": bitwarden,
            "BWSYNC_BITWARDEN__CLIENT_ID": CLIENT_ID,
            "BWSYNC_BITWARDEN__CLIENT_SECRET": CLIENT_SECRET,
            "BWSYNC_STATE__BACKEND": "none",
            "BWSYNC_SYNC__LARGE_IMPORT": "true",
            "BWSYNC_LOG__FORMAT": "json",
        }
    )
    return env


def _log(stderr: str) -> tuple[dict[str, Any], dict[str, float]]:
    """The summary line and the seconds of each stage, from the JSON log lines."""
    summary: dict[str, Any] = {}
    stages: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        name = doc.get("event") or doc.get("msg")
        if name == "summary":
            summary = doc
        elif isinstance(doc.get("seconds"), int | float) and isinstance(name, str):
            stages[name] = round(stages.get(name, 0.0) + float(doc["seconds"]), 2)
    return summary, stages


def bench_entra(tmp: Path, users: int, groups: int, bitwarden: str) -> dict[str, Any]:
    tls = make_loopback_tls(tmp / "tls-graph")
    fake = FakeGraph(tls=tls.server_pair).start()
    try:
        secret = "bench-graph-secret"
        app = fake.add_app(secret=secret)
        fake.populate(users, groups)
        active = sum(1 for u in fake.users.values() if not u.deleted)
        members = [len(g.members) for g in fake.groups.values()]
        minimum = {
            "token": 2,  # msal's tenant discovery + the token
            "users": math.ceil(active / 999),
            "delta": math.ceil(active / DELTA_PAGE_MAX),
            "groups": math.ceil(groups / 999),
            "members": sum(max(1, math.ceil(m / 999)) for m in members),
        }
        env = _base_env(bitwarden)
        env.update(
            {
                "BWSYNC_SOURCE": "entra",
                "BWSYNC_ENTRA__TENANT_ID": fake.tenant_id,
                "BWSYNC_ENTRA__CLIENT_ID": app.client_id,
                "BWSYNC_ENTRA__CLIENT_SECRET": secret,
                "BWSYNC_ENTRA__AUTHORITY_URL": fake.base_url,
                "BWSYNC_ENTRA__GRAPH_URL": fake.base_url,
                "BWSYNC_ENTRA__CA_FILE": str(tls.ca_file),
            }
        )
        code, wall, rss, err = _run_sync(env)
        made: Counter[str] = Counter()
        for r in fake.requests:
            if r.path.startswith(f"/{fake.tenant_id}/"):
                made["token"] += 1
            elif r.path == "/v1.0/users":
                made["users"] += 1
            elif r.path == "/v1.0/users/delta":
                made["delta"] += 1
            elif r.path == "/v1.0/groups":
                made["groups"] += 1
            else:
                made["members"] += 1
        return _result("entra", code, wall, rss, err, made, minimum)
    finally:
        fake.stop()


def bench_google(tmp: Path, users: int, groups: int, bitwarden: str) -> dict[str, Any]:
    tls = make_loopback_tls(tmp / "tls-google")
    fake = FakeGoogle(tls=tls.server_pair).start()
    try:
        info = service_account_info(fake.token_uri)
        fake.add_service_account(info)
        key = tmp / "sa.json"
        key.write_text(json.dumps(info))
        key.chmod(0o600)
        fake.populate(users, groups)
        active = sum(1 for u in fake.users.values() if not u.deleted)
        deleted = sum(1 for u in fake.users.values() if u.deleted)
        minimum = {
            "token": 1,
            "users": math.ceil(active / 500) + max(1, math.ceil(deleted / 500)),
            "groups": math.ceil(groups / 200),
            "members": sum(max(1, math.ceil(len(g.members) / 200)) for g in fake.groups.values()),
        }
        env = _base_env(bitwarden)
        env.update(
            {
                "BWSYNC_SOURCE": "google",
                "BWSYNC_GOOGLE__CREDENTIALS_FILE": str(key),
                "BWSYNC_GOOGLE__ADMIN_EMAIL": fake.admin_email,
                "BWSYNC_GOOGLE__API_URL": fake.base_url,
                "BWSYNC_GOOGLE__CA_FILE": str(tls.ca_file),
            }
        )
        code, wall, rss, err = _run_sync(env)
        made: Counter[str] = Counter()
        for r in fake.requests:
            if r.path == "/token":
                made["token"] += 1
            elif r.path.endswith("/users"):
                made["users"] += 1
            elif r.path.endswith("/groups"):
                made["groups"] += 1
            else:
                made["members"] += 1
        return _result("google", code, wall, rss, err, made, minimum)
    finally:
        fake.stop()


def _result(
    source: str,
    code: int,
    wall: float,
    rss: int,
    err: str,
    made: Counter[str],
    minimum: dict[str, int],
) -> dict[str, Any]:
    summary, stages = _log(err)
    out = {
        "source": source,
        "exit_code": code,
        "wall_seconds": round(wall, 2),
        "peak_rss_mib": round(rss / 1024, 1),
        "requests": sum(made.values()),
        "minimum_requests": sum(minimum.values()),
        "requests_by_kind": dict(made),
        "minimum_by_kind": minimum,
        "directory": summary.get("directory"),
        "stage_seconds": stages,
    }
    if code != 0:
        out["stderr_tail"] = err[-800:]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cloud", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--source", choices=("entra", "google", "both"), default="both")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bwsync-bench-") as d:
        tmp = Path(d)
        for source in ("entra", "google"):
            if args.source not in (source, "both"):
                continue
            bw, base = _start_bitwarden()  # a fresh organization per source
            try:
                bench = bench_entra if source == "entra" else bench_google
                results.append(bench(tmp, args.users, args.groups, base))
            finally:
                bw.terminate()
                bw.wait(timeout=10)
    print(f"{args.users} users, {args.groups} groups per stand-in; bwsync sync in a child process")
    print(f"{'source':8} {'exit':>4} {'wall s':>7} {'RSS MiB':>8} {'requests':>9} {'minimum':>8}")
    for r in results:
        print(
            f"{r['source']:8} {r['exit_code']:>4} {r['wall_seconds']:>7} {r['peak_rss_mib']:>8} "
            f"{r['requests']:>9} {r['minimum_requests']:>8}"
        )
    for r in results:
        print(json.dumps(r))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
