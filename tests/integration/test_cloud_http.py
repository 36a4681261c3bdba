"""The cloud sources' HTTP layer (``bwsync.sources.cloud_http``) against the four stand-ins over
HTTPS on loopback: the directory read is the same at any concurrency, every source goes
through ``HTTPS_PROXY`` (token requests included) unless ``NO_PROXY`` names the host or its
CIDR block, a 429 storm amid concurrent member reads is survived, and Okta's concurrency limit
is respected."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bwsync.config import OktaSettings, OneLoginSettings, SyncSettings
from bwsync.http.retry import RetryPolicy
from bwsync.model import Directory
from bwsync.normalize import normalize
from bwsync.payload import build_payload
from bwsync.sources.base import FetchRequest
from bwsync.sources.entra import EntraSource
from bwsync.sources.google import GoogleSource
from bwsync.sources.okta import OktaSource
from bwsync.sources.onelogin import OneLoginSource
from tests.fixtures.bitwarden import PROXY_VARIABLES
from tests.fixtures.cloud import GoogleFixture, GraphFixture
from tests.fixtures.okta_onelogin import OktaFactory, OneLoginFactory
from tests.standins.okta import okta_directory
from tests.standins.onelogin import onelogin_directory
from tests.standins.proxy import ConnectProxy

Fetch = Callable[[SyncSettings], Any]
"""A source of one kind built for the given sync settings (its stand-in already populated)."""


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["entra", "google", "okta", "onelogin"])
def source(
    request: pytest.FixtureRequest,
    no_proxy_env: None,
    loopback_tls: Any,
    tmp_path: Any,
    fake_okta_factory: OktaFactory,
    okta_settings: Callable[..., OktaSettings],
    fake_onelogin_factory: OneLoginFactory,
    onelogin_settings: Callable[..., OneLoginSettings],
) -> Iterator[tuple[str, Fetch, Any]]:
    """(name, a builder of the source for some sync settings, its stand-in), with a directory
    large enough for several pages of users and many groups."""
    kind = str(request.param)
    if kind == "entra":
        graph = request.getfixturevalue("fake_graph")
        assert isinstance(graph, GraphFixture)
        graph.populate(2_100, 60)  # 3 pages of users, 3 of the delta round
        yield kind, lambda sync: EntraSource(graph.settings(), sync), graph
    elif kind == "google":
        google = request.getfixturevalue("fake_google")
        assert isinstance(google, GoogleFixture)
        google.populate(1_100, 60)  # 3 pages of users
        yield kind, lambda sync: GoogleSource(google.settings(), sync), google
    elif kind == "okta":
        okta = fake_okta_factory(okta_directory(450, 60))  # 3 pages of users
        yield kind, lambda sync: OktaSource(okta_settings(okta), sync), okta
    else:
        onelogin = fake_onelogin_factory(onelogin_directory(160, 40))  # 4 pages of users
        yield kind, lambda sync: OneLoginSource(onelogin_settings(onelogin), sync), onelogin


def _shape(d: Directory) -> tuple[Any, Any, str]:
    """Everything the payload is made of, in order, and the hash of the payload itself."""
    users = [(u.external_id, u.email, u.disabled, u.deleted) for u in d.users or []]
    groups = [
        (
            g.external_id,
            g.name,
            list(g.user_member_external_ids),
            list(g.group_member_reference_ids),
        )
        for g in d.groups or []
    ]
    clean = normalize(d)
    payload = build_payload(
        clean.users, clean.groups, SyncSettings(large_import=True),
        api_url="https://bitwarden.test/api", org_id="o",
    )  # fmt: skip
    return users, groups, payload.hash


def test_the_directory_is_the_same_at_any_concurrency(source: tuple[str, Fetch, Any]) -> None:
    kind, build, fake = source
    one = build(SyncSettings(max_concurrent_requests=1)).fetch(FetchRequest())
    fake.clear_requests()
    fake.latency = 0.05  # a round trip, so that reads that can overlap do
    eight_source = build(SyncSettings(max_concurrent_requests=8))
    eight = eight_source.fetch(FetchRequest())
    assert len(one.users or []) > 100 and len(one.groups or []) >= 40
    assert _shape(one) == _shape(eight)
    assert one.skipped == eight.skipped
    assert one.delta.keys() == eight.delta.keys()
    # Concurrency was used where the source has independent reads, within the bound.
    assert 1 < fake.peak_in_flight <= 8, kind
    assert eight_source.requests == len(fake.requests)


def test_every_source_goes_through_https_proxy_token_requests_included(
    source: tuple[str, Fetch, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, build, fake = source
    host = fake.base_url if hasattr(fake, "base_url") else fake.url
    target = host.removeprefix("https://")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        d = build(SyncSettings()).fetch(FetchRequest())
    assert len(d.users or []) > 100
    assert proxy.connects and set(proxy.connects) == {target}
    # Each tunnel carried requests: as many tunnels as connections, fewer than requests.
    assert len(proxy.connects) <= len(fake.requests)


def test_no_proxy_with_a_cidr_block_goes_direct(
    source: tuple[str, Fetch, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, build, _ = source
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "intranet.example, 127.0.0.0/8")
        d = build(SyncSettings()).fetch(FetchRequest())
    assert len(d.users or []) > 100
    assert proxy.connects == []


def test_a_429_storm_amid_concurrent_member_reads_is_waited_out(
    fake_graph: GraphFixture, no_proxy_env: None
) -> None:
    """Every member read for two seconds gets 429 with the rest of the window as
    Retry-After; the fetch waits it out, in step, and reads the same directory."""
    fake_graph.populate(300, 80)
    clean = EntraSource(fake_graph.settings(), SyncSettings()).fetch(FetchRequest())
    fake_graph.clear_requests()
    fake_graph.latency = 0.02
    storm = fake_graph.storm("/v1.0/groups/", seconds=2.0)
    source = EntraSource(fake_graph.settings(), SyncSettings())
    stormy = source.fetch(FetchRequest())
    assert _shape(stormy) == _shape(clean)
    assert storm.windows, "the storm hit"
    throttled = [r for r in fake_graph.requests if r.status == 429]
    assert len(throttled) == len(storm.windows)
    # Each refused read was retried once the window had passed, not before.
    assert source.stats.retries == len(throttled)
    end = storm.windows[0][1]
    late = [
        r for r in fake_graph.requests if r.path.startswith("/v1.0/groups/") and r.status == 200
    ]
    assert late and all(r.arrived >= end or r.answered < storm.windows[0][0] for r in late)


def test_okta_never_has_more_in_flight_than_its_concurrency_limit(
    fake_okta_factory: OktaFactory, okta_settings: Callable[..., OktaSettings]
) -> None:
    """Asked for 64 at once, bwsync keeps Okta at its documented 15; an org whose limit is
    lower (4 here: one shared with other clients) answers the concurrency 429 (limit and
    remaining 0), and bwsync sends fewer at once instead of waiting for a reset."""
    okta = fake_okta_factory(okta_directory(200, 80))
    okta.latency = 0.02
    wide = SyncSettings(max_concurrent_requests=64)
    baseline = OktaSource(okta_settings(okta), SyncSettings(max_concurrent_requests=1))
    expected = _shape(baseline.fetch(FetchRequest()))
    okta.peak_in_flight = 0
    assert _shape(OktaSource(okta_settings(okta), wide).fetch(FetchRequest())) == expected
    assert 8 < okta.peak_in_flight <= 15
    okta.max_in_flight = 4
    okta.clear_requests()
    # Real, short backoffs: a refused request comes back after the bound has shrunk.
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        time.sleep(seconds)

    policy = RetryPolicy(sleep=sleep, backoff_base=0.05, backoff_cap=0.5, jitter=lambda: 0.0)
    busy = OktaSource(okta_settings(okta), wide, policy=policy)
    assert _shape(busy.fetch(FetchRequest())) == expected
    refused = [r for r in okta.requests if r.status == 429]
    assert refused, "the org's limit was met"
    # Every wait was a backoff (0.05 s doubling, halved without jitter), never the reset.
    assert set(slept) <= {0.025, 0.05, 0.1, 0.2, 0.25}
    assert busy.limiter.limit < 15
