"""What the unchanged-hash shortcut compares besides the hash.

bwdc skips a run whose import body hashes as the last applied one, and so does bwsync
(``payload.is_new_hash``). But several things change what a run *does* without changing that
body: ``remove_missing`` and ``removal_mode`` (revocations and removals through the member
endpoints, or ``deleted: true`` entries the plan adds), ``stale_groups`` (empty or delete a
group that left the directory), ``protected_members`` (entries the plan leaves out), whether
the state holds the memory of synced members that a server without list endpoints needs
(``bwsync.memory``), and the formats of the state and that memory. Compared by the hash alone,
turning ``remove_missing`` on changed nothing until the directory did, and a state written
before the memory existed never got one: a member who left meanwhile was never revoked.

So a successful apply stores, beside the hash, this fingerprint of all that; a run applies in
full when either differs. A state without a fingerprint (written by an older bwsync) counts as
different: the first run after upgrading applies in full once, which is idempotent. The
settings that do reach the body (users, groups, filters, ``remove_disabled``,
``overwrite_existing``, ``large_import``, ``invite_users``, the server and organization) are
covered by the hash. A new setting that changes the plan but not the body belongs here.
"""

from __future__ import annotations

import hashlib
from typing import Final

import orjson

from bwsync.config import SyncSettings
from bwsync.memory import FORMAT as MEMORY_FORMAT
from bwsync.state.base import STATE_VERSION

#: Raise when what a plan does for the same settings and directory changes (a release whose
#: plan revokes or counts differently): the first run after upgrading then applies in full.
PLAN_RULES: Final = 2


def plan_fingerprint(sync: SyncSettings, *, memory: bool) -> str:
    """The fingerprint of what a run does beyond the import body; ``memory``: whether the
    state holds a memory of synced members for this organization."""
    parts = {
        "plan_rules": PLAN_RULES,
        "state_version": STATE_VERSION,
        "memory_format": MEMORY_FORMAT,
        "memory": memory,
        "remove_missing": sync.remove_missing,
        "removal_mode": sync.removal_mode,
        "stale_groups": sync.stale_groups,
        "protected_members": sorted(sync.protected),
    }
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"sha256:{digest}"
