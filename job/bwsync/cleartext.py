"""Settings that send a credential, or trust a server, in clear: never silent.

``exposures(settings)`` lists them from the settings alone, before anything is contacted. Every
run (``sync``, ``plan``, each pass of loop mode) logs each one as a warning
(``event("cleartext", …)``), ``check`` shows the same lines, and ``config from-bwdc`` says so when
it carries one over from a bwdc file. What counts:

* an ``ldap://`` URL without StartTLS when bwsync binds with a password: the password (and the
  whole directory) cross the network in clear;
* ``BWSYNC_LDAP__TLS_VERIFY=false``: the LDAP server's certificate is not checked, so anyone on
  the path can pose as the server and collect the bind password;
* an ``http://`` Bitwarden server, API or identity URL (only possible with
  ``BWSYNC_BITWARDEN__ALLOW_HTTP=true``): the client secret, the bearer token and every
  member's email in clear;
* an ``http://`` object-store endpoint: requests are signed, so the secret keys themselves do
  not cross, but a session token (``AWS_SESSION_TOKEN``) or a SAS token does, and the state
  travels in clear with answers that are not authenticated — anyone on the path can collect
  the token and read or alter the state;
* an ``http://`` Pushgateway with basic-auth credentials: the password in clear;
* a secret setting (or a URL's password) shorter than ``bwsync.redact.MIN_SECRET``
  characters: masking so short a value would mask ordinary words (a count, ``true``, a name),
  so it is not masked and may appear in logs, errors and the state's run summaries;
* (logged when the kubeconfig is read, by ``bwsync.state.kube``) a kubeconfig cluster
  ``server: http://…`` with a token or a password, or ``insecure-skip-tls-verify``.

The cloud sources (Entra, Google, Okta, OneLogin) never appear here: their URLs are refused
unless they are ``https://`` (``config``), since each carries a bearer token or a client secret
and no deployment needs them in clear.

A loopback host (``127.0.0.0/8``, ``::1``, exactly ``localhost``) is never an exposure: the
traffic does not leave the host, which is how a TLS-terminating sidecar or the demo's stand-in
is reached — and bwsync sends plain http to it direct, never through a proxy variable's proxy
(``bwsync.http.client``, ``bwsync.state.objectstore``), which would carry it out in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bwsync.config import ENV_PREFIX, env_name, is_loopback
from bwsync.redact import MIN_SECRET, url_passwords

if TYPE_CHECKING:
    from bwsync.config import Settings


@dataclass(frozen=True, slots=True)
class Exposure:
    """One setting that exposes something, and what it exposes."""

    setting: str
    """The environment variable at fault."""
    text: str
    """What crosses the network in clear (or unchecked), and how to fix it."""


def _clear_http(url: str | None) -> bool:
    """``url`` is plain http to a host other than this one."""
    if not url or "://" not in url:
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback(parts.hostname)


def exposures(settings: Settings) -> list[Exposure]:
    """What these settings send in clear or leave unchecked (the module docstring's list)."""
    out: list[Exposure] = []
    if settings.source == "ldap":
        out += _ldap(settings)
    bw = settings.bitwarden
    for name, url in (
        ("api_url", bw.resolved_api_url),
        ("identity_url", bw.resolved_identity_url),
    ):
        if _clear_http(url):
            setting = name if getattr(bw, name) else "server"
            out.append(
                Exposure(
                    f"{ENV_PREFIX}BITWARDEN__{setting.upper()}",
                    f"http:// Bitwarden {name.partition('_')[0].upper()} URL {url}: the client "
                    "secret, the bearer token and every member's email cross the network in "
                    f"clear (allowed by {ENV_PREFIX}BITWARDEN__ALLOW_HTTP); serve it over https",
                )
            )
            if setting == "server":
                break  # both derived from the server: say it once
    state = settings.state
    if state.backend == "objectstore" and _clear_http(state.endpoint):
        out.append(
            Exposure(
                f"{ENV_PREFIX}STATE__ENDPOINT",
                f"http:// object-store endpoint {state.endpoint}: requests are signed, so the "
                "secret keys do not cross, but a session or SAS token does, in clear, and the "
                "state travels in clear with unauthenticated answers: anyone on the path can "
                "collect the token and read or alter the state; use https",
            )
        )
    metrics = settings.metrics
    push = metrics.pushgateway_url
    if push and _clear_http(push if "://" in push else "http://" + push):
        parts = urlsplit(push if "://" in push else "http://" + push)
        if metrics.pushgateway_password is not None or parts.password:
            out.append(
                Exposure(
                    f"{ENV_PREFIX}METRICS__PUSHGATEWAY_URL",
                    "http:// Pushgateway with basic-auth credentials: the password crosses "
                    "the network in clear; use https",
                )
            )
    return out + _short_secrets(settings)


def _short_secrets(settings: Settings) -> list[Exposure]:
    out: list[Exposure] = []
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        for field in getattr(type(section), "model_fields", {}):
            value = getattr(section, field)
            if hasattr(value, "get_secret_value"):
                short = 0 < len(value.get_secret_value().strip()) < MIN_SECRET
            elif isinstance(value, str):
                short = any(0 < len(p) < MIN_SECRET for p in url_passwords(value))
            else:
                continue
            if short:
                out.append(
                    Exposure(
                        env_name(section_name, field),
                        f"a secret shorter than {MIN_SECRET} characters cannot be masked (it "
                        "would mask ordinary words), so it may appear in logs, errors and the "
                        "state's run summaries; use a longer secret",
                    )
                )
    return out


def _ldap(settings: Settings) -> list[Exposure]:
    s = settings.ldap
    out: list[Exposure] = []
    if s.url and not s.start_tls and s.bind_password is not None:
        parts = urlsplit(s.url)
        if parts.scheme.lower() == "ldap" and not is_loopback(parts.hostname):
            out.append(
                Exposure(
                    f"{ENV_PREFIX}LDAP__URL",
                    f"ldap:// without StartTLS ({s.url}): the bind password and the directory "
                    f"cross the network in clear; use ldaps:// or {ENV_PREFIX}LDAP__START_TLS="
                    "true",
                )
            )
    if not s.tls_verify:
        out.append(
            Exposure(
                f"{ENV_PREFIX}LDAP__TLS_VERIFY",
                "false: the LDAP server's certificate is not checked, so anyone on the path can "
                "pose as the server and collect the bind password; give the server's CA in "
                f"{ENV_PREFIX}LDAP__CA_FILE instead",
            )
        )
    return out
