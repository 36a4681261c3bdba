"""A stand-in for the Kubernetes API server, ConfigMaps only, over HTTPS on loopback.

Written from the published API contract so bwsync's real client code (httpx, TLS verification
against a CA file, bearer tokens) runs unmodified against it:

- ``/api/v1/namespaces/{ns}/configmaps[/{name}]``: GET, POST (create), PUT (replace), DELETE;
- every object carries ``metadata.resourceVersion``, a new one on each write; a PUT whose
  ``resourceVersion`` is not the stored one is refused with 409 ``Conflict`` and a POST of an
  existing name with 409 ``AlreadyExists``, as the API server does;
- bearer tokens are checked (401 ``Unauthorized`` for an unknown or revoked token) and each
  token's account has RBAC verbs, optionally limited to resource names as a Role's
  ``resourceNames`` does (403 ``Forbidden`` with the API server's wording);
- errors are ``Status`` objects (``kind``, ``status: Failure``, ``message``, ``reason``,
  ``details``, ``code``); the 1 MiB ConfigMap limit gives 422 ``Invalid``.

The certificate is the caller's (tests make a self-signed one); only the standard library is
used, so the module ships in the package and needs nothing from the test tools.
"""

from __future__ import annotations

import datetime
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socket import socket
from typing import Any

from bwsync.standin.http import StandInServer

ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
MAX_CONFIGMAP_BYTES = 1024 * 1024
_PATH = re.compile(r"^/api/v1/namespaces/([a-z0-9]([-a-z0-9]*[a-z0-9])?)/configmaps(?:/([^/]+))?$")


@dataclass
class Account:
    """Who a token authenticates as and what RBAC lets it do with ConfigMaps."""

    user: str
    verbs: set[str] = field(default_factory=lambda: set(ALL_VERBS))
    #: as a Role's resourceNames: when set, named requests (get/update/delete) are limited to
    #: these names; create and list can never be limited by name in Kubernetes
    resource_names: set[str] | None = None


@dataclass
class Request:
    method: str
    path: str
    user: str | None
    status: int


class FakeKubernetes:
    """The API server; ``start()`` serves it, ``url`` is its base URL, ``stop()`` ends it."""

    def __init__(
        self, certfile: Path, keyfile: Path, host: str = "127.0.0.1", client_ca: Path | None = None
    ) -> None:
        self.lock = threading.RLock()
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.tokens: dict[str, Account] = {}
        #: client-certificate users, by the certificate's common name (as kubeadm's admin.conf)
        self.cert_users: dict[str, Account] = {}
        self.requests: list[Request] = []
        #: statuses to answer the next requests with, before looking at them (500, 503 …)
        self.fail_next: list[int] = []
        self._rv = 1000
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(str(certfile), str(keyfile))
        if client_ca is not None:
            # like the API server's --client-ca-file: a certificate is optional, checked if sent
            self._ctx.verify_mode = ssl.CERT_OPTIONAL
            self._ctx.load_verify_locations(str(client_ca))
        self._server = _Server((host, 0), _Handler, self)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> FakeKubernetes:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-kubernetes", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------
    def issue_token(
        self,
        user: str = "system:serviceaccount:default:bwsync",
        verbs: set[str] | frozenset[str] = ALL_VERBS,
        resource_names: set[str] | None = None,
    ) -> str:
        token = "fake." + uuid.uuid4().hex + uuid.uuid4().hex
        with self.lock:
            self.tokens[token] = Account(user, set(verbs), resource_names)
        return token

    def allow_client_cert(
        self, common_name: str, verbs: set[str] | frozenset[str] = ALL_VERBS
    ) -> None:
        """Accept a client certificate (signed by ``client_ca``) with this common name."""
        with self.lock:
            self.cert_users[common_name] = Account(common_name, set(verbs))

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)

    def set_verbs(self, token: str, verbs: set[str] | frozenset[str]) -> None:
        with self.lock:
            self.tokens[token].verbs = set(verbs)

    def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.configmaps.get((namespace, name))
            return dict(json.loads(json.dumps(obj))) if obj else None

    def put_configmap(
        self, namespace: str, name: str, data: dict[str, str] | None = None, **meta: Any
    ) -> dict[str, Any]:
        """Create or replace a ConfigMap directly, as the Helm chart or kubectl would."""
        with self.lock:
            old = self.configmaps.get((namespace, name))
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, **meta},
            }
            if data is not None:
                obj["data"] = dict(data)
            self._stamp(obj, old)
            self.configmaps[(namespace, name)] = obj
            return dict(json.loads(json.dumps(obj)))

    def count(self, method: str | None = None, user: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (user is None or r.user == user)
            )

    # -- the API ---------------------------------------------------------------------------
    def _stamp(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        if old:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = (
                datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
            ).replace("+00:00", "Z")

    def handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        client_cn: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.fail_next:
                code = self.fail_next.pop(0)
                return code, _status(code, "InternalError", "injected failure")
            match = _PATH.match(path.split("?", 1)[0])
            auth = headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            account = self.tokens.get(token) if token else None
            if account is None and not auth and client_cn:
                account = self.cert_users.get(client_cn)
            if account is None:
                return 401, _status(401, "Unauthorized", "Unauthorized")
            if not match:
                return 404, _status(
                    404, "NotFound", "the server could not find the requested resource"
                )
            ns, name = match.group(1), match.group(3)
            verb = {
                "GET": "get" if name else "list",
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
            }.get(method)
            if (
                verb is None
                or (verb in ("create", "list") and name)
                or (verb not in ("create", "list") and not name)
            ):
                return 405, _status(405, "MethodNotAllowed", f"{method} is not supported")
            denied = verb not in account.verbs or (
                name is not None
                and account.resource_names is not None
                and name not in account.resource_names
            )
            if denied:
                what = f'configmaps "{name}"' if name else "configmaps"
                return 403, _status(
                    403,
                    "Forbidden",
                    f'{what} is forbidden: User "{account.user}" cannot {verb} resource '
                    f'"configmaps" in API group "" in the namespace "{ns}"',
                    name=name,
                )
            return self._configmaps(method, ns, name, headers, body)

    def _configmaps(
        self, method: str, ns: str, name: str | None, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        current = self.configmaps.get((ns, name)) if name else None
        if method == "GET":
            if name is None:
                items = [o for (n, _), o in sorted(self.configmaps.items()) if n == ns]
                return 200, {
                    "kind": "ConfigMapList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": items,
                }
            if current is None:
                return _not_found(name)
            return 200, current
        if method == "DELETE":
            assert name is not None
            if current is None:
                return _not_found(name)
            del self.configmaps[(ns, name)]
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": "configmaps", "uid": current["metadata"]["uid"]},
            }
        # POST / PUT carry an object
        if not headers.get("content-type", "").startswith("application/json"):
            return 415, _status(415, "UnsupportedMediaType", "the body must be application/json")
        try:
            obj = json.loads(body)
        except ValueError as exc:
            return 400, _status(400, "BadRequest", f"the body is not JSON: {exc}")
        problem = _validate(obj, ns)
        if problem:
            return problem
        meta = obj["metadata"]
        obj_name = meta.get("name")
        if method == "POST":
            if not obj_name:
                return 422, _invalid("", "metadata.name: Required value: name is required")
            if meta.get("resourceVersion"):
                return 422, _invalid(
                    obj_name,
                    "metadata.resourceVersion: Invalid value: "
                    f'"{meta["resourceVersion"]}": must be empty',
                )
            if (ns, obj_name) in self.configmaps:
                return 409, _status(
                    409,
                    "AlreadyExists",
                    f'configmaps "{obj_name}" already exists',
                    name=obj_name,
                )
            meta["namespace"] = ns
            self._stamp(obj, None)
            self.configmaps[(ns, obj_name)] = obj
            return 201, obj
        # PUT
        assert name is not None
        if obj_name != name:
            return 400, _status(
                400,
                "BadRequest",
                f"the name of the object ({obj_name}) does not match the name on the URL ({name})",
            )
        if current is None:
            return _not_found(name)
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            return 409, _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on configmaps "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                name=name,
            )
        meta["namespace"] = ns
        self._stamp(obj, current)
        self.configmaps[(ns, name)] = obj
        return 200, obj


def _status(code: int, reason: str, message: str, name: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name is not None:
        status["details"] = {"name": name, "kind": "configmaps"}
    return status


def _not_found(name: str) -> tuple[int, dict[str, Any]]:
    return 404, _status(404, "NotFound", f'configmaps "{name}" not found', name=name)


def _invalid(name: str, cause: str) -> dict[str, Any]:
    status = _status(422, "Invalid", f'ConfigMap "{name}" is invalid: {cause}', name=name)
    status["details"]["kind"] = "ConfigMap"
    return status


def _validate(obj: Any, ns: str) -> tuple[int, dict[str, Any]] | None:
    if not isinstance(obj, dict) or obj.get("kind") != "ConfigMap" or obj.get("apiVersion") != "v1":
        return 400, _status(400, "BadRequest", "the body must be a v1 ConfigMap")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return 400, _status(400, "BadRequest", "metadata is required")
    if meta.get("namespace") not in (None, "", ns):
        return 400, _status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        )
    data = obj.get("data") or {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return 400, _status(400, "BadRequest", "data must map strings to strings")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > MAX_CONFIGMAP_BYTES:
        return 422, _invalid(
            str(meta.get("name", "")),
            f"[]: Too long: must have at most {MAX_CONFIGMAP_BYTES} bytes",
        )
    return None


class _Server(StandInServer):
    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: FakeKubernetes
    ) -> None:
        self.api = api
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket, Any]:
        sock, addr = super().get_request()
        # TLS handshake in the handler's thread, so one slow client never blocks accept()
        return self.api._ctx.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        api = self.server.api
        client_cn = _common_name(self.connection)
        code, payload = api.handle(self.command, self.path, headers, body, client_cn)
        with api.lock:
            account = api.tokens.get(headers.get("authorization", "")[7:]) or (
                api.cert_users.get(client_cn or "") if "authorization" not in headers else None
            )
            api.requests.append(
                Request(self.command, self.path, account.user if account else None, code)
            )
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _common_name(conn: Any) -> str | None:
    """The verified client certificate's CN, if the client sent one."""
    getpeercert = getattr(conn, "getpeercert", None)
    cert = getpeercert() if getpeercert else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
