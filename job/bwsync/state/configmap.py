"""State in a Kubernetes ConfigMap, under the key ``state.json``.

The version is the ConfigMap's ``metadata.resourceVersion``. An update is a PUT of the object
as it was read, with our key replaced and that ``resourceVersion`` kept: the API server refuses
it with 409 ``Conflict`` when anyone wrote in between, which is the compare-and-swap the lease
needs. A PUT of the whole object (not a PATCH) keeps the RBAC the chart grants to ``get`` and
``update`` of one named ConfigMap, and keeps the labels and annotations others put on it.

A missing ConfigMap is created (POST, 409 ``AlreadyExists`` when another run was first) if the
account may ``create`` ConfigMaps; otherwise the error says which permission is missing.
The chart creates it empty, so a first run finds it without our key: that is "no state yet",
and the first write is still conditional on its ``resourceVersion``. ``bwsync state clear``
removes our key and leaves the ConfigMap (and whatever else it holds) in place.

Connection (service account or kubeconfig) is in ``kube.py``. Every httpx failure and every
API error is translated here into ``StateError`` naming the ConfigMap, with the API server's
``Status`` reason and message (cut short), never a token.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path
from typing import Any

import httpx

from bwsync.config import StateSettings
from bwsync.errors import StateConflictError, StateError, shorten
from bwsync.http.retry import (
    GIVE_UP,
    Decision,
    Retrier,
    RetriesExhausted,
    RetryPolicy,
    classify,
)
from bwsync.state.base import StateStore
from bwsync.state.kube import DEFAULT_SERVICE_ACCOUNT_DIR, KubeConfig, load_config

DATA_KEY = "state.json"


def _kube_decide(response: httpx.Response | None, exc: BaseException | None) -> Decision:
    """What the state calls retry: only what surely did not reach etcd — a connection never
    made, and a 429 (API Priority and Fairness turned the request away, with ``Retry-After``).
    A 5xx or a timeout may come after a write was applied; repeating a conditional PUT would
    then fail with a conflict that names the wrong cause, so the error stands."""
    if response is None:
        connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        return classify(None, exc) if connect else GIVE_UP
    if response.status_code == 429:
        return classify(response, exc)
    return GIVE_UP


#: Two retries within 30 s, backoff from 0.5 s: a state call is short and the run has a lease.
STATE_POLICY = RetryPolicy(max_retries=2, budget=30.0, backoff_base=0.5, backoff_cap=5.0)
MANAGED_BY = {"app.kubernetes.io/managed-by": "bwsync"}


class ConfigMapStateStore(StateStore):
    """``namespace`` is where the ConfigMap lives (``BWSYNC_STATE__NAMESPACE``); ``None``
    takes the connection's own: the pod's namespace, or the kubeconfig context's. It wins
    over a ready-made ``config``'s as over one read from the files."""

    def __init__(
        self,
        name: str,
        *,
        namespace: str | None = None,
        service_account_dir: Path = DEFAULT_SERVICE_ACCOUNT_DIR,
        timeout: float = 30.0,
        config: KubeConfig | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._namespace = namespace
        self._sa_dir = service_account_dir
        self._timeout = timeout
        if config is not None and namespace is not None:
            config = dataclasses.replace(config, namespace=namespace)
        self._config = config
        self._policy = policy or STATE_POLICY
        self._object: dict[str, Any] | None = None
        if config is None:
            # Read the local connection files now, so ``description`` names the namespace from
            # the start; a failure is raised again, with its message, on first use.
            with contextlib.suppress(StateError):
                self._config = load_config(namespace, service_account_dir)
        self._describe()

    @classmethod
    def from_settings(cls, settings: StateSettings) -> ConfigMapStateStore:
        return cls(
            settings.configmap,
            namespace=settings.namespace,
            service_account_dir=settings.service_account_dir,
            timeout=settings.timeout,
        )

    def _describe(self) -> None:
        ns = self._config.namespace if self._config else self._namespace
        self.description = f"configmap {ns}/{self.name}" if ns else f"configmap {self.name}"

    @property
    def config(self) -> KubeConfig:
        """The connection (service-account or kubeconfig files, read locally; no request)."""
        if self._config is None:
            self._config = load_config(self._namespace, self._sa_dir)
            self._describe()
        return self._config

    @property
    def namespace(self) -> str:
        return self.config.namespace

    # -- HTTP ------------------------------------------------------------------------------
    def _url(self, *, named: bool = True) -> str:
        base = f"/api/v1/namespaces/{self.namespace}/configmaps"
        return f"{base}/{self.name}" if named else base

    def _call(
        self, method: str, *, named: bool = True, body: Any = None, dry_run: bool = False
    ) -> httpx.Response:
        cfg = self.config
        extensions = {"sni_hostname": cfg.tls_server_name} if cfg.tls_server_name else None
        params = {"dryRun": "All"} if dry_run else None
        url = self._url(named=named)
        try:
            # One short-lived client per call: a run makes three or four calls, and nothing is
            # left open for the garbage collector; the token cache lives in cfg.auth.
            with cfg.client(self._timeout) as client:
                return Retrier(self._policy, _kube_decide).call(
                    f"{method} {url}",
                    lambda: client.request(
                        method, url, json=body, params=params, extensions=extensions
                    ),
                )
        except RetriesExhausted as exc:
            if exc.response is not None:
                return exc.response  # a 429 still: worded by the caller, as any API error
            failure = exc.exc
            raise StateError(
                f"{self.description}: cannot reach the Kubernetes API at {cfg.server} "
                f"({type(failure).__name__}: {shorten(str(failure), 200)}; via {cfg.origin}; "
                f"{exc.note})"
            ) from failure
        except httpx.TransportError as exc:
            raise StateError(
                f"{self.description}: cannot reach the Kubernetes API at {cfg.server} "
                f"({type(exc).__name__}: {shorten(str(exc), 200)}; via {cfg.origin})"
            ) from exc

    def _error(self, response: httpx.Response, verb: str) -> StateError:
        """``StateError`` for an API error, worded for what the operator must do."""
        reason, message = _status(response)
        code = response.status_code
        cfg = self.config
        if code == 401:
            return StateError(
                f"{self.description}: the Kubernetes API refused the credentials (401 "
                f"{reason or 'Unauthorized'}) from {cfg.origin}; the token is expired, revoked "
                "or for another cluster"
            )
        if code == 403:
            scope = "" if verb == "create" else f' (resourceNames: ["{self.name}"])'
            hint = "create it (the Helm chart does) or grant" if verb == "create" else "grant"
            return StateError(
                f"{self.description}: forbidden to {verb} configmaps in namespace "
                f"{self.namespace}: missing RBAC permission; {hint} verb {verb!r} on "
                f'resource "configmaps"{scope} in a Role bound to this account. '
                f"API server: {shorten(message, 200)}"
            )
        return StateError(
            f"{self.description}: {verb} failed with HTTP {code}"
            f"{' ' + reason if reason else ''}: {shorten(message, 200)}"
        )

    # -- bwsync check -----------------------------------------------------------------------
    def check(self) -> str:
        """Readable, and writable as a sync writes it, proven by the API server itself with a
        dry run (``?dryRun=All``: authenticated, authorized and admitted, never stored): the
        replace of the ConfigMap as read, or its creation when it does not exist yet."""
        self.load()
        obj = self._object
        if obj is None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name, "labels": dict(MANAGED_BY)},
                "data": {},
            }
            response = self._call("POST", named=False, body=body, dry_run=True)
            if response.status_code in (200, 201, 409):  # 409: created meanwhile, allowed
                return "not created yet; creating it is allowed (dry run)"
            if response.status_code == 404:
                raise StateError(f"{self.description}: namespace {self.namespace!r} not found")
            raise self._error(response, "create")
        body = copy.deepcopy(obj)
        body.setdefault("apiVersion", "v1")
        body.setdefault("kind", "ConfigMap")
        response = self._call("PUT", body=body, dry_run=True)
        # 409: written meanwhile, after the permission check: an update is allowed.
        if response.status_code in (200, 409):
            return "readable and writable (dry-run update)"
        raise self._error(response, "update")

    # -- the backend contract --------------------------------------------------------------
    def _get(self) -> dict[str, Any] | None:
        response = self._call("GET")
        if response.status_code == 404:
            self._object = None
            return None
        if response.status_code != 200:
            raise self._error(response, "get")
        obj = _json(response, self.description)
        self._object = obj
        return obj

    def _read(self) -> tuple[bytes | None, str | None]:
        obj = self._get()
        if obj is None:
            return None, None
        text = (obj.get("data") or {}).get(DATA_KEY)
        return (text.encode() if isinstance(text, str) else None), _rv(obj)

    def _write(self, data: bytes, expected_version: str | None) -> str:
        text = data.decode("utf-8")
        if expected_version is None:
            return self._create(text)
        obj = self._object
        if obj is None or _rv(obj) != expected_version:
            obj = self._get()
            if obj is None or _rv(obj) != expected_version:
                raise self._conflict()
        return self._replace(obj, {**(obj.get("data") or {}), DATA_KEY: text})

    def _create(self, text: str) -> str:
        """Write where no document is: into the ConfigMap if it exists without our key (made by
        the chart, or cleared), else create it. Both are atomic: a PUT on the version just
        read, or a POST that fails with 409 when another run created it first."""
        existing = self._get()
        if existing is not None:
            if DATA_KEY in (existing.get("data") or {}):
                raise self._conflict()
            return self._replace(existing, {**(existing.get("data") or {}), DATA_KEY: text})
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "labels": dict(MANAGED_BY)},
            "data": {DATA_KEY: text},
        }
        response = self._call("POST", named=False, body=body)
        if response.status_code == 201:
            obj = _json(response, self.description)
            self._object = obj
            return _rv(obj)
        if response.status_code == 409:  # AlreadyExists: another run created it first
            raise self._conflict()
        if response.status_code == 404:
            raise StateError(
                f"{self.description}: namespace {self.namespace!r} does not exist "
                f"({shorten(_status(response)[1], 200)})"
            )
        raise self._error(response, "create")

    def _replace(self, obj: dict[str, Any], data: dict[str, str]) -> str:
        body = copy.deepcopy(obj)
        body["data"] = data
        body.setdefault("apiVersion", "v1")
        body.setdefault("kind", "ConfigMap")
        response = self._call("PUT", body=body)
        if response.status_code == 200:
            new = _json(response, self.description)
            self._object = new
            return _rv(new)
        if response.status_code in (404, 409):  # deleted or rewritten since we read it
            raise self._conflict()
        raise self._error(response, "update")

    def _delete(self) -> None:
        obj = self._get()
        if obj is None or DATA_KEY not in (obj.get("data") or {}):
            return
        data = {k: v for k, v in (obj.get("data") or {}).items() if k != DATA_KEY}
        self._replace(obj, data)

    def _conflict(self) -> StateConflictError:
        return StateConflictError(self.description, how="resourceVersion conflict")


def _status(response: httpx.Response) -> tuple[str, str]:
    """(reason, message) of a Kubernetes ``Status`` body, or ("", the body cut short)."""
    try:
        body = response.json()
    except ValueError:
        return "", shorten(response.text or response.reason_phrase)
    if isinstance(body, dict) and body.get("kind") == "Status":
        return str(body.get("reason") or ""), str(body.get("message") or "")
    return "", shorten(response.text)


def _json(response: httpx.Response, where: str) -> dict[str, Any]:
    try:
        obj = response.json()
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise StateError(f"{where}: the Kubernetes API answered with something not a ConfigMap")
    data = obj.get("data")
    if data is not None and not isinstance(data, dict):
        raise StateError(f"{where}: the ConfigMap's data is not a mapping")
    return obj


def _rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion") or "")
