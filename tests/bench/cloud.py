"""Benchmark: a full ``bwsync sync`` from each cloud stand-in at cloud latency, one request at a
time and with its reads overlapping.

``uv run python -m tests.bench.cloud [--users 5000] [--groups 300] [--latency 0.1]
[--sources entra google okta onelogin] [--concurrency 1 8] [--storm]``

For each source, its stand-in (Graph, Google, Okta, OneLogin) runs in this process over
loopback HTTPS with a throwaway CA and answers every request ``--latency`` seconds late (a
cloud round trip; each connection has its own thread, so overlapping requests overlap there
too). The Bitwarden stand-in runs as ``python -m bwsync.standin --self-hosted`` without
latency. ``bwsync sync`` runs as a child process (``BWSYNC_STATE__BACKEND=none``,
``BWSYNC_SYNC__LARGE_IMPORT=true``) once per ``BWSYNC_SYNC__MAX_CONCURRENT_REQUESTS`` value,
each against a fresh organization, so its wall time and peak RSS (``wait4``) are its own.

The directory requests the stand-in answered are compared with the minimum the API's paging
allows for the same directory and the same reads (token requests included): a run should make
exactly that many, plus its retries. ``--storm`` adds, for Entra and Google (whose stand-ins
announce a window), a concurrent run during which every member read is answered 429 for two
seconds, and reports the requests that arrived inside the window after its first 429 had been
answered (the client knew of it): none is the goal (a request already on its way may race it).

Not a timed test: a table, then one JSON line per run.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.cloud import make_loopback_tls, service_account_info
from tests.standins.google_workspace import FakeGoogle
from tests.standins.graph import DELTA_PAGE_MAX, FakeGraph
from tests.standins.http_server import Storm
from tests.standins.okta import FakeOkta, okta_directory
from tests.standins.onelogin import FakeOneLogin, onelogin_directory
from tests.standins.tls import TlsFiles

OKTA_CLIENT_ID = "0oabenchserviceapp001"
TARGET_SECONDS = 8.0


@dataclass
class Case:
    """One source ready to be synced: its settings, how to read what it served, the minimum."""

    source: str
    env: dict[str, str]
    minimum: dict[str, int]
    family: Callable[[str], str]
    fake: Any
    storm: Callable[[], Storm] | None
    """Arms a 429 storm on the stand-in (Graph and Google, whose 429s carry a window)."""

    def served(self) -> list[Any]:
        return list(self.fake.requests)


# -- the four stand-ins -------------------------------------------------------------------------


def entra_case(tmp: Path, users: int, groups: int) -> Case:
    tls = make_loopback_tls(tmp / "tls-graph")
    fake = FakeGraph(tls=tls.server_pair).start()
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
    env = {
        "BWSYNC_SOURCE": "entra",
        "BWSYNC_ENTRA__TENANT_ID": fake.tenant_id,
        "BWSYNC_ENTRA__CLIENT_ID": app.client_id,
        "BWSYNC_ENTRA__CLIENT_SECRET": secret,
        "BWSYNC_ENTRA__AUTHORITY_URL": fake.base_url,
        "BWSYNC_ENTRA__GRAPH_URL": fake.base_url,
        "BWSYNC_ENTRA__CA_FILE": str(tls.ca_file),
    }

    def family(path: str) -> str:
        if path.startswith(f"/{fake.tenant_id}/"):
            return "token"
        return {"/v1.0/users": "users", "/v1.0/users/delta": "delta", "/v1.0/groups": "groups"}.get(
            path, "members"
        )

    return Case("entra", env, minimum, family, fake, lambda: fake.storm("/v1.0/groups/", 2.0))


def google_case(tmp: Path, users: int, groups: int) -> Case:
    tls = make_loopback_tls(tmp / "tls-google")
    fake = FakeGoogle(tls=tls.server_pair).start()
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
    env = {
        "BWSYNC_SOURCE": "google",
        "BWSYNC_GOOGLE__CREDENTIALS_FILE": str(key),
        "BWSYNC_GOOGLE__ADMIN_EMAIL": fake.admin_email,
        "BWSYNC_GOOGLE__API_URL": fake.base_url,
        "BWSYNC_GOOGLE__CA_FILE": str(tls.ca_file),
    }

    def family(path: str) -> str:
        if path == "/token":
            return "token"
        return (
            "users"
            if path.endswith("/users")
            else "groups"
            if path.endswith("/groups")
            else ("members")
        )

    return Case(
        "google",
        env,
        minimum,
        family,
        fake,
        lambda: fake.storm("/admin/directory/v1/groups/", 2.0, retry_after=False),
    )


def _okta_key(tmp: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp / "okta-app.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public


def okta_case(tmp: Path, users: int, groups: int, tls: TlsFiles) -> Case:
    directory = okta_directory(users, groups)
    fake = FakeOkta(tls, directory)
    key_file, public = _okta_key(tmp)
    fake.register_client(OKTA_CLIENT_ID, public)
    fake.start()
    regular = sum(1 for u in directory.users if u["status"] != "DEPROVISIONED")
    gone = len(directory.users) - regular
    user_page = fake.page_sizes["users"][1]
    member_page = fake.page_sizes["members"][0]
    minimum = {
        "token": 1,
        "users": max(1, math.ceil(regular / user_page)) + max(1, math.ceil(gone / user_page)),
        "groups": max(1, math.ceil(len(directory.groups) / fake.page_sizes["groups"][0])),
        "members": sum(max(1, math.ceil(len(m) / member_page)) for m in directory.members.values()),
    }
    env = {
        "BWSYNC_SOURCE": "okta",
        "BWSYNC_OKTA__ORG_URL": fake.url,
        "BWSYNC_OKTA__CLIENT_ID": OKTA_CLIENT_ID,
        "BWSYNC_OKTA__PRIVATE_KEY_FILE": str(key_file),
        "BWSYNC_OKTA__CA_FILE": str(tls.ca_file),
    }

    def family(path: str) -> str:
        if path == "/oauth2/v1/token":
            return "token"
        return {"/api/v1/users": "users", "/api/v1/groups": "groups"}.get(path, "members")

    return Case("okta", env, minimum, family, fake, None)


def onelogin_case(users: int, groups: int, tls: TlsFiles) -> Case:
    directory = onelogin_directory(users, groups)
    fake = FakeOneLogin(tls, directory)
    fake.start()
    minimum = {
        "token": 1,
        "users": max(1, math.ceil(len(directory.users) / fake.page_size)),
        "roles": max(1, math.ceil(len(directory.roles) / fake.page_size)),
    }
    env = {
        "BWSYNC_SOURCE": "onelogin",
        "BWSYNC_ONELOGIN__CLIENT_ID": fake.client_id,
        "BWSYNC_ONELOGIN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_ONELOGIN__API_URL": fake.url,
        "BWSYNC_ONELOGIN__CA_FILE": str(tls.ca_file),
        "BWSYNC_ONELOGIN__USE_EMAIL_PREFIX_SUFFIX": "true",
        "BWSYNC_ONELOGIN__EMAIL_SUFFIX": "@example.com",
    }

    def family(path: str) -> str:
        return {"/auth/oauth2/v2/token": "token", "/api/1/users": "users"}.get(path, "roles")

    return Case("onelogin", env, minimum, family, fake, None)


# -- one run --------------------------------------------------------------------------------------


def start_bitwarden() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The Bitwarden stand-in as its own process; returns it and its BWSYNC_BITWARDEN__ env."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bwsync.standin", "--port", "0", "--self-hosted"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    env: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(env) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        name, sep, value = line.strip().partition("=")
        if sep and name.startswith("BWSYNC_BITWARDEN__"):
            env[name] = value
    if len(env) < 3:
        proc.kill()
        raise RuntimeError("the Bitwarden stand-in did not start")
    return proc, env


def run_sync(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """One ``bwsync sync`` in a fresh process: exit code, wall seconds, peak RSS, fetch time."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("BWSYNC_")
        and k.lower() not in ("https_proxy", "http_proxy", "all_proxy")
    }
    full_env |= env | {
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_SYNC__LARGE_IMPORT": "true",
        "BWSYNC_LOG__FORMAT": "json",
        "BWSYNC_SECRETS_DIR": str(workdir / "no-secrets"),
    }
    err_path = workdir / "stderr.txt"
    with err_path.open("w") as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bwsync", "sync"],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    err = err_path.read_text()
    fetch: dict[str, Any] = {}
    for line in err.splitlines():
        if '"event":"fetch"' in line:
            fetch = json.loads(line)
    out: dict[str, Any] = {
        "exit_code": code,
        "wall_seconds": round(seconds, 2),
        "fetch_seconds": fetch.get("seconds"),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "client_retries": fetch.get("retries"),
    }
    if code != 0:
        out["stderr_tail"] = err[-1500:]
    return out


def measure(case: Case, concurrency: int, workdir: Path, latency: float) -> dict[str, Any]:
    case.fake.clear_requests()
    case.fake.latency = latency
    bw, bw_env = start_bitwarden()
    try:
        env = case.env | bw_env | {"BWSYNC_SYNC__MAX_CONCURRENT_REQUESTS": str(concurrency)}
        result = run_sync(env, workdir)
    finally:
        bw.terminate()
        bw.wait(timeout=10)
    made = Counter(case.family(r.path) for r in case.served())
    statuses = Counter(r.status for r in case.served())
    result |= {
        "source": case.source,
        "concurrency": concurrency,
        "latency_seconds": latency,
        "requests": sum(made.values()),
        "paging_minimum": sum(case.minimum.values()),
        "requests_by_kind": dict(made),
        "minimum_by_kind": case.minimum,
        "answers_429": statuses.get(429, 0),
        "peak_in_flight": case.fake.peak_in_flight,
    }
    case.fake.peak_in_flight = 0
    return result


def measure_storm(case: Case, concurrency: int, workdir: Path, latency: float) -> dict[str, Any]:
    """A concurrent run through a two-second 429 storm on the member reads: how many requests
    arrived inside the window after its first 429 had been answered (the client knew of it;
    a request already on its way may race that answer)."""
    assert case.storm is not None
    case.fake.clear_requests()
    case.fake.latency = latency
    storm = case.storm()
    bw, bw_env = start_bitwarden()
    try:
        env = case.env | bw_env | {"BWSYNC_SYNC__MAX_CONCURRENT_REQUESTS": str(concurrency)}
        result = run_sync(env, workdir)
    finally:
        bw.terminate()
        bw.wait(timeout=10)
        case.fake.storms.clear()
    served = case.served()
    refused = [r for r in served if r.status == 429]
    inside: int | None = None  # unknown without Retry-After: the window is not announced
    if storm.windows and storm.retry_after:
        first_answered = min(answered for answered, _ in storm.windows)
        end = max(end for _, end in storm.windows)
        inside = sum(1 for r in served if first_answered < r.arrived < end)
    windows = "a window" if storm.retry_after else "no window (no Retry-After)"
    result |= {
        "source": case.source,
        "concurrency": concurrency,
        "storm": True,
        "answers_429": len(refused),
        "requests": len(served),
        "paging_minimum": sum(case.minimum.values()),
        "sent_inside_a_known_window": inside,
        "announced": windows,
    }
    return result


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cloud", description=__doc__)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--sources", nargs="*", default=["entra", "google", "okta", "onelogin"])
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--storm", action="store_true", help="add a 429-storm run per source")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bwsync-bench-") as d:
        tmp = Path(d)
        (tmp / "no-secrets").mkdir()
        tls = make_loopback_tls(tmp / "tls-rate")
        builders: dict[str, Callable[[], Case]] = {
            "entra": lambda: entra_case(tmp, args.users, args.groups),
            "google": lambda: google_case(tmp, args.users, args.groups),
            "okta": lambda: okta_case(tmp, args.users, args.groups, tls),
            "onelogin": lambda: onelogin_case(args.users, args.groups, tls),
        }
        for name in args.sources:
            case = builders[name]()
            try:
                for concurrency in args.concurrency:
                    results.append(measure(case, concurrency, tmp, args.latency))
                if args.storm and case.storm is not None:
                    results.append(measure_storm(case, max(args.concurrency), tmp, args.latency))
            finally:
                case.fake.stop()
    print(
        f"\n== cloud sources: {args.users:,} users, {args.groups} groups, "
        f"{args.latency * 1000:.0f} ms per request; bwsync sync in a child process =="
    )
    print(
        f"{'source':9} {'conc.':>5} {'wall s':>7} {'fetch s':>8} {'requests':>9} "
        f"{'minimum':>8} {'429s':>5} {'peak':>5} {'RSS MiB':>8}  exit"
    )
    for r in results:
        if r.get("storm"):
            continue
        print(
            f"{r['source']:9} {r['concurrency']:>5} {r['wall_seconds']:>7.2f} "
            f"{r['fetch_seconds'] or 0:>8.2f} {r['requests']:>9} {r['paging_minimum']:>8} "
            f"{r['answers_429']:>5} {r['peak_in_flight']:>5} {r['peak_rss_mib']:>8}  "
            f"{r['exit_code']}"
        )
    concurrent = [r for r in results if not r.get("storm") and r["concurrency"] > 1]
    for r in concurrent:
        verdict = "OK" if r["wall_seconds"] <= TARGET_SECONDS else "OVER"
        print(f"  {r['source']:9} target ≤ {TARGET_SECONDS:g} s: {verdict}")
    for r in results:
        if r.get("storm"):
            inside = r["sent_inside_a_known_window"]
            known = "n/a" if inside is None else inside
            print(
                f"  {r['source']:9} 429 storm (2 s, {r['announced']}) at concurrency "
                f"{r['concurrency']}: exit {r['exit_code']}, {r['answers_429']} answers 429, "
                f"{known} requests sent inside a known window, {r['requests']} requests "
                f"(paging minimum {r['paging_minimum']})"
            )
    for r in results:
        print(json.dumps(r))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
