"""snapshot: the organization read, in line and on a worker thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bwsync.bitwarden import BitwardenClient
from bwsync.errors import BitwardenAuthError, ConfigError
from bwsync.model import OrgMember
from bwsync.snapshot import BackgroundRead, read_group_members, read_org
from tests.standins.bitwarden import FakeBitwarden


@pytest.fixture
def client(fake_bitwarden: FakeBitwarden) -> Iterator[BitwardenClient]:
    with BitwardenClient(fake_bitwarden.settings(timeout=10.0)) as c:
        yield c


def test_background_read_gives_what_read_org_gives(
    fake_bitwarden: FakeBitwarden, client: BitwardenClient
) -> None:
    member = fake_bitwarden.add_member("a@example.com", external_id="a")
    fake_bitwarden.add_group("Eng", external_id="eng", members=[member])
    inline = read_org(client, detail=True)
    background = BackgroundRead(lambda: client, detail=True)
    assert background.result() == inline
    assert inline is not None
    assert [m.external_id for m in inline.members] == ["a"]
    assert list((inline.group_member_ids or {}).values()) == [[inline.members[0].id]]
    assert not background.running
    assert background.seconds > 0
    assert background.client is client  # the caller's from now on


def test_stale_group_members_are_read_once_and_a_vanished_group_dropped(
    fake_bitwarden: FakeBitwarden, client: BitwardenClient
) -> None:
    """Member ids of the stale groups, with or without --detail; a group deleted by hand
    between the group list and this read (404) is no longer in the snapshot."""
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    sales = fake_bitwarden.add_group("Sales", external_id="sales", members=[a])
    ops = fake_bitwarden.add_group("Ops", external_id="ops", members=[a])
    org = read_org(client, detail=False)
    assert org is not None
    stale = [g for g in org.groups if g.external_id in ("sales", "ops")]
    fake_bitwarden.remove_group(ops.id)  # by hand, meanwhile
    fake_bitwarden.clear_requests()
    read_group_members(client, org, stale)
    assert org.member_ids_read == {sales.id: [a.id]}
    assert [g.id for g in org.groups] == [sales.id]
    assert len(fake_bitwarden.requests_to("group_member_ids")) == 2
    # with --detail they were read already: no request
    detailed = read_org(client, detail=True)
    assert detailed is not None
    fake_bitwarden.clear_requests()
    read_group_members(client, detailed, detailed.groups)
    assert fake_bitwarden.requests == [] and detailed.member_ids_read == {}


def test_background_read_raises_the_servers_refusal_in_the_caller(
    fake_bitwarden: FakeBitwarden, client: BitwardenClient
) -> None:
    fake_bitwarden.fail("list_members", status=403, times=None)
    background = BackgroundRead(lambda: client, detail=False)
    with pytest.raises(BitwardenAuthError, match="list members") as info:
        background.result()
    assert info.value.status == 403


def test_no_list_endpoints_is_none_in_the_background_too(
    fake_vaultwarden: FakeBitwarden,
) -> None:
    with BitwardenClient(fake_vaultwarden.settings(timeout=10.0)) as c:
        assert BackgroundRead(lambda: c, detail=False).result() is None


class _HeldClient(BitwardenClient):
    """A client whose member list waits for ``release``, having set ``reading``."""

    reading: threading.Event
    release: threading.Event

    def list_members(self) -> list[OrgMember] | None:
        self.reading.set()
        assert self.release.wait(10)
        return super().list_members()


def test_close_during_a_read_leaves_closing_to_the_worker(
    fake_bitwarden: FakeBitwarden,
) -> None:
    # The read is held once under way: a close right after the start could come before the
    # worker has the client, which rightly skips the read (the test further down).
    client = _HeldClient(fake_bitwarden.settings(timeout=10.0))
    client.reading, client.release = threading.Event(), threading.Event()
    background = BackgroundRead(lambda: client, detail=False)
    assert client.reading.wait(5)
    background.close()  # the run ended (say, on an LDAP error) while the read runs
    assert background.running and not client.closed
    client.release.set()
    snapshot = background.result()
    assert snapshot is not None and snapshot.members == []
    assert client.closed


def test_close_after_the_read_closes_at_once(fake_bitwarden: FakeBitwarden) -> None:
    client = BitwardenClient(fake_bitwarden.settings(timeout=10.0))
    background = BackgroundRead(lambda: client, detail=False)
    background.result()
    assert not client.closed
    background.close()
    assert client.closed


def test_a_client_that_cannot_be_built_is_raised_in_the_caller() -> None:
    def connect() -> BitwardenClient:
        raise ConfigError("BWSYNC_BITWARDEN__CA_FILE: cannot load /nowhere.pem")

    background = BackgroundRead(connect, detail=False)
    with pytest.raises(ConfigError, match="CA_FILE"):
        background.result()
    background.close()  # nothing to close: no error


def test_close_while_the_client_is_being_built_skips_the_read(
    fake_bitwarden: FakeBitwarden,
) -> None:
    building = threading.Event()
    proceed = threading.Event()
    client = BitwardenClient(fake_bitwarden.settings(timeout=10.0))

    def connect() -> BitwardenClient:
        building.set()
        assert proceed.wait(5)
        return client

    background = BackgroundRead(connect, detail=False)
    assert building.wait(5)
    background.close()  # the run ended (an LDAP error) before the client existed
    proceed.set()
    assert background.result() is None
    assert client.closed
    assert fake_bitwarden.requests_to("list_members") == []
