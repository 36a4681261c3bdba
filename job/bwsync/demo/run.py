"""``bwsync demo``: the whole job on the built-in demo directory, with nothing to set up.

It starts the Bitwarden stand-in (``bwsync.standin``) on a free loopback port,
seeds an organization with an owner and one member added by hand, then runs what an admin
would run on day one: ``plan``, ``sync``, and ``sync`` again (nothing to do the second time).
The state lives in a temporary directory and is gone afterwards.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from bwsync import logs
from bwsync.output import print_plan_text, summary_line
from bwsync.run import RunOptions, execute
from bwsync.settings import load_settings
from bwsync.standin.server import BitwardenStandIn


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(*, keep_running: bool = False, until: Callable[[], object] | None = None) -> int:
    """The demo; with ``keep_running`` the stand-in serves on until ``until`` returns (by
    default never: Ctrl-C)."""
    with (
        tempfile.TemporaryDirectory(prefix="bwsync-demo-") as tmp,
        BitwardenStandIn(self_hosted=True) as standin,
    ):
        standin.add_owner("owner@example.com")
        standin.add_member("grace.hopper@example.com")  # invited by hand before bwsync existed
        settings = load_settings(
            source="file",
            bitwarden={
                "server": standin.base_url,
                "client_id": standin.client_id,
                "client_secret": standin.client_secret,
            },
            state={"backend": "file", "path": Path(tmp) / "state.json"},
            log={"format": "console", "level": "warning"},
            sync={"remove_disabled": True},
        )
        logs.setup("console", "warning")
        _say(
            f"bwsync demo: the built-in demo directory → a Bitwarden stand-in at {standin.base_url}"
        )
        _say("\n$ bwsync plan")
        outcome = execute(settings, RunOptions(command="plan", detail=True))
        print_plan_text(outcome)
        for n in (1, 2):
            # --detail, as the plan: `applied` then confirms the memberships it showed too.
            _say("\n$ bwsync sync --detail")
            outcome = execute(settings, RunOptions(command="sync", detail=True))
            _say(summary_line(outcome.report))
            if outcome.report.exit_code != 0:
                _say(f"error: {outcome.report.error}")
                return outcome.report.exit_code
            if n == 1:
                imported = standin.requests_to("import")
                _say(
                    f"the stand-in received {len(imported)} import request(s); it now has "
                    f"{len(standin.members)} members and {len(standin.groups)} groups"
                )
        _say("\nThe second sync found the directory unchanged and sent nothing.")
        if keep_running:
            # What `python -m bwsync.standin` prints: the settings that reach it (a throwaway
            # key of a local stand-in, nothing of a real organization).
            _say(f"\nstand-in still serving at {standin.base_url} (Ctrl-C to stop); to reach it:")
            _say(f"BWSYNC_BITWARDEN__SERVER={standin.base_url}")
            _say(f"BWSYNC_BITWARDEN__CLIENT_ID={standin.client_id}")
            _say(f"BWSYNC_BITWARDEN__CLIENT_SECRET={standin.client_secret}")
            with contextlib.suppress(KeyboardInterrupt):
                (until or threading.Event().wait)()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
