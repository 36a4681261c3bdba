"""Synthetic directories for the LDAP benchmark, written as LDIF for ``slapadd``.

Deterministic (seeded) so two runs measure the same thing. Users are inetOrgPerson entries with
``uid`` and ``mail``; groups are groupOfNames whose ``member`` values are user DNs, about
``members`` each, drawn with replacement-free sampling so every group is a plausible team.
"""

from __future__ import annotations

import random
from pathlib import Path

BASE_DN = "dc=bench,dc=example"


def write_ldif(path: Path, users: int, groups: int, members: int = 50, seed: int = 7) -> None:
    """Write the base, ``ou=people``, ``ou=groups``, the users, then the groups."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible directory, not a secret
    people = f"ou=people,{BASE_DN}"
    with path.open("w", buffering=1 << 20) as f:
        f.write(
            f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: bench\n"
            f"o: bench\n\n"
            f"dn: {people}\nobjectClass: organizationalUnit\nou: people\n\n"
            f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
        )
        for n in range(users):
            uid = f"user{n:06d}"
            f.write(
                f"dn: uid={uid},{people}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"cn: User {n}\nsn: {n}\nmail: {uid}@Example.COM\n\n"
            )
        for g in range(groups):
            f.write(f"dn: cn=group{g:05d},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\n")
            f.write(f"cn: group{g:05d}\n")
            for n in rng.sample(range(users), min(members, users)):
                f.write(f"member: uid=user{n:06d},{people}\n")
            f.write("\n")
