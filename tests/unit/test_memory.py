"""memory: the members bwsync synced to a server that cannot list them, in a compact form
that every state backend can hold at 100,000 members (a ConfigMap's 1 MiB included)."""

from __future__ import annotations

import random
import string

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bwsync.errors import StateError
from bwsync.memory import (
    MAX_MEMORY_BYTES,
    Memory,
    MemoryStateError,
    after_accepted,
    decode_set,
    describe,
    encode_set,
    encoded_size,
    scope_of,
)

SCOPE = scope_of("o-1")


def test_round_trip_through_json() -> None:
    memory = Memory(
        SCOPE,
        frozenset({"ann@example.com", "jörg@bücher.example", "a@b.c"}),
        frozenset({"gone@example.com"}),
        {"groups": encode_set({"g1"})},
    )
    stored = orjson.loads(orjson.dumps(memory.dump()))
    assert Memory.load(stored, SCOPE) == memory
    assert stored["sets"]["members"]["count"] == 3
    assert SCOPE == "organization o-1"


def test_entries_left_out_and_members_held_round_trip_and_cost_nothing_when_empty() -> None:
    memory = Memory(
        SCOPE,
        frozenset({"a@x.com", "b@x.com"}),
        rejected=frozenset({"cn=b,dc=x", "9001"}),
        held=frozenset({("b@x.com", "cn=b,dc=x"), ("b@x.com", "9001"), ("a@x.com", "x@y\x00z")}),
    )
    stored = orjson.loads(orjson.dumps(memory.dump()))
    assert Memory.load(stored, SCOPE) == memory
    assert stored["sets"]["held"]["count"] == 3
    plain = Memory(SCOPE, frozenset({"a@x.com"})).dump()
    assert set(plain["sets"]) == {"members", "revoked"}  # what an older bwsync wrote


def test_another_organization_has_no_memory() -> None:
    stored = Memory(SCOPE, frozenset({"a@x.com"})).dump()
    assert Memory.load(stored, scope_of("o-2")) is None
    assert Memory.load(None, SCOPE) is None


def test_a_memory_written_with_the_server_address_is_the_organization_s() -> None:
    stored = Memory(SCOPE, frozenset({"a@x.com"})).dump()
    stored["scope"] = "http://vaultwarden:80/api organization o-1"
    loaded = Memory.load(stored, SCOPE)
    assert loaded is not None and loaded.members == {"a@x.com"}
    stored["scope"] = "http://vaultwarden:80/api organization o-11"
    assert Memory.load(stored, SCOPE) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.update(format=2),
        lambda m: m["sets"]["members"].update(count=4),
        lambda m: m["sets"]["members"].update(data="!!!!"),
        lambda m: m["sets"]["members"].update(codec="zstd"),
        lambda m: m.update(sets=[]),
        lambda m: m["sets"].update(members=5),  # was an AttributeError: exit 1
    ],
)
def test_a_damaged_memory_is_a_state_error(damage: object) -> None:
    stored = Memory(SCOPE, frozenset({"a@x.com", "b@x.com", "c@x.com"})).dump()
    damage(stored)  # type: ignore[operator]
    with pytest.raises(MemoryStateError, match="bwsync state clear") as info:
        Memory.load(stored, SCOPE)
    assert isinstance(info.value, StateError) and info.value.exit_code == 5


@given(st.sets(st.text(max_size=40)))
def test_any_set_of_strings_survives(items: set[str]) -> None:
    assert set(decode_set(encode_set(items))) == items


def test_describe_gives_counts_not_emails() -> None:
    stored = Memory(SCOPE, frozenset({"a@x.com", "b@x.com"}), frozenset({"c@x.com"})).dump()
    shown = describe(stored)
    assert shown == {"scope": SCOPE, "bytes": encoded_size(stored), "members": 2, "revoked": 1}
    assert "a@x.com" not in orjson.dumps(shown).decode()
    assert describe(None) is None


def _realistic(n: int, rng: random.Random) -> set[str]:
    """first.last@ a handful of company domains, from 3,000 first and 30,000 last names."""
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"] + ["an", "el", "or", "st"]

    def name(lo: int, hi: int) -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(lo, hi)))

    firsts = [name(2, 3) for _ in range(3000)]
    lasts = [name(2, 4) for _ in range(30000)]
    domains = ["example.com"] * 3 + ["eu.example.com", "example.co.uk"]
    out: set[str] = set()
    while len(out) < n:
        local = f"{rng.choice(firsts)}.{rng.choice(lasts)}"
        if rng.random() < 0.05:
            local += str(rng.randint(1, 99))
        out.add(f"{local}@{rng.choice(domains)}")
    return out


def test_100000_realistic_members_fit_far_below_the_cap() -> None:
    """The design's promise: 100,000 members fit every backend. Measured sizes and the
    ceiling are in the README (tests/bench prints them)."""
    rng = random.Random(14)  # noqa: S311 - reproducible addresses, not secrets
    members = _realistic(100_000, rng)
    revoked = {
        f"{''.join(rng.choices(string.ascii_lowercase, k=10))}@example.com" for _ in range(5000)
    }
    stored = Memory(SCOPE, frozenset(members), frozenset(revoked)).dump()
    size = encoded_size(stored)
    assert size < MAX_MEMORY_BYTES / 1.5, size
    again = Memory.load(orjson.loads(orjson.dumps(stored)), SCOPE)
    assert again is not None and again.members == members and again.revoked == revoked


def _body(*members: tuple[str, bool]) -> bytes:
    entries = [{"email": e, "externalId": e, "deleted": d} for e, d in members]
    return orjson.dumps({"groups": [], "members": entries, "overwriteExisting": False})


def test_a_failed_run_remembers_what_its_accepted_imports_carried_and_no_more() -> None:
    old = Memory(
        SCOPE,
        frozenset({"stays@x", "leaves@x", "untouched@x"}),
        frozenset({"back@x"}),
        {"groups": encode_set({"g1"})},
        rejected=frozenset({"u9"}),
        held=frozenset({("untouched@x", "u9")}),
    )
    bodies = [_body(("stays@x", False), ("new@x", False)), _body(("leaves@x", True))]
    after = after_accepted(old, SCOPE, bodies)
    assert after == Memory(
        SCOPE,
        frozenset({"stays@x", "new@x", "untouched@x"}),
        frozenset({"back@x", "leaves@x"}),
        old.other,
        rejected=old.rejected,
        held=old.held,
    )
    # back@x was in a batch that was not accepted: still revoked. A group batch changes nothing.
    assert (
        after_accepted(old, SCOPE, [orjson.dumps({"groups": [{"name": "g"}], "members": []})])
        is None
    )
    fresh = after_accepted(None, SCOPE, [_body(("back@x", False), ("gone@x", True))])
    assert fresh == Memory(SCOPE, frozenset({"back@x"}), frozenset({"gone@x"}))
