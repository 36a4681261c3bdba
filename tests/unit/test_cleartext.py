"""cleartext: which settings send a credential in clear or skip a certificate check."""

from __future__ import annotations

from typing import Any

import pytest

from bwsync.cleartext import exposures
from bwsync.config import Settings, is_loopback


def _settings(**values: Any) -> Settings:
    return Settings(**values)


def _named(settings: Settings) -> list[str]:
    return [e.setting for e in exposures(settings)]


LDAP = {"source": "ldap", "ldap": {"url": "ldap://dc1.example.com", "base_dn": "dc=x"}}


def test_the_defaults_expose_nothing() -> None:
    assert exposures(_settings()) == []


def test_an_ldap_bind_password_without_tls() -> None:
    bound = {**LDAP, "ldap": {**LDAP["ldap"], "bind_dn": "cn=a", "bind_password": "bind-pw"}}
    (found,) = exposures(_settings(**bound))
    assert found.setting == "BWSYNC_LDAP__URL"
    assert "bind password" in found.text and "ldaps://" in found.text
    # anonymous: nothing to expose; StartTLS, ldaps:// or loopback: nothing in clear
    assert exposures(_settings(**LDAP)) == []
    for change in (
        {"start_tls": True},
        {"url": "ldaps://dc1.example.com"},
        {"url": "ldap://127.0.0.1:389"},
    ):
        assert exposures(_settings(source="ldap", ldap={**bound["ldap"], **change})) == []
    # another source: the LDAP settings are not used
    assert exposures(_settings(ldap=bound["ldap"])) == []


def test_ldap_certificate_checks_off() -> None:
    settings = _settings(
        source="ldap", ldap={"url": "ldaps://dc1.example.com", "base_dn": "x", "tls_verify": False}
    )
    (found,) = exposures(settings)
    assert found.setting == "BWSYNC_LDAP__TLS_VERIFY"
    assert "not checked" in found.text


def test_http_bitwarden_allowed_is_still_loud() -> None:
    server = {"server": "http://vault.example.com", "allow_http": True}
    (found,) = exposures(_settings(bitwarden=server))
    assert found.setting == "BWSYNC_BITWARDEN__SERVER"
    assert "client secret" in found.text
    both = {
        "api_url": "http://api.example",
        "identity_url": "http://id.example",
        "allow_http": True,
    }
    assert _named(_settings(bitwarden=both)) == [
        "BWSYNC_BITWARDEN__API_URL",
        "BWSYNC_BITWARDEN__IDENTITY_URL",
    ]
    assert exposures(_settings(bitwarden={"server": "http://127.0.0.1:8080"})) == []


def test_http_object_store_endpoint() -> None:
    state = {"backend": "objectstore", "url": "s3://b/k", "endpoint": "http://minio:9000"}
    (found,) = exposures(_settings(state=state))
    assert found.setting == "BWSYNC_STATE__ENDPOINT"
    assert "tampered" in found.text or "alter" in found.text
    # the keys do not cross, but a session token does: the warning must not say nothing does
    assert "session" in found.text and "token" in found.text
    assert exposures(_settings(state={**state, "endpoint": "https://minio:9000"})) == []
    assert exposures(_settings(state={**state, "endpoint": "http://127.0.0.1:9000"})) == []
    assert exposures(_settings(state={**state, "backend": "file"})) == []


@pytest.mark.parametrize(
    ("metrics", "loud"),
    [
        ({"pushgateway_url": "http://push:9091"}, False),
        ({"pushgateway_url": "http://push:9091", "pushgateway_password": "push-pw"}, True),
        ({"pushgateway_url": "http://u:push-pw@push:9091"}, True),
        ({"pushgateway_url": "push:9091", "pushgateway_password": "push-pw"}, True),
        ({"pushgateway_url": "https://push:9091", "pushgateway_password": "push-pw"}, False),
        ({"pushgateway_url": "http://127.0.0.1:9091", "pushgateway_password": "push-pw"}, False),
    ],
)
def test_pushgateway_password_over_http(metrics: dict[str, str], loud: bool) -> None:
    assert _named(_settings(metrics=metrics)) == (
        ["BWSYNC_METRICS__PUSHGATEWAY_URL"] if loud else []
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("svc.localhost", False),  # a name like any other: a pod's search domains resolve it
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("given", "setting"),
    [
        ({"ldap": {"bind_password": "a#1"}}, "BWSYNC_LDAP__BIND_PASSWORD"),
        ({"bitwarden": {"client_secret": "ab "}}, "BWSYNC_BITWARDEN__CLIENT_SECRET"),
        (
            {"metrics": {"pushgateway_url": "https://u:p1@push:9091"}},
            "BWSYNC_METRICS__PUSHGATEWAY_URL",
        ),
    ],
)
def test_a_secret_too_short_to_mask_is_never_silent(given: dict[str, Any], setting: str) -> None:
    """A secret of 1-3 characters is not masked (it would mask ``true``, a count, a level):
    it may appear in logs, errors and state, so ``check`` and every run say so, by name."""
    (found,) = exposures(_settings(**given))
    assert found.setting == setting
    assert "cannot be masked" in found.text and "longer secret" in found.text
    section, values = next(iter(given.items()))
    longer = {
        k: v.replace("a#1", "a#1-longer").replace("ab ", "abcd").replace(":p1@", ":pass@")
        for k, v in values.items()
    }
    assert exposures(_settings(**{section: longer})) == []
