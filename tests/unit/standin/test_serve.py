"""``bwsync.standin.serve``: ``python -m bwsync.standin`` serves the official server's API from
a process of its own, seeded with a confirmed owner, and prints how to reach it."""

from __future__ import annotations

import subprocess
import sys

import httpx


def test_command_line_serves_and_prints_the_base_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bwsync.standin", "--port", "0", "--self-hosted",
         "--owner", "boss@example.com"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        creds = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert base.startswith("http://127.0.0.1:")
        assert creds["BWSYNC_BITWARDEN__SERVER"] == base
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as http:
            assert http.get("/api/public/members").status_code == 401  # the official server
            r = http.post("/identity/connect/token", data={
                "grant_type": "client_credentials", "scope": "api.organization",
                "client_id": creds["BWSYNC_BITWARDEN__CLIENT_ID"],
                "client_secret": creds["BWSYNC_BITWARDEN__CLIENT_SECRET"]})  # fmt: skip
            assert r.status_code == 200
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            members = http.get("/api/public/members", headers=auth).json()["data"]
            assert [(x["email"], x["type"], x["status"]) for x in members] == [
                ("boss@example.com", 0, 2)  # a confirmed Owner
            ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_vaultwarden_is_not_an_option_of_the_shipped_stand_in() -> None:
    # Vaultwarden mode is the tests' (tests/standins/bitwarden): the shipped one refuses it.
    proc = subprocess.run(
        [sys.executable, "-m", "bwsync.standin", "--vaultwarden"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unrecognized arguments: --vaultwarden" in proc.stderr
