"""The ``httpx.Client`` every HTTP client of bwsync builds: TLS and its CA file, timeouts, no
redirects, and ``HTTPS_PROXY``/``NO_PROXY`` read the way curl and requests read them.

Why not httpx's own proxy support (``trust_env``): its ``NO_PROXY`` has no CIDR blocks
(``10.0.0.0/8`` only matches the host literally named ``10.0.0.0``), so a proxy variable set
for the whole cluster would send requests to internal addresses through the proxy, while
requests (which msal and google-auth use by default) honours the same variable. bwsync routes
msal's and google-auth's requests through its own clients, so one reading applies everywhere:

* ``https_proxy``/``HTTPS_PROXY`` for ``https://`` URLs, ``http_proxy``/``HTTP_PROXY`` for
  ``http://``, ``all_proxy``/``ALL_PROXY`` for both when the scheme's own is unset; the lower-case
  name wins, as in curl, requests and httpx. A value without a scheme means ``http://``.
* ``no_proxy``/``NO_PROXY``, comma-separated: ``*`` (no proxy at all); a host name, which also
  covers its sub-domains (``corp.example`` and ``.corp.example`` both match ``corp.example``
  and ``a.corp.example``, never ``xcorp.example``); an IP address; a CIDR block
  (``10.0.0.0/8``, ``fd00::/8``) matching IP-literal hosts inside it. An entry with a port
  (``host:8443``) matches that port only. Host names are not resolved to match a block.
* plain ``http://`` to a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``:
  ``bwsync.config.is_loopback``) is never proxied, whatever ``NO_PROXY`` says (as Go's HTTP
  clients, kubectl's among them, do for loopback): clear text is allowed there only because
  its traffic never leaves the host (``bwsync.cleartext``), and a proxy would carry the client
  secret out in clear. ``https://`` to loopback follows the rules above: a proxy only tunnels
  it.

An explicit CA file (``ca_context``) is the only trust anchor of the connection, so
``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` cannot override it; without one, the system store
(and ``SSL_CERT_FILE``/``SSL_CERT_DIR``) is used.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from bwsync import setting_files
from bwsync.config import is_loopback
from bwsync.errors import ConfigError

__all__ = ["NoProxy", "ProxyTransport", "build_client", "ca_context", "environment_proxies"]


def ca_context(ca_file: Path | None, setting: str) -> ssl.SSLContext | bool:
    """httpx's ``verify``: a context trusting exactly ``ca_file`` (``bwsync.setting_files``, as
    the settings pass reads it), else ``True``. A file that cannot be loaded is a settings
    problem (exit 2) named by its ``setting``, reported before any request is made."""
    if ca_file is None:
        return True
    return setting_files.ca_context(ca_file, setting)


# --------------------------------------------------------------------------------------------
# Proxies


class NoProxy:
    """A ``NO_PROXY`` value, read as the module docstring says."""

    def __init__(self, value: str | None) -> None:
        self.everything = False
        self.names: list[tuple[str, int | None]] = []
        self.networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in (value or "").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self.everything = True
                continue
            host, port = _split_port(entry)
            try:
                self.networks.append((ipaddress.ip_network(host, strict=False), port))
                continue
            except ValueError:
                pass
            self.names.append((host.lstrip(".").rstrip("."), port))

    def __repr__(self) -> str:
        return (
            f"NoProxy(everything={self.everything}, names={self.names}, networks={self.networks})"
        )

    def bypass(self, host: str, port: int | None = None) -> bool:
        """Whether a request to ``host`` (and ``port``) goes direct."""
        if self.everything:
            return True
        host = host.strip("[]").lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(
                address in network and (want is None or want == port)
                for network, want in self.networks
            ) or any(name == host and (want is None or want == port) for name, want in self.names)
        return any(
            (host == name or host.endswith("." + name)) and (want is None or want == port)
            for name, want in self.names
        )


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` → (host, port); an IPv6 literal keeps its colons (``[::1]:80`` has a port)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def environment_proxies(environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], NoProxy]:
    """The proxy URL per scheme (``http``, ``https``) and the ``NO_PROXY`` rules."""
    env = os.environ if environ is None else environ

    def read(name: str) -> str | None:
        value = env.get(name.lower()) or env.get(name.upper())
        return value.strip() if value and value.strip() else None

    proxies: dict[str, str] = {}
    fallback = read("all_proxy")
    for scheme in ("http", "https"):
        value = read(f"{scheme}_proxy") or fallback
        if value:
            proxies[scheme] = value if "://" in value else f"http://{value}"
    return proxies, NoProxy(read("no_proxy"))


class ProxyTransport(httpx.BaseTransport):
    """Sends each request direct or through the scheme's proxy, by ``NoProxy`` rules."""

    def __init__(
        self,
        verify: ssl.SSLContext | bool,
        proxies: Mapping[str, str],
        no_proxy: NoProxy,
        *,
        retries: int = 0,
    ) -> None:
        self.no_proxy = no_proxy
        self.direct = httpx.HTTPTransport(verify=verify, retries=retries)
        self.proxied: dict[str, httpx.HTTPTransport] = {}
        for scheme, url in proxies.items():
            try:
                self.proxied[scheme] = httpx.HTTPTransport(
                    verify=verify, proxy=httpx.Proxy(url), retries=retries
                )
            except (ImportError, ValueError) as exc:
                name = f"{scheme.upper()}_PROXY"
                raise ConfigError(
                    f"{name}: cannot use this proxy ({type(exc).__name__}: {exc}); "
                    "bwsync supports http:// and https:// proxies"
                ) from None

    def route(self, url: httpx.URL) -> httpx.HTTPTransport:
        proxied = self.proxied.get(url.scheme)
        if proxied is None or self.no_proxy.bypass(url.host, url.port):
            return self.direct
        if url.scheme == "http" and is_loopback(url.host):
            return self.direct  # clear text allowed because it stays on this host: keep it so
        return proxied

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.route(request.url).handle_request(request)

    def close(self) -> None:
        self.direct.close()
        for transport in self.proxied.values():
            transport.close()


def build_client(
    *,
    verify: ssl.SSLContext | bool,
    timeout: float | httpx.Timeout,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
    event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> httpx.Client:
    """A client with bwsync's proxy reading (the module docstring), no redirects and the
    given TLS and timeouts. ``transport`` replaces the network (``httpx.MockTransport`` in unit
    tests); proxies then play no part."""
    if transport is None:
        proxies, no_proxy = environment_proxies(environ)
        transport = ProxyTransport(verify, proxies, no_proxy)
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers=dict(headers or {}),
        timeout=timeout,
        transport=transport,
        # The proxy variables are read above, with CIDR blocks; the CA is ``verify``.
        trust_env=False,
        follow_redirects=False,
        event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
    )
