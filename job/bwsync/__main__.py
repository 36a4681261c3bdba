"""``python -m bwsync``."""

import sys

from bwsync.cli import main

sys.exit(main())
