"""Benchmark: a full ``bwsync sync`` from the Okta and the OneLogin stand-ins.

``uv run python -m tests.bench.okta_onelogin [--users 10000] [--groups 500] [--runs 1]``

For each source: the stand-in (HTTPS, in this process, a directory of realistic shape from
``okta_directory`` / ``onelogin_directory``) and the Bitwarden stand-in (``python -m
bwsync.standin --self-hosted``, its own process) are started; then ``bwsync sync``
runs as a subprocess with ``BWSYNC_STATE__BACKEND=none`` and ``BWSYNC_SYNC__LARGE_IMPORT=true``.
Measured per run: wall time of the process, its peak RSS (``wait4`` rusage of that child only),
the HTTP requests the stand-in answered, and the Bitwarden requests from the run's metrics
textfile. Okta authenticates as a service app (private_key_jwt), OneLogin with its API
credential and ``use_email_prefix_suffix``. No rate limit is configured on the stand-ins, so the
numbers are the client's own cost; with Okta's real per-minute limits a 500-group org is paced.
Not a timed test: numbers go to stdout (a table, then one JSON line per run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.standins.okta import FakeOkta, okta_directory
from tests.standins.onelogin import FakeOneLogin, onelogin_directory
from tests.standins.tls import TlsFiles, self_signed_tls

CLIENT_ID = "0oabenchserviceapp001"


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
    """One ``bwsync sync`` in a fresh process: wall seconds, peak RSS, Bitwarden requests."""
    textfile = workdir / "metrics.prom"
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BWSYNC_") and k.lower() not in ("https_proxy", "http_proxy")
    }
    full_env |= env | {
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_SYNC__LARGE_IMPORT": "true",
        "BWSYNC_LOG__FORMAT": "json",
        "BWSYNC_METRICS__TEXTFILE_PATH": str(textfile),
        "BWSYNC_SECRETS_DIR": str(workdir / "no-secrets"),
    }
    bwsync = Path(sys.executable).with_name("bwsync")
    # Output to files, not pipes: a full pipe would stall the child while we wait4 for it.
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(bwsync), "sync"], env=full_env, stdout=out_file, stderr=err_file
        )
        # wait4 gives this child's own rusage: its peak RSS, not the largest of all children.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = out_path.read_text(), err_path.read_text()
    summary: dict[str, Any] = next(
        (json.loads(line) for line in reversed(err.splitlines()) if '"event":"summary"' in line),
        {},
    )
    bitwarden = 0
    if textfile.exists():
        for line in textfile.read_text().splitlines():
            match = re.match(r"bwsync_bitwarden_requests_total\{.*\} ([0-9.e+]+)$", line)
            if match:
                bitwarden += int(float(match.group(1)))
    if proc.returncode != 0:
        print(out, err[-3000:], file=sys.stderr)
    return {
        "exit_code": proc.returncode,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "bitwarden_requests": bitwarden,
        "fetch_seconds": _stage(err, "fetch"),
        "directory": summary.get("directory"),
        "sent": summary.get("sent"),
    }


def _stage(err: str, name: str) -> float | None:
    for line in err.splitlines():
        if f'"event":"{name}"' in line:
            return float(json.loads(line).get("seconds", 0.0))
    return None


def okta_env(fake: FakeOkta, tls: TlsFiles, key_file: Path) -> dict[str, str]:
    return {
        "BWSYNC_SOURCE": "okta",
        "BWSYNC_OKTA__ORG_URL": fake.url,
        "BWSYNC_OKTA__CLIENT_ID": CLIENT_ID,
        "BWSYNC_OKTA__PRIVATE_KEY_FILE": str(key_file),
        "BWSYNC_OKTA__CA_FILE": str(tls.ca_file),
    }


def onelogin_env(fake: FakeOneLogin, tls: TlsFiles) -> dict[str, str]:
    return {
        "BWSYNC_SOURCE": "onelogin",
        "BWSYNC_ONELOGIN__CLIENT_ID": fake.client_id,
        "BWSYNC_ONELOGIN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_ONELOGIN__API_URL": fake.url,
        "BWSYNC_ONELOGIN__CA_FILE": str(tls.ca_file),
        "BWSYNC_ONELOGIN__USE_EMAIL_PREFIX_SUFFIX": "true",
        "BWSYNC_ONELOGIN__EMAIL_SUFFIX": "@example.com",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.okta_onelogin")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bwsync-bench-") as tmp:
        work = Path(tmp)
        (work / "no-secrets").mkdir()
        tls = self_signed_tls(work / "tls")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file = work / "okta-app.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        okta = FakeOkta(tls, okta_directory(args.users, args.groups))
        okta.register_client(
            CLIENT_ID,
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        onelogin = FakeOneLogin(tls, onelogin_directory(args.users, args.groups))
        cases: list[tuple[str, Any]] = [("okta", okta), ("onelogin", onelogin)]
        for name, fake in cases:
            fake.start()  # the port is known from here on
            env = okta_env(okta, tls, key_file) if name == "okta" else onelogin_env(onelogin, tls)
            try:
                for run in range(args.runs):
                    bw, bw_env = start_bitwarden()
                    try:
                        fake.clear_requests()
                        result = run_sync(env | bw_env, work)
                    finally:
                        bw.terminate()
                        bw.wait(timeout=10)
                    by_path = Counter(_family(r.path) for r in fake.requests)
                    result |= {
                        "source": name,
                        "run": run + 1,
                        "users": args.users,
                        "groups": args.groups,
                        "directory_requests": len(fake.requests),
                        "directory_requests_by_endpoint": dict(by_path),
                    }
                    results.append(result)
            finally:
                fake.stop()
    print(
        f"{'source':9} {'wall s':>7} {'fetch s':>8} {'peak RSS MB':>12} "
        f"{'dir. req':>9} {'bw req':>7} exit"
    )
    for r in results:
        print(
            f"{r['source']:9} {r['seconds']:7.2f} {r['fetch_seconds'] or 0:8.2f} "
            f"{r['peak_rss_mb']:12.1f} {r['directory_requests']:9d} "
            f"{r['bitwarden_requests']:7d} {r['exit_code']}"
        )
    for r in results:
        print(json.dumps(r))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


def _family(path: str) -> str:
    if path.startswith("/api/v1/groups/"):
        return "/api/v1/groups/{id}/users"
    return path


if __name__ == "__main__":
    raise SystemExit(main())
