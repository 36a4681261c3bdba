"""bwsync.http.client: NO_PROXY as curl and requests read it (CIDR blocks included), which
proxy a request takes, and the CA file as the only trust anchor."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bwsync.errors import ConfigError
from bwsync.http.client import (
    NoProxy,
    ProxyTransport,
    build_client,
    ca_context,
    environment_proxies,
)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "api.example.com", 443, False),
        ("*", "api.example.com", 443, True),
        ("corp.example", "corp.example", 443, True),
        ("corp.example", "a.corp.example", 443, True),
        ("corp.example", "xcorp.example", 443, False),
        (".corp.example", "corp.example", 443, True),
        (".corp.example", "a.b.corp.example", 443, True),
        ("Corp.Example.", "a.corp.example", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "10.example", 443, False),  # names are not resolved to match a block
        ("192.168.1.7", "192.168.1.7", 443, True),
        ("192.168.1.7", "192.168.1.8", 443, False),
        ("fd00::/8", "[fd12::1]", 443, True),
        ("::1", "[::1]", 443, True),
        ("localhost, 127.0.0.0/8", "127.0.0.1", 8443, True),
        ("vault.corp:8443", "vault.corp", 8443, True),
        ("vault.corp:8443", "vault.corp", 443, False),
        ("10.0.0.0/8:443", "10.9.9.9", 443, True),
        (" , ,graph.microsoft.com", "graph.microsoft.com", 443, True),
    ],
)
def test_no_proxy(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy(no_proxy).bypass(host, port) is direct


def test_proxy_variables_lower_case_first_all_proxy_as_fallback() -> None:
    proxies, no_proxy = environment_proxies(
        {
            "HTTPS_PROXY": "http://upper:3128",
            "https_proxy": "http://lower:3128",
            "ALL_PROXY": "proxy.corp:8080",
            "NO_PROXY": "10.0.0.0/8",
        }
    )
    assert proxies == {"https": "http://lower:3128", "http": "http://proxy.corp:8080"}
    assert no_proxy.bypass("10.2.3.4")
    none, nothing = environment_proxies({})
    assert none == {} and not nothing.everything and not nothing.bypass("10.2.3.4")


def test_requests_take_the_proxy_of_their_scheme_unless_no_proxy_says_direct() -> None:
    transport = ProxyTransport(
        True,
        {"https": "http://proxy.corp:3128"},
        NoProxy("10.0.0.0/8,internal.corp"),
    )
    try:
        assert (
            transport.route(httpx.URL("https://graph.microsoft.com/v1.0"))
            is (transport.proxied["https"])
        )
        assert transport.route(httpx.URL("https://10.20.30.40/api")) is transport.direct
        assert transport.route(httpx.URL("https://vault.internal.corp/api")) is transport.direct
        assert transport.route(httpx.URL("http://plain.example/")) is transport.direct
    finally:
        transport.close()


def test_plain_http_to_loopback_never_goes_through_a_proxy() -> None:
    """Clear text is allowed to a loopback host only because it stays on the host: a proxy
    variable without ``NO_PROXY`` must not carry a client secret out in clear. https to
    loopback is only tunnelled (TLS end to end), so it keeps the proxy rules."""
    transport = ProxyTransport(
        True, {"http": "http://proxy.corp:3128", "https": "http://proxy.corp:3128"}, NoProxy("")
    )
    try:
        for url in ("http://localhost:8087/x", "http://127.0.0.1:8087/", "http://[::1]:80/"):
            assert transport.route(httpx.URL(url)) is transport.direct, url
        for url in ("http://svc.localhost/", "http://vault.example/", "http://10.0.0.1/"):
            assert transport.route(httpx.URL(url)) is transport.proxied["http"], url
        assert transport.route(httpx.URL("https://127.0.0.1/")) is transport.proxied["https"]
    finally:
        transport.close()


def test_an_unusable_proxy_is_a_setting_error() -> None:
    with pytest.raises(ConfigError, match="HTTPS_PROXY: cannot use this proxy"):
        ProxyTransport(True, {"https": "socks5://proxy:1080"}, NoProxy(None))


def test_a_test_transport_replaces_the_network_and_the_proxies() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(204))
    with build_client(
        verify=True,
        timeout=5,
        transport=transport,
        environ={"HTTPS_PROXY": "http://never.used:1"},
    ) as client:
        assert client.get("https://api.test/").status_code == 204
        assert not client.follow_redirects


def test_a_ca_file_that_cannot_be_loaded_names_its_setting(tmp_path: Path) -> None:
    assert ca_context(None, "BWSYNC_X__CA_FILE") is True
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"BWSYNC_X__CA_FILE: .*ca\.pem"):
        ca_context(bad, "BWSYNC_X__CA_FILE")
