"""Secrets never leave the process (issue 23).

For every secret bwsync is given — each secret setting (machine-made, and a person's password
with punctuation and no long run of letters and digits, and one read from a padded secret
file), a password in a URL setting, the private keys in the credential files, the object-store
and Kubernetes credentials of the environment (a kubeconfig's token and password, an Azure
account key), the workload-identity token, and the access tokens bwsync obtains at run time
(the echo server issues an opaque one and echoes the API call that carries it) — ``check``,
``plan`` and ``sync`` run through the real CLI against a server that echoes the request back
in its error (``tests/fixtures/echo.py``: body, Basic credentials, headers and URL, raw and
decoded, HTML-escaped, URL-encoded twice, as a repr). None of the secret's forms (raw, trimmed,
URL-encoded with ``quote``, ``quote_plus`` and ``encodeURIComponent``, once or twice, in either
hex case, JSON-escaped, HTML-escaped, Python repr of the text and of its bytes, base64 alone
and as ``id:secret``, and the 12-character prefix an early cut used to leave) may appear in
any of the four outputs: stdout, stderr (the JSON log at debug level included), the state
document (the file, or what was PUT to a remote state server) and the metrics (the textfile,
or what was pushed). Neither may any credential the echo server received or issued (bearer
tokens, signed assertions, session tokens).

A case proves something only if the secret went out and the echo came back: each row states
which commands send the secret to the echo server and what must have reached it (the case's
own secret, a token the server issued, or an assertion made from a key), whether bwsync shows
the server's text (then the masked echo must be seen in the output), and the exit code each
command ends with. Every case also runs through the other ways to run bwsync
(``OTHER_RUNS``: ``check --offline``/``--read-only``, ``plan --directory-only``, ``plan``'s
text and JSON, the console log format, ``state show`` after a ``sync``): no leak, and never
exit 1.

Not covered here: loop mode (``sync --every``) and its ``/metrics`` (the metrics carry no free
text, ``bwsync.metrics``), ``config from-bwdc``, proxy passwords (masked by
``settings_secrets``, tested in tests/unit/test_redact.py).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pytest

from bwsync.cli import main
from bwsync.sources.file import demo_directory
from tests.fixtures.cloud import rsa_key_pem, self_signed_pem, service_account_info
from tests.fixtures.echo import EchoHttps, LdapEcho
from tests.fixtures.okta_onelogin import KeyPair
from tests.standins.bitwarden import FakeBitwarden

COMMANDS = ("check", "plan", "sync")
OUTPUTS = ("stdout", "stderr", "state", "metrics")
#: Where a state document is written on the echo servers: S3, Azure Blob, a ConfigMap.
STATE_PATHS = ("/bucket/", "/account/", "/api/v1/namespaces/")
ORG_CLIENT_ID = "organization.6d1b3a0e-58f5-4a3b-9c4b-3f1d0d2b6f2e"


def _secret(label: str) -> str:
    """A secret with every character class an encoder treats differently (quotes, backslash,
    percent, plus, slash, ampersand, equals, space) and a random tail."""
    return f'{label}"Se%cr+et/&=\\ x{uuid.uuid4().hex[:12]}'


def _human(label: str) -> str:
    """A password a person chose: punctuation, a space, a non-ASCII letter, and no run of 8
    letters and digits (a run that long is masked on its own whatever the encoding, which
    would hide an encoding bwsync does not know). Random, in runs of at most 4."""
    tail = uuid.uuid4().hex
    return f"{label[:4]}#{tail[:4]} w'{tail[4:8]}\"<ä>!*(){tail[8:12]}&="


def leak_forms(secret: str, user: str | None = None, *, prefix: bool = True) -> set[str]:
    """The forms of ``secret`` that must not appear anywhere (written independently of
    ``bwsync.redact``, which is what is under test)."""
    encoded = [
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote(secret, safe="!*'()~"),  # JavaScript's encodeURIComponent
        quote(quote(secret, safe=""), safe=""),  # encoded twice
    ]
    lower_hex = [re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), e) for e in encoded]
    out = {secret, secret.strip(), *encoded, *lower_hex}
    out.add(html.escape(secret))  # &quot; &#x27;
    out.add(html.escape(secret).replace("&#x27;", "&#39;"))
    out.add(repr(secret)[1:-1])
    out.add(repr(secret.encode())[2:-1])
    out.add(json.dumps(secret)[1:-1])
    out.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    out.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    if user is not None:
        out.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    if prefix and len(secret) > 16:
        out.add(secret[:12])  # what a cut before masking left behind
        out.add(quote(secret, safe="")[:12])
    return {f for f in out if len(f) >= 6}


def key_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM private key: the key material."""
    block = pem[pem.index("PRIVATE KEY-----") :]
    return [line for line in block.splitlines()[1:] if line and not line.startswith("-----")]


@dataclass
class Rig:
    """What a case needs: where to point bwsync, and the environment it sets."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    echo: EchoHttps
    echo_http: EchoHttps
    ldap: LdapEcho
    bitwarden: FakeBitwarden
    okta_key: KeyPair
    secrets: list[str] = field(default_factory=list)
    """Values that must not appear, each in every form."""
    basic: list[tuple[str, str]] = field(default_factory=list)
    """(user, secret) pairs also sent as HTTP Basic credentials."""

    def env(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def secret(self, value: str, user: str | None = None) -> str:
        self.secrets.append(value)
        if user is not None:
            self.basic.append((user, value))
        return value

    def working_bitwarden(self) -> None:
        self.env(
            BWSYNC_BITWARDEN__SERVER=self.bitwarden.base_url,
            BWSYNC_BITWARDEN__CLIENT_ID=self.bitwarden.client_id,
            BWSYNC_BITWARDEN__CLIENT_SECRET=self.bitwarden.client_secret,
        )


# --- the secrets, one row each ------------------------------------------------------------------


def bitwarden_client_secret(rig: Rig) -> None:
    rig.env(
        BWSYNC_BITWARDEN__SERVER=rig.echo.url,
        BWSYNC_BITWARDEN__CA_FILE=str(rig.echo.ca_file),
        BWSYNC_BITWARDEN__CLIENT_ID=ORG_CLIENT_ID,
        BWSYNC_BITWARDEN__CLIENT_SECRET=rig.secret(_secret("Bw")),
    )


def bitwarden_client_secret_human(rig: Rig) -> None:
    rig.env(
        BWSYNC_BITWARDEN__SERVER=rig.echo.url,
        BWSYNC_BITWARDEN__CA_FILE=str(rig.echo.ca_file),
        BWSYNC_BITWARDEN__CLIENT_ID=ORG_CLIENT_ID,
        BWSYNC_BITWARDEN__CLIENT_SECRET=rig.secret(_human("Bw")),
    )


def bitwarden_client_secret_padded_file(rig: Rig) -> None:
    """From a mounted secret file, with the newline and spaces such files carry."""
    secret = rig.secret(f"  {_human('File')}\n")
    (Path(os.environ["BWSYNC_SECRETS_DIR"]) / "bwsync_bitwarden__client_secret").write_text(secret)
    rig.env(
        BWSYNC_BITWARDEN__SERVER=rig.echo.url,
        BWSYNC_BITWARDEN__CA_FILE=str(rig.echo.ca_file),
        BWSYNC_BITWARDEN__CLIENT_ID=ORG_CLIENT_ID,
    )


def bitwarden_access_token(rig: Rig) -> None:
    """The echo server issues an opaque token; the API call carrying it is echoed."""
    bitwarden_client_secret(rig)
    rig.echo.issue_tokens = True


def bitwarden_url_password(rig: Rig) -> None:
    password = rig.secret(f"UrlPw{uuid.uuid4().hex[:12]}", user="admin")
    rig.env(
        BWSYNC_BITWARDEN__SERVER=rig.echo.url.replace("://", f"://admin:{password}@"),
        BWSYNC_BITWARDEN__CA_FILE=str(rig.echo.ca_file),
        BWSYNC_BITWARDEN__CLIENT_ID=ORG_CLIENT_ID,
        BWSYNC_BITWARDEN__CLIENT_SECRET=rig.secret(_secret("Bw")),
    )


def _ldap(engine: str, make: Callable[[str], str] = _secret) -> Callable[[Rig], None]:
    def configure(rig: Rig) -> None:
        rig.working_bitwarden()
        rig.env(
            BWSYNC_SOURCE="ldap",
            BWSYNC_LDAP__URL=rig.ldap.url,
            BWSYNC_LDAP__BIND_DN="cn=bwsync,dc=example,dc=com",
            BWSYNC_LDAP__BIND_PASSWORD=rig.secret(make("Ldap")),
            BWSYNC_LDAP__BASE_DN="dc=example,dc=com",
            BWSYNC_LDAP__ENGINE=engine,
            BWSYNC_LDAP__TIMEOUT="10",
        )

    return configure


def _entra(rig: Rig, **credential: str) -> None:
    rig.working_bitwarden()
    rig.env(
        BWSYNC_SOURCE="entra",
        BWSYNC_ENTRA__TENANT_ID=str(uuid.uuid4()),
        BWSYNC_ENTRA__CLIENT_ID=str(uuid.uuid4()),
        BWSYNC_ENTRA__AUTHORITY_URL=rig.echo.url,
        BWSYNC_ENTRA__GRAPH_URL=rig.echo.url,
        BWSYNC_ENTRA__CA_FILE=str(rig.echo.ca_file),
        **credential,
    )


def entra_client_secret(rig: Rig) -> None:
    _entra(rig, BWSYNC_ENTRA__CLIENT_SECRET=rig.secret(_secret("Entra")))


def entra_access_token(rig: Rig) -> None:
    entra_client_secret(rig)
    rig.echo.issue_tokens = True


def entra_certificate_key(rig: Rig) -> None:
    key = rsa_key_pem()
    path = rig.tmp / "entra.pem"
    path.write_bytes(key + self_signed_pem(key))
    for line in key_lines(key.decode()):
        rig.secret(line)
    _entra(rig, BWSYNC_ENTRA__CERTIFICATE_FILE=str(path))


def entra_workload_identity_token(rig: Rig) -> None:
    path = rig.tmp / "federated-token"
    path.write_text(rig.secret(f"federated.{uuid.uuid4().hex}.token"))
    rig.env(AZURE_FEDERATED_TOKEN_FILE=str(path))
    _entra(rig)


def google_key(rig: Rig) -> None:
    rig.working_bitwarden()
    info = service_account_info(f"{rig.echo.url}/token")
    for line in key_lines(info["private_key"]):
        rig.secret(line)
    path = rig.tmp / "google.json"
    path.write_text(json.dumps(info))
    rig.env(
        BWSYNC_SOURCE="google",
        BWSYNC_GOOGLE__CREDENTIALS_FILE=str(path),
        BWSYNC_GOOGLE__ADMIN_EMAIL="admin@example.com",
        BWSYNC_GOOGLE__API_URL=rig.echo.url,
        BWSYNC_GOOGLE__CA_FILE=str(rig.echo.ca_file),
    )


def google_access_token(rig: Rig) -> None:
    google_key(rig)
    rig.echo.issue_tokens = True


def _okta(rig: Rig, **credential: str) -> None:
    rig.working_bitwarden()
    rig.env(
        BWSYNC_SOURCE="okta",
        BWSYNC_OKTA__ORG_URL=rig.echo.url,
        BWSYNC_OKTA__CA_FILE=str(rig.echo.ca_file),
        **credential,
    )


def okta_token(rig: Rig) -> None:
    # an HTTP header: printable ASCII only
    _okta(rig, BWSYNC_OKTA__TOKEN=rig.secret(f'00Okta"Tok%en+/\\{uuid.uuid4().hex[:16]}'))


def okta_private_key(rig: Rig) -> None:
    for line in key_lines(rig.okta_key.private_file.read_text()):
        rig.secret(line)
    _okta(
        rig,
        BWSYNC_OKTA__CLIENT_ID="0oa" + uuid.uuid4().hex[:17],
        BWSYNC_OKTA__PRIVATE_KEY_FILE=str(rig.okta_key.private_file),
    )


def okta_access_token(rig: Rig) -> None:
    okta_private_key(rig)
    rig.echo.issue_tokens = True


def onelogin_client_secret(rig: Rig) -> None:
    rig.working_bitwarden()
    client_id = uuid.uuid4().hex
    rig.env(
        BWSYNC_SOURCE="onelogin",
        BWSYNC_ONELOGIN__CLIENT_ID=client_id,
        BWSYNC_ONELOGIN__CLIENT_SECRET=rig.secret(_secret("OneLogin"), user=client_id),
        BWSYNC_ONELOGIN__API_URL=rig.echo.url,
        BWSYNC_ONELOGIN__CA_FILE=str(rig.echo.ca_file),
    )


def pushgateway_password(rig: Rig) -> None:
    rig.working_bitwarden()
    rig.env(
        BWSYNC_METRICS__PUSHGATEWAY_URL=rig.echo.url,
        BWSYNC_METRICS__PUSHGATEWAY_USERNAME="prometheus",
        BWSYNC_METRICS__PUSHGATEWAY_PASSWORD=rig.secret(_secret("Push"), user="prometheus"),
        BWSYNC_METRICS__PUSHGATEWAY_CA_FILE=str(rig.echo.ca_file),
    )


def onelogin_access_token(rig: Rig) -> None:
    onelogin_client_secret(rig)
    rig.echo.issue_tokens = True


def pushgateway_password_human(rig: Rig) -> None:
    rig.working_bitwarden()
    rig.env(
        BWSYNC_METRICS__PUSHGATEWAY_URL=rig.echo.url,
        BWSYNC_METRICS__PUSHGATEWAY_USERNAME="prometheus",
        BWSYNC_METRICS__PUSHGATEWAY_PASSWORD=rig.secret(_human("Push"), user="prometheus"),
        BWSYNC_METRICS__PUSHGATEWAY_CA_FILE=str(rig.echo.ca_file),
    )


def pushgateway_url_password(rig: Rig) -> None:
    rig.working_bitwarden()
    password = rig.secret(f"PushUrl{uuid.uuid4().hex[:12]}", user="prometheus")
    rig.env(
        BWSYNC_METRICS__PUSHGATEWAY_URL=rig.echo.url.replace("://", f"://prometheus:{password}@"),
        BWSYNC_METRICS__PUSHGATEWAY_CA_FILE=str(rig.echo.ca_file),
    )


def s3_keys(rig: Rig) -> None:
    rig.working_bitwarden()
    rig.env(
        BWSYNC_STATE__BACKEND="objectstore",
        BWSYNC_STATE__URL="s3://bucket/bwsync/state.json",
        # plain http on loopback: obstore's TLS (rustls) refuses the stand-ins' certificate,
        # which is its own CA
        BWSYNC_STATE__ENDPOINT=rig.echo_http.url,
        AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
        AWS_SECRET_ACCESS_KEY=rig.secret(f"wJalr/XUtnFEMI+K7MDENG/{uuid.uuid4().hex[:16]}"),
        AWS_SESSION_TOKEN=rig.secret(f"IQoJb3JpZ2luX2VjE/Session+Tok{uuid.uuid4().hex}=="),
        AWS_REGION="us-east-1",
    )


def azure_sas_token(rig: Rig) -> None:
    rig.working_bitwarden()
    signature = rig.secret(f"Sig{uuid.uuid4().hex[:20]}%2B%3D")
    rig.env(
        BWSYNC_STATE__BACKEND="objectstore",
        BWSYNC_STATE__URL="az://container/bwsync/state.json",
        BWSYNC_STATE__ENDPOINT=f"{rig.echo_http.url}/account",
        AZURE_STORAGE_ACCOUNT_NAME="account",
        AZURE_STORAGE_SAS_KEY=rig.secret(
            f"sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&sig={signature}"
        ),
    )


def azure_account_key(rig: Rig) -> None:
    """The key signs each request and never crosses itself (so no proof of delivery)."""
    rig.working_bitwarden()
    rig.env(
        BWSYNC_STATE__BACKEND="objectstore",
        BWSYNC_STATE__URL="az://container/bwsync/state.json",
        BWSYNC_STATE__ENDPOINT=f"{rig.echo_http.url}/account",
        AZURE_STORAGE_ACCOUNT_NAME="account",
        AZURE_STORAGE_ACCOUNT_KEY=rig.secret(base64.b64encode(os.urandom(64)).decode()),
    )


def kubernetes_token(rig: Rig) -> None:
    _kubeconfig(rig, {"token": rig.secret(f"eyKube.{uuid.uuid4().hex}.token")})


def kubernetes_password(rig: Rig) -> None:
    _kubeconfig(rig, {"username": "admin", "password": rig.secret(_human("Kube"), user="admin")})


def kubernetes_exec_token(rig: Rig) -> None:
    """A credential plugin's token (aws eks get-token, kubelogin): obtained at run time, opaque,
    no long run of letters and digits — masked only because the token flow remembered it."""
    token = rig.secret("Exec." + ".".join(uuid.uuid4().hex[i : i + 6] for i in (0, 6, 12)))
    plugin = rig.tmp / "credential-plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o755)
    exec_spec = {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}
    _kubeconfig(rig, {"exec": exec_spec})


def _kubeconfig(rig: Rig, user: dict[str, Any]) -> None:
    import yaml

    rig.working_bitwarden()
    path = rig.tmp / "kubeconfig"
    cluster = {"server": rig.echo.url, "certificate-authority": str(rig.echo.ca_file)}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    rig.env(
        BWSYNC_STATE__BACKEND="configmap",
        BWSYNC_STATE__NAMESPACE="bwsync",
        KUBECONFIG=str(path),
    )
    rig.monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@dataclass(frozen=True)
class Case:
    configure: Callable[[Rig], None]
    exits: tuple[int, int, int]
    """Exit codes of check, plan and sync: which path each command took."""
    sent_by: frozenset[str] = frozenset(COMMANDS)
    """Commands that send the secret to an echo server."""
    shows_server_text: bool = True
    """bwsync quotes the server's error text (so the echo must be seen, masked)."""
    proof: str = "secret"
    """What must be among the credentials the echo server received: ``"secret"`` one of the
    case's own secrets (not just any credential), ``"token"`` a token the echo server
    issued, ``"derived"`` something made from the secret (a signed assertion: a key is
    never sent)."""


S = frozenset({"sync"})
NONE: frozenset[str] = frozenset()
CASES: dict[str, Case] = {
    "bitwarden client secret": Case(bitwarden_client_secret, (4, 4, 4)),
    "bitwarden client secret, human": Case(bitwarden_client_secret_human, (4, 4, 4)),
    "bitwarden client secret, padded file": Case(bitwarden_client_secret_padded_file, (4, 4, 4)),
    "bitwarden access token": Case(bitwarden_access_token, (4, 4, 4), proof="token"),
    "bitwarden server URL password": Case(bitwarden_url_password, (4, 4, 4)),
    "ldap bind password (python-ldap)": Case(_ldap("python-ldap"), (3, 3, 3)),
    "ldap bind password (ldap3)": Case(_ldap("ldap3"), (3, 3, 3)),
    "ldap bind password, human (python-ldap)": Case(_ldap("python-ldap", _human), (3, 3, 3)),
    "ldap bind password, human (ldap3)": Case(_ldap("ldap3", _human), (3, 3, 3)),
    "entra client secret": Case(entra_client_secret, (3, 3, 3)),
    "entra access token": Case(entra_access_token, (3, 3, 3), proof="token"),
    "entra certificate key": Case(entra_certificate_key, (3, 3, 3), proof="derived"),
    "entra workload identity token": Case(entra_workload_identity_token, (3, 3, 3)),
    "google service-account key": Case(google_key, (3, 3, 3), proof="derived"),
    "google access token": Case(google_access_token, (3, 3, 3), proof="token"),
    "okta API token": Case(okta_token, (3, 3, 3)),
    "okta private key": Case(okta_private_key, (3, 3, 3), proof="derived"),
    "okta access token": Case(okta_access_token, (3, 3, 3), proof="token"),
    "onelogin client secret": Case(onelogin_client_secret, (3, 3, 3)),
    "onelogin access token": Case(onelogin_access_token, (3, 3, 3), proof="token"),
    "pushgateway password": Case(pushgateway_password, (0, 0, 0), S, shows_server_text=False),
    "pushgateway password, human": Case(
        pushgateway_password_human, (0, 0, 0), S, shows_server_text=False
    ),
    "pushgateway URL password": Case(
        pushgateway_url_password, (0, 0, 0), S, shows_server_text=False
    ),
    "s3 secret key and session token": Case(s3_keys, (5, 5, 5), shows_server_text=False),
    "azure SAS token": Case(azure_sas_token, (5, 5, 5), shows_server_text=False),
    "azure account key": Case(azure_account_key, (5, 5, 5), NONE, shows_server_text=False),
    "kubernetes token": Case(kubernetes_token, (5, 5, 5)),
    "kubernetes password": Case(kubernetes_password, (5, 5, 5)),
    "kubernetes exec plugin token": Case(kubernetes_exec_token, (5, 5, 5)),
}


def _text(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


@dataclass
class Outcome:
    codes: list[int]
    outputs: dict[str, str]
    received: list[str]
    """Every credential the echo servers received."""
    forms: set[str]
    """Every form of every secret and received credential: none may appear in an output."""

    def leaks(self) -> dict[str, list[str]]:
        return {o: sorted(f for f in self.forms if f in t) for o, t in self.outputs.items()}


@pytest.fixture
def run_case(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    echo_https: EchoHttps,
    echo_http: EchoHttps,
    ldap_echo: LdapEcho,
    fake_bitwarden: FakeBitwarden,
    okta_key: KeyPair,
) -> Callable[..., tuple[Rig, Outcome]]:
    """Configure a case, run bwsync's commands one after the other (one process's life: the
    state of one is what the next reads) and gather every output."""

    def run(name: str, *argvs: list[str], log_format: str = "json") -> tuple[Rig, Outcome]:
        state_file = tmp_path / "state.json"
        metrics_file = tmp_path / "bwsync.prom"
        for variable in ("AZURE_FEDERATED_TOKEN_FILE", "KUBECONFIG", "AWS_PROFILE"):
            monkeypatch.delenv(variable, raising=False)
        rig = Rig(tmp_path, monkeypatch, echo_https, echo_http, ldap_echo, fake_bitwarden, okta_key)
        rig.env(
            BWSYNC_SOURCE="file",
            BWSYNC_LOG__LEVEL="debug",
            BWSYNC_LOG__FORMAT=log_format,
            BWSYNC_STATE__BACKEND="file",
            BWSYNC_STATE__PATH=str(state_file),
            BWSYNC_METRICS__TEXTFILE_PATH=str(metrics_file),
            BWSYNC_BITWARDEN__MAX_RETRIES="0",
        )
        CASES[name].configure(rig)
        if os.environ["BWSYNC_SOURCE"] == "file":  # a sync never reads the demo directory unasked
            directory = tmp_path / "directory.json"
            directory.write_bytes(demo_directory())
            rig.env(BWSYNC_FILE__PATH=str(directory))

        codes, out, err = [], "", ""
        for argv in argvs:
            codes.append(main(argv))
            captured = capfd.readouterr()
            out, err = out + captured.out, err + captured.err

        servers = (echo_https, echo_http)
        outputs = {
            "stdout": out,
            "stderr": err,
            "state": (state_file.read_text() if state_file.exists() else "")
            + "".join(_text(b) for s in servers for p, b in s.bodies if p.startswith(STATE_PATHS)),
            "metrics": (metrics_file.read_text() if metrics_file.exists() else "")
            + "".join(_text(b) for s in servers for p, b in s.bodies if p.startswith("/metrics")),
        }
        received = [c for s in servers for c in s.credentials] + ldap_echo.passwords
        forms: set[str] = set()
        for secret in rig.secrets:
            forms |= leak_forms(secret)
        for user, secret in rig.basic:
            forms |= leak_forms(secret, user)
        for credential in [*received, *echo_https.issued, *echo_http.issued]:
            forms |= leak_forms(credential, prefix=False)  # "Basic " + the user's part is no leak
        return rig, Outcome(codes, outputs, received, forms)

    return run


def _carries(credential: str, secret: str) -> bool:
    """``credential`` (as the echo server recorded it) carries ``secret``: as sent, decoded,
    trimmed (a secret file's newline), or inside a Basic header's ``user:secret``."""
    wanted = {secret, unquote(secret), secret.strip()}
    if any(w in credential for w in wanted):
        return True
    try:
        decoded = base64.b64decode(credential + "=" * (-len(credential) % 4)).decode()
    except ValueError:
        return False
    return any(w in decoded for w in wanted)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", list(CASES))
def test_no_form_of_a_secret_leaves_the_process(
    name: str, command: str, run_case: Callable[..., tuple[Rig, Outcome]]
) -> None:
    case = CASES[name]
    rig, outcome = run_case(name, [command])
    assert outcome.leaks() == {out: [] for out in OUTPUTS}, f"{name} / {command} leaked"

    # The case proves something: the command took the expected path, the secret (or what is
    # made from it, or the token it bought) reached the echo server, and the server's echo
    # reached bwsync's output (masked).
    said = outcome.outputs["stdout"] + outcome.outputs["stderr"]
    assert outcome.codes == [case.exits[COMMANDS.index(command)]], said[-2000:]
    if command in case.sent_by:
        received = outcome.received
        assert received, f"{name} / {command}: no credential reached the echo server"
        if case.proof == "secret":
            assert any(_carries(c, s) for c in received for s in rig.secrets), (
                f"{name} / {command}: the case's own secret never reached the echo server"
            )
        elif case.proof == "token":
            issued = rig.echo.issued
            assert issued, "no token was issued"
            assert any(t in c for c in received for t in issued), "the token was never used"
        if case.shows_server_text:
            assert "you sent" in said, "the echo never came back"
            assert "***" in said


#: Other ways to run bwsync, each over every case: what it prints must hold no secret either,
#: and it must end with a documented outcome, never exit 1 (a bug's traceback).
OTHER_RUNS: dict[str, tuple[list[list[str]], str]] = {
    "check --offline": ([["check", "--offline"]], "json"),
    "check --read-only": ([["check", "--read-only"]], "json"),
    "plan --directory-only": ([["plan", "--directory-only"]], "json"),
    "plan --output text": ([["plan", "--output", "text"]], "json"),
    "plan --output json": ([["plan", "--output", "json"]], "json"),
    "sync, console log": ([["sync"]], "console"),
    "state show after sync": ([["sync"], ["state", "show"]], "json"),
}


@pytest.mark.parametrize("run", list(OTHER_RUNS))
@pytest.mark.parametrize("name", list(CASES))
def test_no_secret_leaves_through_any_other_command(
    name: str, run: str, run_case: Callable[..., tuple[Rig, Outcome]]
) -> None:
    argvs, log_format = OTHER_RUNS[run]
    _, outcome = run_case(name, *argvs, log_format=log_format)
    assert outcome.leaks() == {out: [] for out in OUTPUTS}, f"{name} / {run} leaked"
    said = outcome.outputs["stdout"] + outcome.outputs["stderr"]
    assert 1 not in outcome.codes, said[-2000:]
    assert "Traceback" not in said
