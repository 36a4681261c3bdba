"""``python -m bwsync.standin``: see ``bwsync.standin.serve``."""

from bwsync.standin.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
