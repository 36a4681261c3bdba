"""``python -m tests.standins.bitwarden``: the tests' Bitwarden stand-in as a process of its
own, with the shipped stand-in's options (``bwsync.standin.serve``) and Vaultwarden's."""

from __future__ import annotations

from bwsync.standin.serve import options, serve
from tests.standins.bitwarden import FakeBitwarden


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; print the base URL and the organization API key."""
    parser = options("python -m tests.standins.bitwarden")
    parser.add_argument("--vaultwarden", action="store_true", help="behave like Vaultwarden")
    parser.add_argument(
        "--groups-enabled", action="store_true", help="Vaultwarden ORG_GROUPS_ENABLED"
    )
    args = parser.parse_args(argv)
    fake = FakeBitwarden(
        vaultwarden=args.vaultwarden,
        self_hosted=args.self_hosted,
        client_id=args.client_id,
        client_secret=args.client_secret,
        staged_status=args.staged,
        groups_enabled=args.groups_enabled,
        host=args.host,
        port=args.port,
    )
    return serve(fake, args.owner)


if __name__ == "__main__":
    raise SystemExit(main())
