"""How bwsync reaches the Kubernetes API: its service account in a pod, a kubeconfig elsewhere.

httpx directly, not lightkube or the official client: bwsync makes four calls on one resource
(get, create, replace a ConfigMap), httpx is already its HTTP client, and the parts a library
would add are the ones to get exactly right ourselves: re-reading the rotating service-account
token, TLS against the cluster CA, and kubectl's kubeconfig rules. lightkube would bring its
generated models (several MB) for one object; the official client brings urllib3 and its own
retry and token logic.

Where the connection comes from, first match wins:

1. ``KUBECONFIG`` is set: the kubeconfig file(s) it lists, merged as kubectl does (a
   colon-separated list; for each cluster, user and context the first file that defines the
   name wins; missing files are skipped; the first ``current-context`` is used).
2. In a pod (``KUBERNETES_SERVICE_HOST``/``_PORT`` set and a token file present): the
   service-account token, CA and namespace files. The kubelet rotates the projected token, so
   it is re-read every minute and once more when the API answers 401.
3. ``~/.kube/config``.

Supported in a kubeconfig: ``server``, ``certificate-authority[-data]``,
``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url``; users with ``token``,
``tokenFile``, ``client-certificate[-data]``/``client-key[-data]``, ``username``/``password``
and ``exec`` credential plugins (``client.authentication.k8s.io`` v1/v1beta1, as EKS, GKE and
AKS write them). The legacy ``auth-provider`` is refused with a message.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from bwsync.config import env_name, is_loopback
from bwsync.errors import StateError, shorten
from bwsync.http.auth import TokenAuth
from bwsync.logs import event
from bwsync.redact import remember, secret_name, url_passwords

DEFAULT_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: how old a cached service-account token may be before it is read again (client-go: 1 minute)
TOKEN_MAX_AGE = 60.0


@dataclass(frozen=True)
class KubeConfig:
    """Everything needed to talk to one API server, and where it came from (for messages)."""

    server: str
    namespace: str
    verify: ssl.SSLContext
    auth: httpx.Auth | None
    origin: str
    tls_server_name: str | None = None
    proxy: str | None = None
    #: replaces the network (``httpx.MockTransport`` in unit tests)
    transport: httpx.BaseTransport | None = None

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client for this server. ``trust_env=False``: the cluster's own CA and proxy
        settings decide, never ``SSL_CERT_FILE`` or ``HTTPS_PROXY`` meant for the internet."""
        # Retries are the caller's (``configmap``, with ``bwsync.http.retry``'s engine).
        transport = self.transport or httpx.HTTPTransport(verify=self.verify, proxy=self.proxy)
        return httpx.Client(
            base_url=self.server,
            auth=self.auth,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": "bwsync"},
        )


# -- authentication ------------------------------------------------------------------------
class _CachedBearer(TokenAuth):
    """A bearer token fetched by ``_fetch``, cached, fetched again when stale or on a 401
    (``bwsync.http.auth``'s flow: repeated once, and only if the fresh token differs from the
    refused one — a file the kubelet has not rotated yet cannot help)."""

    slot = "kubernetes"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def _fetch(self) -> tuple[str, float]:
        """A fresh token and the clock value after which it is stale."""
        raise NotImplementedError

    def token(self, *, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or self._clock() >= self._expires:
                self._token, self._expires = self._fetch()
            return self._token

    def cached(self) -> str | None:
        return self.token()

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        return self.token(refresh=True)
        yield  # pragma: no cover - makes this a generator


class TokenFileAuth(_CachedBearer):
    """The service-account (or kubeconfig ``tokenFile``) token, re-read as the kubelet rotates
    it: projected tokens are replaced well before they expire, and the old one stops working."""

    def __init__(
        self,
        path: Path,
        max_age: float = TOKEN_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self.path = path
        self.max_age = max_age

    def _fetch(self) -> tuple[str, float]:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise StateError(
                f"cannot read the Kubernetes token file {self.path}: {reason}"
            ) from None
        if not token:
            raise StateError(f"the Kubernetes token file {self.path} is empty")
        return token, self._clock() + self.max_age


class StaticTokenAuth(TokenAuth):
    """A kubeconfig's literal ``token``: nothing to renew, so a 401 stands."""

    slot = "kubernetes"

    def __init__(self, token: str) -> None:
        self._token = token

    def cached(self) -> str | None:
        return self._token

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        return self._token
        yield  # pragma: no cover - makes this a generator


class ExecAuth(_CachedBearer):
    """A kubeconfig ``exec`` credential plugin (aws eks get-token, gke-gcloud-auth-plugin,
    kubelogin): run it, use ``status.token`` until ``expirationTimestamp``, run it again on 401."""

    def __init__(
        self, spec: dict[str, Any], base: Path, clock: Callable[[], float] = time.monotonic
    ):
        super().__init__(clock)
        self.command = str(spec.get("command") or "")
        if not self.command:
            raise StateError("kubeconfig exec plugin has no command")
        if "/" in self.command and not os.path.isabs(self.command):
            self.command = str(base / self.command)  # relative to the kubeconfig, as kubectl
        args, env = spec.get("args") or [], spec.get("env") or []
        if not isinstance(args, list) or not isinstance(env, list):
            raise StateError("kubeconfig exec plugin: `args` and `env` must be lists")
        if not all(isinstance(e, dict) and "name" in e and "value" in e for e in env):
            raise StateError("kubeconfig exec plugin: each `env` entry needs a name and a value")
        self.args = [str(a) for a in args]
        self.env = {str(e["name"]): str(e["value"]) for e in env}
        # a plugin's credential may come in its environment (AWS_SECRET_ACCESS_KEY, a token):
        # those are masked; other values (a profile, a region) are ordinary words
        remember(*(value for name, value in self.env.items() if secret_name(name)))
        self.api_version = str(spec.get("apiVersion") or "client.authentication.k8s.io/v1")

    def _fetch(self) -> tuple[str, float]:
        info = {
            "apiVersion": self.api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            done = subprocess.run(  # noqa: S603 - the command is the kubeconfig's own plugin
                [self.command, *self.args],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StateError(f"kubeconfig exec plugin {self.command} failed: {exc}") from None
        if done.returncode != 0:
            # stderr of a credential plugin explains itself; stdout may hold a token: never shown
            err = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise StateError(
                f"kubeconfig exec plugin {self.command} exited {done.returncode}: "
                + shorten(err[0], 200)
            )
        try:
            status = json.loads(done.stdout)["status"]
            token = str(status["token"])
        except (ValueError, KeyError, TypeError):
            raise StateError(
                f"kubeconfig exec plugin {self.command} did not print an ExecCredential with a "
                "token (client-certificate credentials from plugins are not supported)"
            ) from None
        expires = self._clock() + 3600.0
        stamp = status.get("expirationTimestamp")
        if stamp:
            with contextlib.suppress(ValueError):
                left = (
                    datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                    - datetime.datetime.now(datetime.UTC)
                ).total_seconds()
                expires = self._clock() + max(left - 30.0, 0.0)
        return token, expires


# -- TLS -----------------------------------------------------------------------------------
def _ssl_context(
    *,
    ca_file: Path | None = None,
    ca_data: str | None = None,
    insecure: bool = False,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    cert_data: bytes | None = None,
    key_data: bytes | None = None,
    where: str,
) -> ssl.SSLContext:
    try:
        if insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust store needed to trust all
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif ca_file or ca_data:
            ctx = ssl.create_default_context(
                cafile=str(ca_file) if ca_file else None, cadata=ca_data
            )
        else:
            ctx = ssl.create_default_context()
        if cert_data or key_data:
            # load_cert_chain only reads files: a private temp dir, gone right after loading
            with tempfile.TemporaryDirectory(prefix="bwsync-kube-") as tmp:
                c, k = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                c.write_bytes(cert_data or (cert_file.read_bytes() if cert_file else b""))
                k.touch(0o600)
                k.write_bytes(key_data or (key_file.read_bytes() if key_file else b""))
                ctx.load_cert_chain(str(c), str(k))
        elif cert_file or key_file:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StateError(f"{where}: cannot set up TLS ({reason})") from None
    return ctx


# -- in a pod ------------------------------------------------------------------------------
def in_cluster_available(environ: Mapping[str, str], sa_dir: Path) -> bool:
    return bool(
        environ.get("KUBERNETES_SERVICE_HOST")
        and environ.get("KUBERNETES_SERVICE_PORT")
        and (sa_dir / "token").is_file()
    )


def from_service_account(
    environ: Mapping[str, str], sa_dir: Path, namespace: str | None = None
) -> KubeConfig:
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise StateError(
            "not in a Kubernetes pod: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT unset"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 service address
    origin = f"in-cluster service account ({sa_dir})"
    if namespace is None:
        try:
            namespace = (sa_dir / "namespace").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise StateError(
                f"cannot read the pod's namespace from {sa_dir / 'namespace'} ({reason}); "
                f"set {env_name('state', 'namespace')}"
            ) from None
    ca = sa_dir / "ca.crt"
    verify = _ssl_context(ca_file=ca if ca.is_file() else None, where=origin)
    return KubeConfig(
        server=f"https://{host}:{port}",
        namespace=namespace,
        verify=verify,
        auth=TokenFileAuth(sa_dir / "token"),
        origin=origin,
    )


# -- kubeconfig ----------------------------------------------------------------------------
@dataclass
class _Entry:
    value: dict[str, Any]
    base: Path  # directory of the file that defined it: relative paths resolve against it


def _kubeconfig_paths(environ: Mapping[str, str]) -> list[Path]:
    listed = environ.get("KUBECONFIG")
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def from_kubeconfig(  # noqa: PLR0915 - kubectl's rules, in the order it applies them
    paths: list[Path], namespace: str | None = None, context: str | None = None
) -> KubeConfig:
    """The connection of the current (or given) context, merged over ``paths`` as kubectl
    does."""
    shown = os.pathsep.join(str(p) for p in paths)
    sections: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    current: str | None = None
    found = False
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StateError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise StateError(f"kubeconfig {path} is not UTF-8 text") from None
        found = True
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            raise StateError(f"kubeconfig {path} is not valid YAML{at}") from None
        if not isinstance(doc, dict):
            raise StateError(f"kubeconfig {path} is not a kubeconfig (no mapping at the top)")
        current = current or doc.get("current-context") or None
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            items = doc.get(section) or []
            if not isinstance(items, list):
                raise StateError(f"kubeconfig {path}: `{section}` is not a list")
            for item in items:
                if (
                    isinstance(item, dict)
                    and item.get("name")
                    and isinstance(item.get(inner), dict)
                ):
                    sections[section].setdefault(
                        str(item["name"]), _Entry(item[inner], path.parent.resolve())
                    )
    if not found:
        raise StateError(f"no kubeconfig found at {shown}")
    name = context or current
    if not name:
        raise StateError(f"kubeconfig {shown} has no current-context")
    ctx = sections["contexts"].get(name)
    if ctx is None:
        raise StateError(f"kubeconfig {shown}: context {name!r} not found")
    origin = f"kubeconfig {shown} (context {name})"
    cluster = sections["clusters"].get(str(ctx.value.get("cluster", "")))
    if cluster is None or not cluster.value.get("server"):
        raise StateError(f"{origin}: cluster {ctx.value.get('cluster')!r} not found or no server")
    user = sections["users"].get(str(ctx.value.get("user", "")))
    u = user.value if user else {}
    ubase = user.base if user else cluster.base
    c = cluster.value

    def path_of(value: Any, base: Path) -> Path | None:
        if not value:
            return None
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else base / p

    def data_of(value: Any, what: str) -> bytes | None:
        if not value:
            return None
        try:
            return base64.b64decode(str(value), validate=True)
        except ValueError:
            raise StateError(f"{origin}: {what} is not valid base64") from None

    if u.get("auth-provider"):
        raise StateError(
            f"{origin}: the legacy auth-provider "
            f"{(u['auth-provider'] or {}).get('name', '')!r} is not supported; "
            "use an exec credential plugin (kubectl's own recommendation)"
        )
    ca_data = data_of(c.get("certificate-authority-data"), "certificate-authority-data")
    if c.get("insecure-skip-tls-verify"):
        # never silent (bwsync.cleartext): the token goes to whoever answers
        event(
            "cleartext",
            logging.WARNING,
            setting="KUBECONFIG",
            warning=f"{origin}: insecure-skip-tls-verify: the Kubernetes API server's "
            "certificate is not checked, so anyone on the path can pose as it and collect the "
            "token; give its CA (certificate-authority) instead",
        )
    verify = _ssl_context(
        ca_file=path_of(c.get("certificate-authority"), cluster.base),
        ca_data=ca_data.decode("ascii", errors="replace") if ca_data else None,
        insecure=bool(c.get("insecure-skip-tls-verify")),
        cert_file=path_of(u.get("client-certificate"), ubase),
        key_file=path_of(u.get("client-key"), ubase),
        cert_data=data_of(u.get("client-certificate-data"), "client-certificate-data"),
        key_data=data_of(u.get("client-key-data"), "client-key-data"),
        where=origin,
    )
    server = str(c["server"]).rstrip("/")
    scheme_host = urlsplit(server)
    credential = any(u.get(k) for k in ("tokenFile", "token", "exec", "username"))
    if credential and scheme_host.scheme == "http" and not is_loopback(scheme_host.hostname):
        event(
            "cleartext",
            logging.WARNING,
            setting="KUBECONFIG",
            warning=f"{origin}: server {server} is plain http: the token or password and the "
            "state cross the network in clear; use the API server's https:// address",
        )
    auth: httpx.Auth | None = None
    if u.get("tokenFile"):
        token_file = path_of(u["tokenFile"], ubase)
        assert token_file is not None
        auth = TokenFileAuth(token_file)
    elif u.get("token"):
        auth = StaticTokenAuth(str(u["token"]))
    elif u.get("exec"):
        auth = ExecAuth(dict(u["exec"]), ubase)
    elif u.get("username"):
        password = str(u.get("password") or "")
        remember(password, password.strip())
        auth = httpx.BasicAuth(str(u["username"]), password)
    return KubeConfig(
        server=server,
        namespace=namespace or str(ctx.value.get("namespace") or "default"),
        verify=verify,
        auth=auth,
        origin=origin,
        tls_server_name=str(c["tls-server-name"]) if c.get("tls-server-name") else None,
        proxy=_proxy(c.get("proxy-url"), origin),
    )


def _proxy(value: Any, origin: str) -> str | None:
    """A kubeconfig ``proxy-url``: http(s) only, as httpx speaks them without extras (a
    ``socks5://`` proxy would need one, so it is refused here, by name)."""
    if not value:
        return None
    url = str(value)
    remember(*url_passwords(url))
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise StateError(f"{origin}: proxy-url {scheme}:// is not supported; use an http(s) proxy")
    return url


def load_config(
    namespace: str | None = None,
    sa_dir: Path = DEFAULT_SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubeConfig:
    """The connection bwsync uses, by the order in the module docstring."""
    env = os.environ if environ is None else environ
    if env.get("KUBECONFIG"):
        return from_kubeconfig(_kubeconfig_paths(env), namespace)
    if in_cluster_available(env, sa_dir):
        return from_service_account(env, sa_dir, namespace)
    default = _kubeconfig_paths(env)
    if default[0].is_file():
        return from_kubeconfig(default, namespace)
    raise StateError(
        "no Kubernetes API to keep state in: not in a pod (KUBERNETES_SERVICE_HOST unset or no "
        f"token in {sa_dir}) and no kubeconfig (KUBECONFIG unset, no {default[0]})"
    )
