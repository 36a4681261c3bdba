"""Fixtures of the Bitwarden stand-in's tests: ``api`` (a logged-in ``Api`` on
``fake_bitwarden``) and ``vw`` (the same on ``fake_vaultwarden``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import Api


@pytest.fixture
def api(fake_bitwarden: FakeBitwarden) -> Iterator[Api]:
    a = Api(fake_bitwarden)
    a.login()
    yield a
    a.http.close()


@pytest.fixture
def vw(fake_vaultwarden: FakeBitwarden) -> Iterator[Api]:
    a = Api(fake_vaultwarden)
    a.login()
    yield a
    a.http.close()
