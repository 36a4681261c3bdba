"""The Bitwarden stand-in as a process of its own: ``python -m bwsync.standin``.

It serves until interrupted and prints its base URL, then the three settings bwsync needs to
reach it (``BWSYNC_BITWARDEN__SERVER``, ``__CLIENT_ID``, ``__CLIENT_SECRET``). The benchmarks
run it so that the stand-in's work is not counted as bwsync's; the end-to-end Kubernetes test
runs it from the image. ``options`` and ``serve`` are shared with the tests' stand-in
(``python -m tests.standins.bitwarden``), which adds options of its own.
"""

from __future__ import annotations

import argparse
import gc
import time

from bwsync.standin.server import BitwardenStandIn

__all__ = ["main", "options", "serve"]


def options(prog: str) -> argparse.ArgumentParser:
    """The command line's options: where to listen, the API key, the server's flags."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local stand-in for the Bitwarden organization API (tests and demos only).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--self-hosted", action="store_true", help="no 2,000-entry import cap")
    parser.add_argument("--client-id", help="organization.<uuid> (random by default)")
    parser.add_argument("--client-secret", help="the API key secret (random by default)")
    parser.add_argument("--staged", action="store_true", help="server flag for Staged members")
    parser.add_argument("--owner", default="owner@example.com", help="seed this confirmed owner")
    return parser


def serve(standin: BitwardenStandIn, owner: str | None) -> int:
    """Seed ``owner`` (a confirmed Owner), start, print where, serve until interrupted."""
    if owner:
        standin.add_owner(owner)
    # A server process holding an organization of 100,000 long-lived members: the cyclic
    # collector's full passes over them cost more than the few cycles it would reclaim (error
    # tracebacks), so what exists now is frozen and full passes come rarely.
    gc.freeze()
    gc.set_threshold(10_000, 50, 1_000)
    standin.start()
    print(standin.base_url, flush=True)
    print(f"BWSYNC_BITWARDEN__SERVER={standin.base_url}", flush=True)
    print(f"BWSYNC_BITWARDEN__CLIENT_ID={standin.client_id}", flush=True)
    print(f"BWSYNC_BITWARDEN__CLIENT_SECRET={standin.client_secret}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; print the base URL and the organization API key."""
    args = options("python -m bwsync.standin").parse_args(argv)
    standin = BitwardenStandIn(
        self_hosted=args.self_hosted,
        client_id=args.client_id,
        client_secret=args.client_secret,
        staged_status=args.staged,
        host=args.host,
        port=args.port,
    )
    return serve(standin, args.owner)
