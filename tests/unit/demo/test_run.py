"""``bwsync demo``: what it applies is what its plan showed, and ``--keep-running`` says how to
reach the stand-in it leaves running."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from bwsync.bitwarden import BitwardenClient
from bwsync.config import BitwardenSettings
from bwsync.demo.run import run_demo


def test_the_sync_applies_what_the_plan_showed(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo() == 0
    out = capsys.readouterr().out
    totals = re.search(r"^totals:\s+(.+)$", out, re.MULTILINE)
    applied = re.search(r"^result: success \(exit 0\) in .*; applied: (.+)$", out, re.MULTILINE)
    assert totals and applied, out

    # member_add included: the plan and the sync both read group memberships (--detail)
    def counts(text: str) -> dict[str, int]:
        return {k: int(v) for k, v in (item.rsplit(" ", 1) for item in text.split(", "))}

    assert counts(applied.group(1)) == counts(totals.group(1))
    assert counts(applied.group(1)) == {"group_create": 4, "invite": 8, "link": 1, "member_add": 13}
    assert "applied: nothing" in out  # the second sync


def test_keep_running_prints_the_settings_that_reach_the_stand_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reached: list[str] = []

    def use_them() -> None:
        """While the stand-in still serves: take the printed settings and get a token."""
        printed = capsys.readouterr().out
        env = dict(
            line.split("=", 1)
            for line in printed.splitlines()
            if line.startswith("BWSYNC_BITWARDEN__")
        )
        settings = BitwardenSettings(
            server=env["BWSYNC_BITWARDEN__SERVER"],
            client_id=env["BWSYNC_BITWARDEN__CLIENT_ID"],
            client_secret=SecretStr(env["BWSYNC_BITWARDEN__CLIENT_SECRET"]),
        )
        with BitwardenClient(settings) as client:
            client.check_token()
        reached.append(env["BWSYNC_BITWARDEN__SERVER"])

    assert run_demo(keep_running=True, until=use_them) == 0
    assert len(reached) == 1 and reached[0].startswith("http://127.0.0.1:")
