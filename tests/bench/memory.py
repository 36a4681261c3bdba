"""Benchmark: the size of the memory of synced members (``bwsync.memory``) by kind of address.

``uv run python -m tests.bench.memory [--members 100000]``

For each kind of address, ``--members`` distinct ones are encoded as the state stores them
(sorted, front-coded, xz, Base85): the encoded size, bytes per member, encode and decode
time, and the ceiling, the members that fit ``MAX_MEMORY_BYTES`` at that rate (a ConfigMap's
1 MiB holds the whole state document). Numbers go to stdout; nothing is asserted (the
guarantee for realistic addresses is tests/unit/test_memory.py).

Kinds: ``first.last`` (3,000 first and 30,000 last names, five domains of one company),
``ad-style`` (initial + last name + sometimes digits, one domain), ``random-8`` (8 random
letters at one domain), ``random-words`` (6-20 random letters at a random 5-12-letter
``.com`` domain: no structure at all), ``guid`` (32 hex digits at one domain, the shape of
generated accounts).
"""

from __future__ import annotations

import argparse
import random
import string
import time
from collections.abc import Callable

from bwsync.memory import MAX_MEMORY_BYTES, decode_set, encode_set

_SYLLABLES = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"] + ["an", "el", "or", "st"]


def _names(rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def realistic_emails(n: int, rng: random.Random) -> set[str]:
    """first.last at one company's five domains, 5 % with a number appended."""
    firsts, lasts = _names(rng, 3000, 2, 3), _names(rng, 30000, 2, 4)
    domains = ["example.com"] * 3 + ["eu.example.com", "example.co.uk"]
    out: set[str] = set()
    while len(out) < n:
        local = f"{rng.choice(firsts)}.{rng.choice(lasts)}"
        if rng.random() < 0.05:
            local += str(rng.randint(1, 99))
        out.add(f"{local}@{rng.choice(domains)}")
    return out


def _ad_style(n: int, rng: random.Random) -> set[str]:
    lasts = _names(rng, 30000, 2, 4)
    out: set[str] = set()
    while len(out) < n:
        local = rng.choice(string.ascii_lowercase) + rng.choice(lasts)
        if rng.random() < 0.2:
            local += str(rng.randint(1, 999))
        out.add(f"{local}@corp.example.com")
    return out


def _random_8(n: int, rng: random.Random) -> set[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choices(string.ascii_lowercase, k=8)) + "@example.com")
    return out


def _random_words(n: int, rng: random.Random) -> set[str]:
    out: set[str] = set()
    while len(out) < n:
        local = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 20)))
        domain = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 12)))
        out.add(f"{local}@{domain}.com")
    return out


def _guid(n: int, rng: random.Random) -> set[str]:
    return {f"{rng.getrandbits(128):032x}@example.com" for _ in range(n)}


KINDS: dict[str, Callable[[int, random.Random], set[str]]] = {
    "first.last": realistic_emails,
    "ad-style": _ad_style,
    "random-8": _random_8,
    "random-words": _random_words,
    "guid": _guid,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    n = args.members
    print(f"memory of {n:,} members; cap {MAX_MEMORY_BYTES:,} bytes (MAX_MEMORY_BYTES)")
    print(
        f"  {'kind':<13} {'raw MB':>7} {'encoded KB':>11} {'B/member':>9} "
        f"{'encode s':>9} {'decode s':>9} {'ceiling':>10}"
    )
    for kind, make in KINDS.items():
        emails = make(n, random.Random(14))  # noqa: S311 - reproducible addresses
        raw = sum(len(e) + 1 for e in emails)
        start = time.perf_counter()
        encoded = encode_set(emails)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        decode_set(encoded)
        decode_s = time.perf_counter() - start
        size = len(encoded["data"])
        per = size / n
        print(
            f"  {kind:<13} {raw / 1e6:7.2f} {size / 1000:11.0f} {per:9.2f} "
            f"{encode_s:9.2f} {decode_s:9.2f} {int(MAX_MEMORY_BYTES / per):>10,}"
        )


if __name__ == "__main__":
    main()
