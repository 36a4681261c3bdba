"""The ``contract`` fixture: one ``Adapter`` per source of ``SOURCES``, the fixture directory
written into its server. The LDAP servers are shared by the session, so their copy of the
directory is written once per module (in its own subtree / OU); the stand-ins and files are
cheap and made anew for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.sources import SOURCES, Adapter, build, load_samba, load_slapd
from tests.fixtures.ldap import SambaAD, Slapd


@pytest.fixture(scope="module")
def contract_slapd_base(slapd: Slapd) -> str:
    return load_slapd(slapd)


@pytest.fixture(scope="module")
def contract_samba(samba_ad: SambaAD) -> SambaAD:
    load_samba(samba_ad)
    return samba_ad


@pytest.fixture(params=SOURCES)
def contract(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    yield from build(str(request.param), request, tmp_path)
