"""The contract every directory source keeps, run against each one over real I/O.

Same directory in (``tests/contract/directory.py``: seven people, five teams, one disabled,
one deleted, teams nested two deep, one empty), same users and groups out, normalised, for:
LDAP on a real OpenLDAP slapd and a real Samba AD DC, each on both wire engines; Entra,
Google, Okta and OneLogin against their stand-ins over loopback HTTPS; the file source (JSON
and CSV). What a source cannot express is declared in its ``Capabilities`` with the reason
(``tests/contract/sources.py``); a case then holds the source to what it must do instead (a
filter it cannot apply is refused, nesting it cannot read is never invented), and skips, with
that declared reason, only where nothing is left to hold it to.

Cases: the whole directory; paging; a user filter; a group filter (with bwdc's §6.2 user
scoping where the source has it); disabled users; deleted users; nested groups; sync switches;
a second read equal to the first, order included (the hash depends on it); refused credentials
and a failure half-way through, each a directory error (exit 3) that names no secret and
returns no partial directory; ``check`` on a good and on a refused directory.
"""

from __future__ import annotations

import pytest

from bwsync.config import SyncSettings
from bwsync.errors import BwsyncError, ConfigError, DirectoryError
from bwsync.model import Directory
from bwsync.sources.base import FetchRequest
from tests.contract.directory import (
    FILTERED_OUT,
    PEOPLE,
    Lacks,
    Seen,
    expected,
    observed,
    person,
)
from tests.contract.sources import Adapter


def fetch(contract: Adapter, sync: SyncSettings | None = None, **settings: object) -> Directory:
    return contract.source(sync, **settings).fetch(FetchRequest())


def lacks(contract: Adapter, capability: str) -> str | None:
    value = getattr(contract.caps, capability)
    return value.why if isinstance(value, Lacks) else None


def only_the_fixtures(seen: Seen) -> set[tuple[str, bool, bool]]:
    """The users of the fixture directory (an AD forced fetch also returns every tombstone of
    the domain, other tests' included, as bwdc does)."""
    ours = {p.address for p in PEOPLE}
    return {u for u in seen.users or () if u[0] in ours}


def test_the_directory_comes_out_as_described(contract: Adapter) -> None:
    assert observed(fetch(contract)) == expected(contract.caps)


def test_every_page_is_read(contract: Adapter) -> None:
    if why := lacks(contract, "paging"):
        pytest.skip(f"{contract.name} has no paging: {why}")
    whole = observed(fetch(contract))
    settings, requests = contract.small_pages()
    before = requests() if requests else 0
    paged = fetch(contract, **settings)
    assert observed(paged) == whole == expected(contract.caps)
    if requests is not None:  # one entry a page: more requests than one listing each
        assert requests() - before > 2 * before


def test_a_user_filter_leaves_out_the_user_it_names(contract: Adapter) -> None:
    sync = SyncSettings(user_filter=contract.user_filter or f"exclude:{FILTERED_OUT}@example.com")
    if why := lacks(contract, "user_filter"):
        refused_filter(contract, sync, "BWSYNC_SYNC__USER_FILTER", why)
        return
    seen = observed(fetch(contract, sync))
    assert seen.users == expected(contract.caps, user_filter=True).users
    assert (person(FILTERED_OUT).address, False, False) not in (seen.users or ())


def test_a_group_filter_keeps_the_groups_it_names(contract: Adapter) -> None:
    sync = SyncSettings(group_filter=contract.group_filter or "include:engineering")
    if why := lacks(contract, "group_filter"):
        refused_filter(contract, sync, "BWSYNC_SYNC__GROUP_FILTER", why)
        return
    assert observed(fetch(contract, sync)) == expected(contract.caps, group_filter=True)


def refused_filter(contract: Adapter, sync: SyncSettings, variable: str, why: str) -> None:
    """A source that cannot filter refuses the filter (exit 2, naming the variable): silently
    syncing everyone would invite the people the admin meant to leave out."""
    with pytest.raises(ConfigError) as caught:
        contract.source(sync).fetch(FetchRequest())
    assert caught.value.exit_code == 2
    assert variable in str(caught.value), why


def test_disabled_users_come_back_disabled(contract: Adapter) -> None:
    seen = observed(fetch(contract))
    disabled = {u[0] for u in seen.users or () if u[1]}
    if lacks(contract, "disabled"):
        assert disabled == set()  # never invented
    else:
        assert disabled == {p.address for p in PEOPLE if p.disabled}
    assert seen == expected(contract.caps)


def test_deleted_users_come_back_deleted(contract: Adapter) -> None:
    """A forced fetch (``--force``: AD adds its tombstones); how a deleted user comes back is
    the source's declared ``deleted``."""
    gone = {p.address for p in PEOPLE if p.deleted}
    forced = contract.source().fetch(FetchRequest(force=True))
    deleted = {u[0] for u in only_the_fixtures(observed(forced)) if u[2]}
    how = contract.caps.deleted
    if isinstance(how, Lacks) or how == "dropped":
        assert deleted == set()
        assert not [u for u in forced.users or () if u.email and u.email in gone]
    else:
        assert deleted == gone
        plain = only_the_fixtures(observed(fetch(contract)))
        assert {u[0] for u in plain if u[2]} == (gone if how == "flagged" else set())
    assert only_the_fixtures(observed(forced)) == set(
        expected(contract.caps, force=True).users or ()
    )


def test_nested_groups_are_flattened(contract: Adapter) -> None:
    raw = fetch(contract)
    nested = {g.name: list(g.group_member_reference_ids) for g in raw.groups or ()}
    flat = observed(raw).groups or {}
    if lacks(contract, "nested_groups"):
        assert all(refs == [] for refs in nested.values())  # never invented
        assert flat["Engineering"] == {person("ada").address}
    else:
        ids = {g.name: g.reference_id for g in raw.groups or ()}
        assert nested["Engineering"] == [ids["Platform"]]
        assert nested["Platform"] == [ids["Infra"]]
        assert flat["Engineering"] == {person(k).address for k in ("ada", "ben", "cyd", "eli")}
    assert flat == expected(contract.caps).groups


def test_switched_off_kinds_are_not_fetched(contract: Adapter) -> None:
    no_users = observed(fetch(contract, SyncSettings(users=False)))
    assert no_users.users is None
    assert set(no_users.groups or {}) == set(expected(contract.caps).groups or {})
    no_groups = observed(fetch(contract, SyncSettings(groups=False)))
    assert no_groups == expected(contract.caps, groups=False)


def test_a_second_read_is_the_first_in_the_same_order(contract: Adapter) -> None:
    """Order reaches the import body and so the hash: an unchanged directory must read the
    same, or every run would look like a change."""
    first, second = fetch(contract), fetch(contract)
    assert (first.users, first.groups, first.skipped) == (
        second.users,
        second.groups,
        second.skipped,
    )


def test_refused_credentials_are_a_directory_error(contract: Adapter) -> None:
    source = contract.refused()
    with pytest.raises(BwsyncError) as caught:
        source.fetch(FetchRequest())
    assert isinstance(caught.value, DirectoryError), repr(caught.value)
    assert caught.value.exit_code == 3
    assert_no_secret(contract, str(caught.value), source.server)


def test_a_failure_half_way_is_an_error_not_a_smaller_directory(contract: Adapter) -> None:
    source = contract.fails_mid_read()
    with pytest.raises(BwsyncError) as caught:
        source.fetch(FetchRequest())
    assert isinstance(caught.value, DirectoryError), repr(caught.value)
    assert caught.value.exit_code == 3
    assert_no_secret(contract, str(caught.value))


def test_check_passes_on_the_directory(contract: Adapter) -> None:
    results = contract.source().check()
    assert results
    assert all(r.ok for r in results), results


def test_check_reports_refused_credentials_without_raising(contract: Adapter) -> None:
    source = contract.refused()
    results = source.check()
    assert [r for r in results if not r.ok], results
    assert_no_secret(contract, *(f"{r.name} {r.detail}" for r in results))


def assert_no_secret(contract: Adapter, *texts: str) -> None:
    for text in texts:
        for secret in contract.secrets:
            assert secret not in text
