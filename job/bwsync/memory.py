"""What bwsync remembers of the members it synced, for a server that cannot list them.

Vaultwarden has no member or group list endpoints for the organization API key
(``reference/vaultwarden.md``): bwsync cannot read who is in the organization, so on its own it
could not tell who left the directory since the last run, nor count what ``overwrite_existing``
would delete. So after every successful apply to such a server it remembers, in its state:

* ``members``: the emails it sent as active members and has not revoked or seen removed since
  (Vaultwarden matches members by email, and so does this memory);
* ``revoked``: the emails it sent as ``deleted: true`` (Vaultwarden revokes those), until they
  come back;
* ``rejected``: the externalIds of the active directory entries it left out for an email the
  servers refuse (``normalize``), and ``held``: the members it therefore did not revoke (see
  below). Both are usually empty, and then not stored.

That is enough to count and name the members synced before, to revoke those gone since
(``remove_missing``), and to count what ``overwrite_existing`` would delete, against the
safety limits (``plan.py``).

Only emails are remembered, not which directory entry each one was: an entry whose email turns
into one the servers refuse is left out of the import, and its member looks exactly like one
who left. So when an entry is left out for the first time, every remembered member then
absent from the directory is *held*: not revoked (nor deleted by overwrite) while that entry
stays left out, since any of them may be it. ``held`` keeps those (email, externalId) pairs;
once the entry is fixed or gone, its held members are judged again like anyone else. A member
who leaves later, while the same entry stays left out, is not held: the entry was left out
already when that member was last seen.

The memory is written with a successful run's state. A run that failed or was stopped after
some of its import requests were accepted records what those carried, and nothing more
(``after_accepted``): the emails sent active as members, those sent deleted as revoked. The
next run then does not count again, against the safety limits, the revocations the server has
made already (``sync --allow-removals 300`` stopped after the batch that carried them would
otherwise be refused with exit 6 until run again with the flag). A run that failed before
any import was accepted leaves the previous memory.

The format must fit every state backend at 100,000 members, a Kubernetes ConfigMap (1 MiB in
all) included. Each set is stored domain first (``example.com@ann.lee``, so that a company's
domain costs nothing), sorted, front-coded (each string as the length of the prefix it shares
with the previous one and the rest), compressed with bzip2 (it has a CRC) and written as Base85
text (JSON-safe, 5 characters per 4 bytes). bzip2 beat xz by 10-20 % on address-like sets, and
at a fifth of the time (``tests/bench/memory.py``). 100,000 realistic addresses take about
0.4 MB; random ones more: the README gives the measured sizes and the ceiling, and a run whose
memory would exceed ``MAX_MEMORY_BYTES`` (``state.base``: with the rest of the document, under
a ConfigMap's 1 MiB) applies nothing and says so (exit 5).

The memory is extensible: ``sets`` maps names to encoded string sets, and sets this version
does not know are kept as they are (a later version may remember group externalIds too). It is
tied to one organization (``scope``); the memory of another is ignored, out loud. The scope
is the organization id alone: organization ids are GUIDs, and a Vaultwarden moved to another
address (``http://vaultwarden:80`` → ``https://vault.example.com``) is still the same
organization. A memory written with the API URL in its scope (``<url> organization <id>``,
before) is read as the memory of that organization. It holds email addresses, never secrets.
"""

from __future__ import annotations

import base64
import bz2
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from bwsync.errors import MemoryStateError
from bwsync.state.base import MAX_MEMORY_BYTES

__all__ = ["MAX_MEMORY_BYTES", "Memory", "MemoryStateError", "after_accepted", "scope_of"]

FORMAT: Final = 1
CODEC: Final = "domain-fc-bz2-b85"

MEMBERS: Final = "members"
REVOKED: Final = "revoked"
REJECTED: Final = "rejected"
HELD: Final = "held"
_KNOWN: Final = (MEMBERS, REVOKED, REJECTED, HELD)
#: Between the email and the externalId of a held pair: no email the servers accept holds it.
_PAIR: Final = "\x00"


@dataclass(frozen=True, slots=True)
class Memory:
    """The members bwsync synced to one organization (see the module docstring)."""

    scope: str
    members: frozenset[str] = frozenset()
    revoked: frozenset[str] = frozenset()
    other: Mapping[str, Any] = field(default_factory=dict)
    """Encoded sets of names this version does not use, kept as they were."""
    rejected: frozenset[str] = field(default=frozenset(), kw_only=True)
    """externalIds of the active entries left out for their email by the last apply."""
    held: frozenset[tuple[str, str]] = field(default=frozenset(), kw_only=True)
    """(email, externalId): remembered members not revoked because they may be the entry
    with that externalId, left out for its email (see the module docstring)."""

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None, scope: str) -> Memory | None:
        """The memory stored in the state, or ``None`` when there is none for this
        organization. A damaged one is an error: judging removals without it would be unsafe,
        and ``bwsync state clear`` is the way to start over."""
        if not stored_for(raw, scope):
            return None
        assert raw is not None
        try:
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, this bwsync reads {FORMAT}")
            sets = raw["sets"]
            if not isinstance(sets, dict):
                raise TypeError("sets is not an object")
            members, revoked, rejected, held = (
                decode_set(sets[name]) if sets.get(name) else [] for name in _KNOWN
            )
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:  # bz2: OSError
            raise MemoryStateError(
                f"the memory of synced members in the state cannot be read ({exc}); "
                "`bwsync state clear` starts over (the next run then cannot judge removals)"
            ) from None
        other = {k: v for k, v in sets.items() if k not in _KNOWN}
        pairs = frozenset((e, x) for e, _, x in (p.partition(_PAIR) for p in held))
        return cls(
            scope,
            frozenset(members),
            frozenset(revoked),
            other,
            rejected=frozenset(rejected),
            held=pairs,
        )

    def dump(self) -> dict[str, Any]:
        """The JSON object stored in the state document."""
        return {
            "format": FORMAT,
            "scope": self.scope,
            "sets": {
                MEMBERS: encode_set(self.members),
                REVOKED: encode_set(self.revoked),
                **({REJECTED: encode_set(self.rejected)} if self.rejected else {}),
                **({HELD: encode_set(_PAIR.join(p) for p in self.held)} if self.held else {}),
                **self.other,
            },
        }

    def same_sets(self, other: Memory) -> bool:
        """Whether ``other`` remembers the same (an unchanged memory is not encoded again)."""
        return (self.members, self.revoked, self.rejected, self.held) == (
            other.members,
            other.revoked,
            other.rejected,
            other.held,
        )


def after_accepted(old: Memory | None, scope: str, bodies: Iterable[bytes]) -> Memory | None:
    """``old`` (``None``: no memory yet) updated with what the accepted import ``bodies``
    carried: each member sent active is remembered as a member, each sent deleted as revoked
    (Vaultwarden revokes those). ``None`` when they carried no member. What the plan would
    have dropped or held is left as ``old`` has it: only what the server accepted counts."""
    active: set[str] = set()
    deleted: set[str] = set()
    for body in bodies:
        for member in orjson.loads(body).get("members") or ():
            email = member.get("email")
            if isinstance(email, str) and email:
                (deleted if member.get("deleted") else active).add(email)
    if not active and not deleted:
        return None
    if old is None:
        old = Memory(scope)
    return Memory(
        scope,
        members=frozenset((old.members | active) - deleted),
        revoked=frozenset((old.revoked | deleted) - active),
        other=old.other,
        rejected=old.rejected,
        held=old.held,
    )


def stored_for(raw: Mapping[str, Any] | None, scope: str) -> bool:
    """Whether the state holds a memory for this organization (not decoded); one written
    with the API URL in its scope (``<url> organization <id>``) counts."""
    if raw is None:
        return False
    stored = raw.get("scope")
    return isinstance(stored, str) and (stored == scope or stored.endswith(" " + scope))


def scope_of(org_id: str) -> str:
    """What a memory is of: the organization, wherever its server is reached."""
    return f"organization {org_id}"


def encoded_size(raw: Mapping[str, Any]) -> int:
    """Bytes the memory takes in the state document."""
    return len(orjson.dumps(raw))


def describe(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The memory as ``bwsync state show`` prints it: counts and size, not 100,000 emails."""
    if raw is None:
        return None
    sets = raw.get("sets")
    if not isinstance(sets, dict):
        sets = {}
    return {
        "scope": raw.get("scope"),
        "bytes": encoded_size(raw),
        **{
            name: s.get("count") if isinstance(s, dict) else None
            for name, s in sorted(sets.items())
        },
    }


def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _front_code(items: list[bytes]) -> bytes:
    """Each item (sorted) as: shared-prefix length, rest length (both varints), rest."""
    out = bytearray()
    prev = b""
    for item in items:
        limit = min(len(item), len(prev))
        shared = 0
        while shared < limit and item[shared] == prev[shared]:
            shared += 1
        _varint(shared, out)
        _varint(len(item) - shared, out)
        out += item[shared:]
        prev = item
    return bytes(out)


def _domain_first(s: str) -> str:
    """``ann@example.com`` → ``example.com@ann``, split at the last ``@`` (a quoted local part
    may hold one, a domain never); a string without ``@`` stays as it is."""
    local, at, domain = s.rpartition("@")
    return f"{domain}@{local}" if at else s


def _local_first(s: str) -> str:
    """The inverse of ``_domain_first``: split at the first ``@``."""
    domain, at, local = s.partition("@")
    return f"{local}@{domain}" if at else s


def encode_set(items: Iterable[str]) -> dict[str, Any]:
    """One set of strings, encoded (see the module docstring)."""
    ordered = sorted({_domain_first(s).encode("utf-8", "surrogatepass") for s in items})
    packed = bz2.compress(_front_code(ordered), 9)
    return {"count": len(ordered), "codec": CODEC, "data": base64.b85encode(packed).decode()}


def decode_set(encoded: Mapping[str, Any]) -> list[str]:
    """The strings of one encoded set."""
    if encoded.get("codec") != CODEC:
        raise ValueError(f"codec {encoded.get('codec')!r}, this bwsync reads {CODEC}")
    data = encoded["data"]
    count = encoded["count"]
    if not isinstance(data, str) or not isinstance(count, int):
        raise TypeError("data should be text and count a number")
    raw = bz2.decompress(base64.b85decode(data))
    items: list[str] = []
    prev = b""
    i, n = 0, len(raw)
    while i < n:
        shared, i = _read_varint(raw, i)
        rest, i = _read_varint(raw, i)
        if shared > len(prev) or i + rest > n:
            raise ValueError("damaged set")
        item = prev[:shared] + raw[i : i + rest]
        i += rest
        items.append(_local_first(item.decode("utf-8", "surrogatepass")))
        prev = item
    if len(items) != count:
        raise ValueError(f"{len(items)} strings where {count} were stored")
    return items


def _read_varint(raw: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(raw):
            raise ValueError("damaged set")
        byte = raw[i]
        i += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, i
        shift += 7
